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
    assert table[0] == "| deepspeed | 0.9.0 | 0.18.9 pg | 0.19.0 pg |"  # one column: nothing ran
    assert table[2] == "| deepspeed-z2-ws1 | not installable [1] | pass | pass |"
    assert table[3] == "| deepspeed-z2-offload-ws1 | not installable [1] | **FAIL** | pass |"
    assert "[1] 0.9.0: needs torch<2  " in table


def test_error_and_na_cells_say_why_in_footnotes(tmp_path):
    """`error` keeps the exception's first line and the raising frame; `n/a` its reason."""
    from ptbench.fixtures.probes.adapters.registry import error_fields

    try:
        {}["missing"]
    except KeyError as exc:
        fields = error_fields(exc)
    assert fields["error"] == "KeyError: 'missing'"
    assert fields["raised_at"].endswith("in test_error_and_na_cells_say_why_in_footnotes")
    doc = {"kind": "probes", "environment": {}, "subject": {"package": "transformers", "version": "4.45.2"},
           "records": [{"framework": "hf-trainer", "objective": "ce", "status": "error",
                        "reason": "Traceback ...\nRuntimeError: boom", "error": "RuntimeError: boom",
                        "raised_at": "transformers/trainer.py:2481 in _inner_training_loop"},
                       {"framework": "trl-sft", "status": "unsupported",
                        "reason": "the adapter supports trl>=1.0 (the driver needs TRL 1.x); "
                                  "this environment has trl 0.12.2"}]}
    write_json_atomic(tmp_path / "results" / "transformers-4.45.2.json", doc)
    table = build_table(tmp_path).splitlines()
    assert "| hf-trainer | error [1] |" in table and "| trl-sft | n/a [2] |" in table  # one column
    assert ("[1] 4.45.2: RuntimeError: boom (raised at transformers/trainer.py:2481 in "
            "_inner_training_loop)  ") in table
    assert "[2] the adapter supports trl>=1.0; this environment has trl 0.12.2  " in table  # why: README


def test_a_fail_cell_gives_the_diagnosis_once_per_distinct_text(tmp_path):
    text = ("x: FAIL\n  step 1: ...\n    -> micro-batches 2-5 of 6 look dropped (fitted weights 1.00, "
            "0.00, 0.00, 0.00, 0.00, {w}; expected 1.00 each); the update matches the first and last "
            "micro-batches only (relative error 2.3e-06)")
    for version, w in (("0.18.8", "1.00"), ("0.18.9", "0.99")):
        write_json_atomic(tmp_path / "results" / f"deepspeed-{version}.json", {
            "kind": "probes", "environment": {}, "subject": {"package": "deepspeed", "version": version},
            "records": [{"framework": "deepspeed-z2-offload-ws1", "objective": "pg", "status": "fail",
                         "text": text.format(w=w)}]})
    table = build_table(tmp_path).splitlines()
    assert "| deepspeed-z2-offload-ws1 | **FAIL** [1] | **FAIL** [1] |" in table
    assert ("[1] micro-batches 2-5 of 6 look dropped; the update matches the first and last "
            "micro-batches only  ") in table


def test_bad_release_and_empty_root_are_clear(tmp_path):
    with pytest.raises(ValueError, match="release: expected PACKAGE==VERSION"):
        parse_requirement("deepspeed>=0.18")
    with pytest.raises(ValueError, match="PACKAGE one of"):
        parse_requirement("numpy==2.0")
    with pytest.raises(FileNotFoundError, match="no results files"):
        build_table(tmp_path)


def test_a_release_results_file_goes_to_the_store_and_the_report(tmp_path):
    """`ptbench matrix run` stores each release's results as a 'matrix' run; the report's
    version-matrix section shows them (here the committed 0.18.9 and 0.19.8 files)."""
    from pathlib import Path

    from ptbench.fixtures.probes.matrix import store_results
    from ptbench.reports.build import version_matrix_section
    from ptbench.reports.db import ResultsStore

    committed = Path(__file__).resolve().parents[1] / "benchmarks" / "matrix" / "results"
    store = tmp_path / "s.sqlite"
    for version in ("0.18.9", "0.19.8"):
        store_results(committed / f"deepspeed-{version}.json", str(store))
    with ResultsStore.open(store) as s:
        assert [r.info.kind for r in s.runs()] == ["matrix", "matrix"]
        (table,) = [b for b in version_matrix_section(s).blocks]
    rows = {r["deepspeed"]: r for r in table.frame.to_dict("records")}
    assert rows["deepspeed-z2-offload-ws1"]["deepspeed 0.18.9 pg"] == "FAIL"
    assert rows["deepspeed-z2-offload-ws1"]["deepspeed 0.19.8 pg"] == "pass"


