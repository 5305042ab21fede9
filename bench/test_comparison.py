"""Part 3 of the CPU default, and the full tiny comparison under --ptbench-slow.

Default: `configs/comparisons/tiny-arithmetic-short.yaml`, the six pipelines at equal FLOPs on one
seed (about 3 minutes on 2 cores). It checks what one seed can: every pipeline was evaluated at
every budget point it runs to, having spent that compute and less than one more step; SFT learns
within the budget; the DeepSpeed offload drop, switched on, changes what SFT-then-RL learns. Its
curves and claims go to the results store, so the nightly report shows the comparison.

Slow (--ptbench-slow): `configs/comparisons/tiny-arithmetic.yaml` in full (about two hours on two
cores; resumable in --ptbench-work): every claim must get the verdict the comparison file
records, and a planted handicap must change each claim's verdict (then this check fails, as it
should). A claim that did not hold is not a failure; a changed verdict is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ptbench.comparison.config import load_comparison
from ptbench.comparison.runner import run_comparison
from ptbench.comparison.trials import TrialResult, finished
from ptbench.reports.comparisons import measurements_from_comparison

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "comparisons"
SHORT = CONFIGS / "tiny-arithmetic-short.yaml"
FULL = CONFIGS / "tiny-arithmetic.yaml"


def changed_verdicts(summary: dict) -> list[str]:
    """Every claim whose verdict differs from the one the comparison file records."""
    return [c["explain"] for c in summary["claims"] if not c["as_expected"]]


def _trial_results(out: Path) -> list[TrialResult]:
    return [r for r in (finished(p.parent) for p in out.glob("trials/*/*/result.json")) if r]


def test_short_comparison_at_equal_compute(ptbench_recorder, tmp_path):
    comparison = load_comparison(SHORT)
    summary = run_comparison(comparison, tmp_path / "short", workers=2)
    ptbench_recorder.add(measurements_from_comparison(summary))
    cfg = comparison.config
    for name in comparison.base_configs:
        reached = [p["budget"] for p in summary["curves"][name]["id_accuracy"]]
        assert reached == [0.0, *(p for p in cfg.budget.points if p <= cfg.stop_point(name))], name
    # Equal compute: each eval at or past its budget point, by less than one step's FLOPs.
    for result in _trial_results(tmp_path / "short"):
        assert result.flops >= cfg.stop_point(result.trial.pipeline)
        assert result.flops < cfg.stop_point(result.trial.pipeline) * 1.05, result.trial
    learned = summary["learning"]["sft"]["gains"][0]
    assert learned >= 0.2, f"SFT did not learn within the short budget: {learned:+.3f}"
    ce = {r.trial.bug: r.final["sft_ce"] for r in _trial_results(tmp_path / "short")
          if r.trial.pipeline == "sft_then_rl"}
    assert abs(ce["deepspeed-offload-drop"] - ce[None]) > 1e-3, (
        f"the planted offload drop changed nothing (demonstration CE {ce}): is it switched on?")
    assert changed_verdicts(summary) == []


@pytest.fixture(scope="module")
def full_comparison(request):
    work = Path(request.config.getoption("--ptbench-work")) / "compare-tiny"
    comparison = load_comparison(FULL)
    return comparison, work, run_comparison(comparison, work, workers=2)


@pytest.mark.slow
def test_full_comparison_verdicts_are_the_recorded_ones(full_comparison, ptbench_recorder):
    _, _, summary = full_comparison
    ptbench_recorder.add(measurements_from_comparison(summary))
    assert changed_verdicts(summary) == []


@pytest.mark.slow
def test_ood_split_is_partly_solved_after_sft(full_comparison):
    """The comparison's OOD split: after SFT, OOD accuracy is clearly above 0 and below ID."""
    _, _, summary = full_comparison
    final = summary["curves"]["sft"]
    ood, ood_low, _ = (final["ood_accuracy"][-1][k] for k in ("mean", "low", "high"))
    assert ood >= 0.05 and ood_low > 0, f"OOD after SFT {ood:.3f} (CI low {ood_low})"
    assert ood <= final["id_accuracy"][-1]["mean"] - 0.10


def _handicap(comparison, pipeline: str) -> dict[str, dict]:
    """Every stage of `pipeline` at a learning rate that leaves it where it started."""
    stages = comparison.base_configs[pipeline].stages
    return {pipeline: {f"stages.{i}.lr": 1e-9 for i in range(len(stages))}}


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(load_comparison(FULL).config.claims)))
def test_a_planted_handicap_changes_the_verdict(full_comparison, index):
    """Handicap the side that makes the verdict move: b when the claim is expected to be not
    held or inconclusive (it should then hold), a when it is expected to hold."""
    comparison, work, _ = full_comparison
    claim = comparison.config.claims[index]
    side = claim.a if claim.expect == "held" else claim.b
    summary = run_comparison(comparison, work, workers=2, handicap=_handicap(comparison, side),
                             skip_bugs=True, summary_name=f"handicap-{side}")
    judged = next(c for c in summary["claims"] if c["name"] == claim.name)
    assert judged["verdict"] != claim.expect, judged["explain"]
    assert changed_verdicts(summary), "the bench check fails when a verdict changes"


SMALL = CONFIGS / "small-arithmetic.yaml"
SMALL_MINUTES = 8


@pytest.mark.gpu
def test_small_comparison_on_one_gpu(ptbench_recorder, ptbench_work):
    """The small rung: six pipelines on a 24M-parameter model, one seed, in under 8 minutes."""
    import time

    started = time.monotonic()
    summary = run_comparison(load_comparison(SMALL), ptbench_work / "compare-small", workers=3)
    minutes = (time.monotonic() - started) / 60
    ptbench_recorder.add(measurements_from_comparison(summary))
    assert all(len(c["id_accuracy"]) >= 2 for c in summary["curves"].values())
    assert minutes < SMALL_MINUTES, f"the small comparison took {minutes:.1f} min"
