"""The update-equivalence probe fails every planted bug and passes every correct variant."""

from __future__ import annotations

import itertools

import pytest

from ptbench.fixtures.probes import LOSS_AGGS, OBJECTIVES, check_update_equivalence
from ptbench.fixtures.probes.planted import (
    CORRECT_VARIANTS,
    PLANTED_BUGS,
    AdvantagesIgnored,
    FirstAndLastOnly,
    GradsNotZeroed,
    LastMicroBatchOnly,
    MeanOfMicroBatchMeans,
    MissingGradAccumScale,
    SmallestMicroBatchMisweighted,
    WrongAggregation,
)

SEEDS = (0, 1, 2)
CASES = [(p, agg, obj) for p in PLANTED_BUGS for agg in p.loss_aggs for obj in p.objectives]


@pytest.mark.parametrize(("planted", "loss_agg", "objective"), CASES,
                         ids=[f"{p.bug.__name__}-{a}-{o}" for p, a, o in CASES])
def test_probe_catches_planted_bug_with_sgd(planted, loss_agg, objective):
    for seed in SEEDS:
        report = check_update_equivalence(planted.bug, loss_agg=loss_agg, objective=objective,
                                          optimizer="sgd", seed=seed)
        assert not report.passed, f"{planted.bug.__name__} not caught at seed {seed}:\n{report}"
        assert report.rel_error > 10 * report.tolerance


ADAMW_CASES = [(p, agg, obj) for p, agg, obj in CASES if agg not in p.uniform_scale]


@pytest.mark.parametrize(("planted", "loss_agg", "objective"), ADAMW_CASES,
                         ids=[f"{p.bug.__name__}-{a}-{o}" for p, a, o in ADAMW_CASES])
def test_probe_catches_planted_bug_with_adamw(planted, loss_agg, objective):
    report = check_update_equivalence(planted.bug, loss_agg=loss_agg, objective=objective,
                                      optimizer="adamw", seed=0)
    assert not report.passed, str(report)
    assert any("uniform scale" in n for n in report.notes)


COMBOS = list(itertools.product(LOSS_AGGS, OBJECTIVES, ("sgd", "adamw")))


@pytest.mark.parametrize("variant", CORRECT_VARIANTS, ids=lambda v: v.__name__)
def test_no_false_alarm_over_20_seeds(variant):
    # 20 seeds per correct variant, cycling through every (loss_agg, objective, optimizer).
    for seed in range(20):
        loss_agg, objective, optimizer = COMBOS[seed % len(COMBOS)]
        report = check_update_equivalence(variant, loss_agg=loss_agg, objective=objective,
                                          optimizer=optimizer, seed=seed)
        assert report.passed, str(report)
        assert report.rel_error < report.tolerance / 10, "float noise should sit far below the tolerance"


def test_no_false_alarm_on_llama_architecture():
    for seed in range(3):
        report = check_update_equivalence(CORRECT_VARIANTS[0], seed=seed, model="probe-llama")
        assert report.passed, str(report)


@pytest.mark.parametrize(("bug", "loss_agg", "objective", "expected"), [
    (FirstAndLastOnly, "token-mean", "ce", "micro-batches 2-5 of 6 look dropped"),
    (LastMicroBatchOnly, "token-mean", "ce", "micro-batches 1-5 of 6 look dropped"),
    (MeanOfMicroBatchMeans, "token-mean", "ce", "mean of per-micro-batch token-mean"),
    (MissingGradAccumScale, "seq-mean-token-sum", "ce", "scaled by 6"),
    (WrongAggregation, "token-mean", "ce", "global seq-mean-token-mean"),
    (SmallestMicroBatchMisweighted, "token-mean", "ce", "weighted 1.10, 1.00"),
    (GradsNotZeroed, "token-mean", "ce", "gradients not zeroed"),
    (AdvantagesIgnored, "token-mean", "pg", "advantages ignored"),
])
def test_diagnosis_names_the_bug(bug, loss_agg, objective, expected):
    report = check_update_equivalence(bug, loss_agg=loss_agg, objective=objective, seed=0)
    assert expected in str(report), str(report)
