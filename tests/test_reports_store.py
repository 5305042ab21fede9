"""Results files are written atomically and read back with their shape checked."""

from __future__ import annotations

import json

import pytest
import torch

from ptbench.reports.store import ResultsFile, read_results, write_json_atomic


def test_results_file_persists_every_record(tmp_path):
    rf = ResultsFile(tmp_path / "r" / "probes.json", "probes")
    rf.add({"framework": "torch", "status": "pass"})
    rf.add({"framework": "x", "status": "fail"})
    doc = read_results(tmp_path / "r" / "probes.json")
    assert [r["status"] for r in doc["records"]] == ["pass", "fail"]
    assert doc["kind"] == "probes"
    assert doc["environment"]["versions"]["torch"] == torch.__version__
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["probes.json"], "no temporary file left"


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object.__new__(type("Unserializable", (), {"__str__": None}))})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"], "no temporary file left"


def test_read_results_rejects_foreign_files(tmp_path):
    path = tmp_path / "y.json"
    path.write_text(json.dumps({"records": []}))
    with pytest.raises(ValueError, match="not a ptbench results file"):
        read_results(path)
