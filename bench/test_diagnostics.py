"""Why pipelines differ: the coupling and spectral diagnostics (`ptbench diagnose`).

Default (CPU, about 2 minutes): `configs/diagnostics/tiny-arithmetic-quick.yaml`, the study's
runs cut short on one seed. It checks what one seed can: every diagnostic is measured at every
eval point; no claim is judged from one seed (each is inconclusive or premise not met, with its
measured value); UV restore of a real checkpoint onto itself changes no prediction, and restore
from an unrelated model destroys what SFT taught. Its claims and figures go to the results store.

Slow (--ptbench-slow): `configs/diagnostics/tiny-arithmetic.yaml` in full (3 seeds, about 40
minutes on two cores; resumable in --ptbench-work): every claim must get the verdict the study
file records (a claim that does not hold is not a failure; a changed verdict is), and the planted
restore from an unrelated model must not be held.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ptbench.comparison.spectral_study import evaluate_checkpoint
from ptbench.comparison.study import run_study
from ptbench.comparison.study_config import load_study
from ptbench.fixtures.tasks import get_task
from ptbench.pipelines.spectral_pass import restore_checkpoint
from ptbench.reports.diagnostics import measurements_from_study

STUDIES = Path(__file__).resolve().parents[1] / "configs" / "diagnostics"


def _measured_everywhere(summary: dict) -> None:
    for record in summary["seeds"]:
        curves = [*record["rl_curves"].values(), record["sft_curve"], record["sft_after_rl_curve"],
                  *record["reverse_curves"].values()]
        for curve in curves:
            for point in curve:
                assert math.isfinite(point["sft_grad_norm"]) and point["sft_grad_norm"] > 0, point
                assert 0 <= point["reward"] <= 1 and math.isfinite(point["rl_grad_sq"]), point


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    study = load_study(STUDIES / "tiny-arithmetic-quick.yaml")
    out = tmp_path_factory.mktemp("diagnose-quick")
    return study, out, run_study(study, out, workers=2)


def test_quick_study_measures_every_diagnostic_and_judges_nothing_from_one_seed(quick, ptbench_recorder):
    _, _, summary = quick
    ptbench_recorder.add(measurements_from_study(summary))
    _measured_everywhere(summary)
    record = summary["seeds"][0]
    assert record["evaluated"]["sft"]["id"] >= record["evaluated"]["base"]["id"] + 0.3, record["evaluated"]
    for claim in summary["claims"]:
        assert claim["verdict"] in ("inconclusive", "premise not met"), claim["explain"]
        if claim["verdict"] == "premise not met":
            assert claim["measured"] is not None and claim["threshold"] is not None, claim


def test_uv_restore_on_real_checkpoints(quick, tmp_path):
    """Onto itself: the same predictions. From an unrelated model: SFT's ability is gone."""
    study, out, summary = quick
    record = summary["seeds"][0]
    sft = out / "runs" / "sft/seed-0" / "checkpoints" / f"step-{study.config.sft.steps:06d}"
    task = get_task(study.config.task.name, **study.config.task.options)
    examples = {"id": task.examples("id", 100, seed=5), "ood": task.examples("ood", 100, seed=5)}
    same = restore_checkpoint(sft, sft, tmp_path / "self", p=1.0, q=1.0, progress=False)
    assert evaluate_checkpoint(same, task, examples, 5) == evaluate_checkpoint(sft, task, examples, 5)
    unrelated = next(r for r in record["restore"] if r["reference"] == "unrelated")
    assert unrelated["id"] <= record["evaluated"]["sft"]["id"] - 0.3, (unrelated, record["evaluated"])


@pytest.mark.slow
def test_full_study_verdicts_are_the_recorded_ones(ptbench_work, ptbench_recorder):
    study = load_study(STUDIES / "tiny-arithmetic.yaml")
    summary = run_study(study, ptbench_work / "diagnose-tiny", workers=2)
    ptbench_recorder.add(measurements_from_study(summary))
    _measured_everywhere(summary)
    planted = next(c for c in summary["claims"] if c["key"] == "unrelated_restore_recovers")
    assert planted["verdict"] != "held", planted["explain"]
    assert [c["explain"] for c in summary["claims"] if not c["as_expected"]] == []
