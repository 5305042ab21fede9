"""The nightly report: verdicts against a clean history, by severity group, in the HTML page (in
a real browser), the Markdown summary and `ptbench report`'s exit status; bad input."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from ptbench.reports import stats
from ptbench.reports.build import build_report
from ptbench.reports.cli import main as report_main
from ptbench.reports.db import ResultsStore
from ptbench.reports.records import Measurement, RunInfo

SEEDS = (0, 1, 2)
PROBES = [("deepspeed-z2-offload-ws1", "pg"), ("trl-sft", "ce"), ("torch", "ce")]


def night(rng: random.Random, *, reward: float = 0.75, probe_failing: str = "",
          step_seconds: float = 0.050, seeds: tuple[int, ...] = SEEDS) -> list[Measurement]:
    """One night's measurements: a pipeline over `seeds`, three probes, three timings."""
    ms = []
    for seed in seeds:
        for step, fraction in ((0, 0.2), (50, 0.8), (100, 1.0)):
            for metric, value in (("eval/sampled_reward", reward * fraction),
                                  ("eval/sft_ce", 1.5 - fraction), ("eval/id_accuracy", 0.9 * fraction)):
                ms.append(Measurement(metric=metric, value=value + rng.gauss(0, 0.01),
                                      direction="lower" if "ce" in metric else "higher",
                                      pipeline="sft_then_rl-arithmetic", stage="1:rl", step=step,
                                      seed=seed, flops=1e9 * (1 + step), task="arithmetic"))
    for config, objective in PROBES:
        for seed in (0, 1):  # a failing configuration fails on seed 1 only: the worst counts
            failing = config == probe_failing and seed == 1
            ms.append(Measurement(metric="probe", value=0.0 if failing else 1.0, kind="status",
                                  status="fail" if failing else "pass", config=config, seed=seed,
                                  detail="micro-batches 2-5 of 6 look dropped" if failing else "",
                                  labels={"objective": objective, "loss_agg": "token-mean",
                                          "optimizer": "sgd"}))
    for metric, seconds in (("timing/probe", 0.30), ("timing/training_step", step_seconds),
                            ("timing/generation", 0.20)):
        ms.append(Measurement(metric=metric, value=seconds * rng.lognormvariate(0, 0.04),
                              kind="timing", direction="lower", unit="s"))
    return ms


def store_with_history(path: Path, nights: int = 7, seeds: tuple[int, ...] = SEEDS,
                       **tonight) -> ResultsStore:
    store = ResultsStore.open(path)
    rng = random.Random(0)
    for i in range(nights + 1):
        info = RunInfo(kind="bench", started=f"2026-11-{10 + i:02d}T02:17:00+00:00",
                       git_revision=f"{i:040x}", versions={"torch": "2.13.0", "trl": "1.16.0"},
                       config_hashes={"sft_then_rl-arithmetic": "abc"})
        run = store.begin_run(info)
        store.add(run, night(rng, seeds=seeds, **(tonight if i == nights else {})))
        store.finish_run(run)
    return store


def verdicts(built) -> dict[str, tuple[str, stats.Severity]]:
    return {v.series: (str(v.comparison.verdict), v.severity) for v in built.comparison.verdicts}


def test_a_clean_night_raises_nothing(tmp_path):
    built = build_report(store_with_history(tmp_path / "s.sqlite"), tmp_path / "out")
    assert not built.comparison.failed, built.comparison.headline()
    found = {word for word, _ in verdicts(built).values()}
    assert found <= {"noise", "unchanged"}, found
    assert built.comparison.headline().startswith("OK: run 8 ")


