"""The bug zoo: every shipped case is valid data, and the runner's verdicts on a fake prober."""

from __future__ import annotations

import json

import pytest
import yaml

from ptbench.fixtures.probes.bisect import ProbeOutcome
from ptbench.fixtures.probes.zoo import load_zoo, run_zoo, zoo_table

DROPPED = "FAIL\n    -> micro-batches 2-5 of 6 look dropped (fitted weights 1.00, 0.00, ...)"
TWICE = "FAIL\n    -> the update matches the declared loss divided by grad_accum twice"
CASE = {"id": "offload-drop", "package": "deepspeed", "configs": ["deepspeed-z2-offload-ws1"],
        "objective": "pg", "affected": ">=0.15.2,<0.19.0", "fixed_in": "0.19.0",
        "reference": "https://github.com/deepspeedai/DeepSpeed/pull/0",
        "diagnosis": r"micro-batches [0-9, -]+ of \d+ look dropped",
        "verified": "test data", "check": {"bad": "0.18.9", "good": "0.19.0"}}


def fake(answers: dict[str, ProbeOutcome]):
    """A prober factory answering by version; every call recorded."""
    calls = []

    def make(package, config, objective):
        def prober(version):
            calls.append((package, config, objective, version))
            return answers[version]
        return prober

    make.calls = calls
    return make


def write_zoo(tmp_path, *cases):
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(list(cases)))
    return path


def test_the_shipped_zoo_is_valid_and_complete():
    zoo = load_zoo()
    packages = {c.package for c in zoo.cases}
    assert {"deepspeed", "openrlhf", "transformers", "trl"} <= packages
    for case in zoo.cases:
        assert case.reference.startswith("https://github.com/"), case.id
        assert case.verified and case.diagnosis and case.check
        assert case.cannot_run or "bad" in case.check, case.id


def test_verdicts_confirmed_changed_not_reproduced_cannot_run(tmp_path):
    zoo = load_zoo(write_zoo(tmp_path, CASE))
    ok = fake({"0.18.9": ProbeOutcome("fail", DROPPED), "0.19.0": ProbeOutcome("pass")})
    (result,) = run_zoo(zoo, ok)
    assert (result.status, result.reason) == ("confirmed", "every check as recorded")
    assert [c[3] for c in ok.calls] == ["0.18.9", "0.19.0"]
    # the recorded fix is wrong: the "good" release still shows the bug
    (result,) = run_zoo(zoo, fake({"0.18.9": ProbeOutcome("fail", DROPPED),
                                   "0.19.0": ProbeOutcome("fail", DROPPED)}))
    assert result.status == "changed" and "recorded as good) shows the bug" in result.reason
    # the affected release fails, but with another diagnosis
    (result,) = run_zoo(zoo, fake({"0.18.9": ProbeOutcome("fail", TWICE), "0.19.0": ProbeOutcome("pass")}))
    assert result.status == "changed" and "divided by grad_accum twice" in result.reason
    # the "good" release fails with another bug
    (result,) = run_zoo(zoo, fake({"0.18.9": ProbeOutcome("fail", DROPPED), "0.19.0": ProbeOutcome("fail", TWICE)}))
    assert result.status == "changed" and "(recorded as good) fails with another diagnosis" in result.reason
    (result,) = run_zoo(zoo, fake({"0.18.9": ProbeOutcome("pass"), "0.19.0": ProbeOutcome("pass")}))
    assert (result.status, result.reason) == ("not reproduced", "deepspeed-z2-offload-ws1 at 0.18.9 passes")
    (result,) = run_zoo(zoo, fake({"0.18.9": ProbeOutcome("not installable", "no wheel"),
                                   "0.19.0": ProbeOutcome("pass")}))
    assert result.status == "cannot run" and "no wheel" in result.reason
    marked = load_zoo(write_zoo(tmp_path, {**CASE, "cannot_run": "needs 8 GPUs"}))
    (result,) = run_zoo(marked, fake({}))
    assert (result.status, result.reason) == ("cannot run", "needs 8 GPUs")
    assert "| cannot run | needs 8 GPUs |" in zoo_table([result])
    assert json.dumps(result.to_dict())  # what `ptbench matrix zoo` writes


def test_a_planted_wrong_expectation_is_reported_as_changed(tmp_path):
    """The shipped offload case with its diagnosis replaced: the probe's real text no longer matches."""
    zoo = load_zoo(write_zoo(tmp_path, {**CASE, "diagnosis": "the last micro-batch only"}))
    (result,) = run_zoo(zoo, fake({"0.18.9": ProbeOutcome("fail", DROPPED), "0.19.0": ProbeOutcome("pass")}))
    assert result.status == "changed" and "look dropped" in result.reason


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "red"}, r"unknown field\(s\) colour"),
    ({"reference": ""}, "reference: required"),
    ({"configs": ["deepspeed-z9-ws1"]}, "adapter: expected one of"),
    ({"objective": "kl"}, "objective: expected one of"),
    ({"affected": "from 0.15"}, "affected: expected a version range"),
    ({"check": {"bad": "0.19.0"}}, r"check.bad: 0.19.0 is not in the affected range"),
    ({"check": {"good": "0.18.9"}}, r"check.good: 0.18.9 is in the affected range"),
    ({"check": {"worse": "0.18.9"}}, "check: expected a mapping with 'bad' and/or 'good'"),
    ({"fixed_in": "0.16.0"}, "fixed_in: 0.16.0 is inside the affected range"),
])
def test_bad_zoo_entries_name_the_case_and_field(tmp_path, change, message):
    with pytest.raises(ValueError, match=message) as info:
        load_zoo(write_zoo(tmp_path, {**CASE, **change}))
    assert "case 1" in str(info.value)


def test_unknown_and_duplicate_ids(tmp_path):
    zoo = load_zoo(write_zoo(tmp_path, CASE))
    with pytest.raises(ValueError, match="bug: expected one of offload-drop, got 'nope'"):
        run_zoo(zoo, fake({}), ["nope"])
    with pytest.raises(ValueError, match="offload-drop listed twice"):
        load_zoo(write_zoo(tmp_path, CASE, CASE))


def test_zoo_results_go_to_the_store_and_the_report(tmp_path):
    from ptbench.reports.build import bug_zoo_section
    from ptbench.reports.db import ResultsStore
    from ptbench.reports.importers import import_path

    zoo = load_zoo(write_zoo(tmp_path, CASE, {**CASE, "id": "marked", "cannot_run": "needs 8 GPUs"}))
    results = run_zoo(zoo, fake({"0.18.9": ProbeOutcome("fail", DROPPED), "0.19.0": ProbeOutcome("fail", DROPPED)}))
    path = tmp_path / "zoo.json"
    path.write_text(json.dumps({"kind": "zoo", "time": "2026-12-02T00:00:00+00:00",
                                "cases": [r.to_dict() for r in results]}))
    with ResultsStore.open(tmp_path / "s.sqlite") as store:
        assert bug_zoo_section(store).blocks == []  # empty, with its reason
        import_path(store, path)
        (table,) = bug_zoo_section(store).blocks
        assert "1 case(s) could not run here" in table.caption
    rows = table.frame.to_dict("records")
    assert rows == [{"bug": "offload-drop", "package": "deepspeed", "status": "changed",
                     "what the probe saw": rows[0]["what the probe saw"]}]
    assert "recorded as good) shows the bug" in rows[0]["what the probe saw"]
