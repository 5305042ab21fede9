"""`ptbench matrix` end to end, offline: a recorded release list and probe results already in the
cache (what a finished probe leaves), so nothing is installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ptbench.fixtures.probes.matrix import main
from ptbench.fixtures.probes.release_probe import ReleaseProber
from ptbench.fixtures.probes.releases import RecordedIndex, releases_between
from ptbench.reports.store import write_json_atomic

RECORDED = str(Path(__file__).parent / "data" / "pypi-releases.json")
DROPPED = ("deepspeed-z2-offload-ws1 [pg, token-mean, sgd, seed 0]: FAIL\n"
           "  step 1: relative error 8.4e-01\n"
           "    -> micro-batches 2-5 of 6 look dropped (fitted weights 1.00, 0.00, 0.00, 0.00, 0.00, 1.00)")


def cache(root: Path, version: str, status: str, config="deepspeed-z2-offload-ws1", objective="pg"):
    """What `ReleaseProber` leaves after probing `version`."""
    record = {"framework": config, "objective": objective, "status": status,
              **({"text": DROPPED} if status == "fail" else {})}
    if status == "unsupported":
        record["reason"] = "the adapter supports deepspeed>=0.14.1"
    path = ReleaseProber(root, "deepspeed", config, objective).results_path(version)
    write_json_atomic(path, {"kind": "probes", "environment": {}, "records": [record],
                             "subject": {"package": "deepspeed", "version": version}})


@pytest.fixture()
def root(tmp_path):
    releases = releases_between(RecordedIndex(RECORDED), "deepspeed", "0.14.0", "0.19.0")
    for v in releases:
        bad = releases.index("0.15.2") <= releases.index(v) < releases.index("0.19.0")
        cache(tmp_path, v, "unsupported" if v == "0.14.0" else "fail" if bad else "pass")
    return tmp_path


def matrix(root, *args) -> list[str]:
    return ["--root", str(root), "--index", RECORDED, *args]


def test_bisect_names_the_first_bad_release_and_stores_the_search(root, capsys):
    code = main(matrix(root, "bisect", "deepspeed", "--good", "0.14.0", "--bad", "0.18.9",
                       "--bug", "deepspeed-offload-drops-micro-batches"))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("first bad release (broke it): 0.15.2\n")
    assert "0.14.0 cannot be probed: taken as good, as given" in err
    (saved,) = (root / "bisect").glob("*.json")
    doc = json.loads(saved.read_text())
    assert (doc["first"], doc["last_old"], len(doc["releases"])) == ("0.15.2", "0.15.1", 38)
    assert doc["probes"] <= 8
    code = main(matrix(root, "history"))
    table = capsys.readouterr().out
    assert code == 0 and "first bad: **0.15.2** (last good 0.15.1)" in table
    assert f"| {doc['probes']} / 38 |" in table


def test_which_release_fixed_it(root, capsys):
    code = main(matrix(root, "bisect", "deepspeed", "--bad", "0.16.0", "--good", "0.19.0",
                       "--bug", "deepspeed-offload-drops-micro-batches"))
    assert code == 0
    assert capsys.readouterr().out.startswith("first good release (fixed it): 0.19.0\n")


@pytest.mark.parametrize(("args", "message"), [
    (["run", "deepspeed==0.14.99"], "release deepspeed==0.14.99: deepspeed has no published release "
                                    "'0.14.99' (nearest published: 0.14.5, 0.15.0)"),
    (["bisect", "deepspeed", "--good", "0.14.0", "--bad", "0.14.0", "--pattern", "x",
      "--config", "deepspeed-z2-ws1", "--objective", "pg"], "both are 0.14.0"),
    (["bisect", "deepspeed", "--good", "0.14.0", "--bad", "0.18.9", "--pattern", "x",
      "--config", "trl-sft", "--objective", "pg"], "--config: trl-sft does not probe deepspeed"),
    (["bisect", "deepspeed", "--good", "0.14.0", "--bad", "0.18.9", "--pattern", "x",
      "--config", "deepspeed-z2-ws2", "--objective", "pg"], "runs at world size 2"),
    (["bisect", "deepspeed", "--good", "0.14.0", "--bad", "0.18.9"], "--pattern (or --bug): required"),
    (["bisect", "deepspeed", "--good", "0.14.0", "--bad", "0.18.9", "--bug", "nope"],
     "bug: expected one of"),
    (["bisect", "numpy", "--good", "1", "--bad", "2", "--pattern", "x"], "package: expected one of"),
    (["zoo", "nope"], "bug: expected one of"),
])
def test_bad_input_is_named(root, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main(matrix(root, *args))
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (root / "bisect").exists() and not (root / "results").exists()  # nothing written


def test_bounds_the_wrong_way_round_stop_with_a_message(root, capsys):
    code = main(matrix(root, "bisect", "deepspeed", "--good", "0.18.9", "--bad", "0.14.1",
                       "--bug", "deepspeed-offload-drops-micro-batches"))
    assert code == 2
    assert "--bad 0.14.1: the probe does not show the bug there" in capsys.readouterr().err


def test_zoo_confirms_and_a_planted_wrong_expectation_is_changed(root, capsys, tmp_path):
    from ptbench.fixtures.probes.zoo import ZOO

    case = next(c for c in yaml.safe_load(ZOO.read_text())
                if c["id"] == "deepspeed-offload-drops-micro-batches")
    good = tmp_path / "zoo-good.yaml"
    good.write_text(yaml.safe_dump([case]))
    code = main(matrix(root, "zoo", "--zoo", str(good), "--store", "none"))
    out = capsys.readouterr().out
    assert code == 0 and "| confirmed | every check as recorded |" in out
    planted = tmp_path / "zoo-planted.yaml"  # the fix recorded one release too early
    planted.write_text(yaml.safe_dump([{**case, "affected": ">=0.15.2,<0.18.9", "fixed_in": "0.18.9",
                                        "check": {"bad": "0.18.8", "good": "0.18.9"}}]))
    code = main(matrix(root, "zoo", "--zoo", str(planted), "--store", "none"))
    out = capsys.readouterr().out
    assert code == 1 and "| changed | deepspeed-z2-offload-ws1 at 0.18.9 (recorded as good) shows the bug" in out
    assert json.loads((root / "zoo.json").read_text())["cases"][0]["status"] == "changed"