def lazy_import_failure():
    """A factory whose framework import fails inside a lazy module (TRL wraps the ImportError)."""
    def make_step(model, opt):
        try:
            import requests_that_is_not_installed  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("Failed to import trl.trainer.grpo_trainer") from exc
    return make_step


def crash_in_step():
    def make_step(model, opt):
        raise ValueError("engine exploded")
    return make_step


def test_an_import_failure_is_na_and_a_crash_is_an_error_with_its_frame():
    from ptbench.fixtures.probes.adapters.registry import AdapterConfig, every

    na = AdapterConfig("lazy", "tests.test_matrix:lazy_import_failure", declares=every())
    record = na.probe_record("token-mean", "pg", "sgd", seed=0)
    assert record["status"] == "unsupported"
    assert record["reason"] == ("cannot import the framework here: ModuleNotFoundError: "
                                "No module named 'requests_that_is_not_installed'")
    crash = AdapterConfig("crash", "tests.test_matrix:crash_in_step", declares=every())
    record = crash.probe_record("token-mean", "pg", "sgd", seed=0)
    assert record["status"] == "error" and record["error"] == "ValueError: engine exploded"
    assert record["raised_at"].endswith("in make_step")
    assert "Traceback" in record["reason"] and "check_update_equivalence" in record["reason"]


def test_an_adapter_outside_its_release_range_says_so(monkeypatch):
    from ptbench.fixtures.probes.adapters.registry import get

    config = get("deepspeed-z2-offload-ws1")
    import importlib.metadata as md

    real = md.version
    monkeypatch.setattr(md, "version", lambda name: "0.14.0" if name == "deepspeed" else real(name))
    why = config.unavailable()
    if config.missing():
        pytest.skip("deepspeed not installed")
    assert why.startswith("the adapter supports deepspeed>=0.14.1 (on a CPU")
    assert why.endswith("this environment has deepspeed 0.14.0")


def missing_program():
    def make_step(model, opt):
        import subprocess

        subprocess.run(["ptbench-no-such-program", "--version"])
    return make_step


def test_a_missing_program_is_na():
    from ptbench.fixtures.probes.adapters.registry import AdapterConfig, every

    record = AdapterConfig("prog", "tests.test_matrix:missing_program", declares=every()).probe_record(
        "token-mean", "pg", "sgd", seed=0)
    assert (record["status"], record["reason"]) == (
        "unsupported", "the framework runs a program that is not installed here: ptbench-no-such-program")


def test_a_launch_that_dies_before_probing_leaves_a_record_per_configuration():
    from ptbench.fixtures.probes.cli import launch_failure

    died = ("torchrun exited with 1:\nTraceback (most recent call last):\n  File \"x\", line 1\n"
            "ImportError: cannot import name '_get_socket_with_port' from 'x'\n=====\n"
            "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n=====\n  rank : 0")
    assert launch_failure("deepspeed-z2-ws2", died) == {
        "framework": "deepspeed-z2-ws2", "status": "unsupported",
        "reason": "cannot import the framework here: ImportError: cannot import name "
                  "'_get_socket_with_port' from 'x'"}
    record = launch_failure("deepspeed-z2-ws2", "torchrun exited with -9:\nKilled")
    assert (record["status"], record["error"]) == ("error", "torchrun failed: Killed")
    record = launch_failure("deepspeed-z2-ws2", "RuntimeError: gloo timed out\n====\nChildFailedError: x")
    assert record["error"] == "RuntimeError: gloo timed out"


def test_an_error_footnote_names_the_raising_frame_and_the_framework_frame_behind_it():
    from ptbench.fixtures.probes.release_probe import error_summary

    reason = ('Traceback (most recent call last):\n'
              '  File "/work/main/fixtures/probes/adapters/deepspeed_engine.py", line 126, in __call__\n'
              '  File "/m/venvs/ds/lib/python3.11/site-packages/deepspeed/comm/torch.py", line 237, in all_gather_into_tensor\n'
              '  File "/m/layers/torch-2.13.0/torch/distributed/distributed_c10d.py", line 4394, in all_gather_single\n'
              'RuntimeError: Output 0 of Split is a view')
    assert error_summary({"reason": reason, "error": "RuntimeError: Output 0 of Split is a view"}) == (
        "RuntimeError: Output 0 of Split is a view (raised at torch/distributed/distributed_c10d.py:4394 "
        "in all_gather_single, from deepspeed/comm/torch.py:237 in all_gather_into_tensor)")
