"""The version-matrix table is regenerated from results files, never typed."""

from __future__ import annotations

import pytest

from ptbench.fixtures.probes.matrix import build_table, parse_requirement
from ptbench.reports.store import write_json_atomic


def _write(root, package, version, statuses, install_error=None):
    records = [{"framework": name, "objective": obj, "status": s}
               for (name, obj), s in statuses.items()]
    doc = {"kind": "probes", "environment": {}, "records": records,
           "subject": {"package": package, "version": version}}
    if install_error:
        doc["install_error"] = install_error
    write_json_atomic(root / "results" / f"{package}-{version}.json", doc)


def test_table_from_results_files(tmp_path):
    _write(tmp_path, "deepspeed", "0.19.0", {("deepspeed-z2-ws1", "pg"): "pass",
                                             ("deepspeed-z2-offload-ws1", "pg"): "pass"})
    _write(tmp_path, "deepspeed", "0.18.9", {("deepspeed-z2-ws1", "pg"): "pass",
                                             ("deepspeed-z2-offload-ws1", "pg"): "fail"})
    _write(tmp_path, "deepspeed", "0.9.0", {}, install_error="needs torch<2")
    table = build_table(tmp_path).splitlines()
    assert table[0] == "| deepspeed | 0.9.0 pg | 0.18.9 pg | 0.19.0 pg |"
    assert table[2] == "| deepspeed-z2-ws1 | not installable | pass | pass |"
    assert table[3] == "| deepspeed-z2-offload-ws1 | not installable | **FAIL** | pass |"


def test_bad_release_and_empty_root_are_clear(tmp_path):
    with pytest.raises(ValueError, match="release: expected PACKAGE==VERSION"):
        parse_requirement("deepspeed>=0.18")
    with pytest.raises(ValueError, match="PACKAGE one of"):
        parse_requirement("numpy==2.0")
    with pytest.raises(FileNotFoundError, match="no results files"):
        build_table(tmp_path)