@pytest.mark.parametrize(("planted", "series", "word", "group"), [
    ({"reward": 0.60}, "sft_then_rl-arithmetic 1:rl eval/sampled_reward", "regression",
     stats.Severity.REGRESSION_OVER_10),
    ({"probe_failing": "deepspeed-z2-offload-ws1"}, "deepspeed-z2-offload-ws1 probe pg token-mean sgd",
     "newly failing", stats.Severity.NEW_FAILURE),
    ({"step_seconds": 0.065}, "timing/training_step", "regression", stats.Severity.REGRESSION_OVER_10),
], ids=["reward-drop", "probe-fails", "slower-step"])
def test_a_planted_regression_is_reported_in_its_group(tmp_path, capsys, planted, series, word, group):
    store_with_history(tmp_path / "s.sqlite", **planted).close()
    code = report_main(["--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "out")])
    assert code == 1, "a regression or a new failure makes the exit status non-zero"
    assert capsys.readouterr().out.startswith("REGRESSION: run 8 ")
    with ResultsStore.open(tmp_path / "s.sqlite") as store:
        built = build_report(store, tmp_path / "out")
    found = verdicts(built)
    assert found[series] == (word, group), found[series]
    others = {s: w for s, (w, _) in found.items() if s != series}
    assert set(others.values()) <= {"noise", "unchanged"}, others
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert f"**{group.title} (1)**" in markdown
    assert markdown.index(f"**{group.title} (1)**") < markdown.index("the rest:")
    if "probe_failing" in planted:
        assert "micro-batches 2-5 of 6 look dropped" in markdown


def test_the_markdown_puts_the_verdict_and_versions_first(tmp_path):
    store = store_with_history(tmp_path / "s.sqlite", reward=0.6)
    built = build_report(store, tmp_path / "out")
    lines = built.markdown.read_text().splitlines()
    assert lines[2].startswith("**REGRESSION: run 8")
    assert any(line.startswith("- git: ") and "->" in line for line in lines)


def test_first_run_and_empty_sections_say_why(tmp_path):
    store = ResultsStore.open(tmp_path / "s.sqlite")
    run = store.begin_run(RunInfo(kind="bench", started="2026-11-10T02:17:00+00:00"))
    store.add(run, [Measurement(metric="timing/probe", value=0.3, kind="timing", direction="lower")])
    store.finish_run(run)
    built = build_report(store, tmp_path / "out")
    assert "first run of its kind" in built.comparison.headline() and not built.comparison.failed
    markdown = built.markdown.read_text()
    for reason in ("no probe ran in this run", "no pipeline ran in this run",
                   "no baseline: this is the first run of its kind",
                   "no bug-zoo run in the store (ptbench matrix zoo)"):
        assert reason in markdown


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a database\n")
    assert report_main(["--store", str(tmp_path / "notes.txt"), "--out", str(tmp_path)]) == 2
    assert "not a ptbench results store" in capsys.readouterr().err
    assert report_main(["--store", str(tmp_path / "empty.sqlite"), "--out", str(tmp_path)]) == 2
    assert "holds no run yet" in capsys.readouterr().err
    store = store_with_history(tmp_path / "s.sqlite", nights=1)
    other = store.begin_run(RunInfo(kind="bench", started="2026-11-20T02:17:00+00:00",
                                    config_hashes={"sft_then_rl-arithmetic": "def"}))
    store.finish_run(other)
    store.close()
    assert report_main(["--store", str(tmp_path / "s.sqlite"), "--run", str(other), "--baseline", "1",
                        "--out", str(tmp_path)]) == 2
    assert "another configuration" in capsys.readouterr().err
    assert report_main(["--store", str(tmp_path / "s.sqlite"), "--run", "99", "--out", str(tmp_path)]) == 2
    assert "no run 99" in capsys.readouterr().err
    with pytest.raises(ValueError, match="direction: expected one of"):
        Measurement(metric="eval/x", value=1.0, direction="up")


def test_the_html_report_passes_in_a_real_browser(tmp_path):
    """Headless Chromium: no console or page error, no broken image, no request off the
    machine, every section with content or a reason; the screenshot is kept."""
    from tests.browser import check_page, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    store = store_with_history(tmp_path / "s.sqlite", reward=0.6)
    built = build_report(store, tmp_path / "out")
    check = check_page(built.html, tmp_path / "out" / "report.png")
    assert check.problems() == []
    assert (tmp_path / "out" / "report.png").stat().st_size > 10_000
    html = built.html.read_text()
    assert html.count('class="ptbench-section"') == 11 and "data:image/png;base64," in html


def test_a_series_key_ignores_seed_and_step():
    a = Measurement(metric="eval/x", value=1.0, pipeline="p", stage="0:sft", step=10, seed=0)
    from ptbench.reports.verdicts import series_key

    assert series_key(a) == series_key(dataclasses.replace(a, step=20, seed=3, value=2.0))
    assert series_key(a) != series_key(dataclasses.replace(a, stage="1:rl"))


@pytest.mark.parametrize(("reward", "expected"), [(0.75, "noise"), (0.60, "regression")])
def test_a_single_seed_night_is_judged_against_the_earlier_nights(tmp_path, reward, expected):
    """One seed a night is too few for a test over seeds: the value is judged against the
    nights before it (median and MAD), and a 20% reward drop is still a regression."""
    built = build_report(store_with_history(tmp_path / "s.sqlite", seeds=(0,), reward=reward),
                         tmp_path / "out")
    word, _ = verdicts(built)["sft_then_rl-arithmetic 1:rl eval/sampled_reward"]
    assert word == expected
    assert built.comparison.failed == (expected == "regression")
