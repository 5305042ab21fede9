"""The diagnostics study: its file is validated at the edge, RL starts on both sides of the OOD
peak, and the coupling numbers follow their formulas on a constructed trajectory."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ptbench.comparison import coupling_analysis as ca
from ptbench.comparison.study_config import load_study
from ptbench.comparison.study_runs import rl_starts
from ptbench.pipelines.config import ConfigError
from ptbench.pipelines.coupling import optimal_rl_steps, sft_rise_per_step

STUDIES = Path(__file__).resolve().parents[1] / "configs" / "diagnostics"


@pytest.mark.parametrize("name", sorted(p.name for p in STUDIES.glob("*.yaml")))
def test_shipped_studies_load(name):
    study = load_study(STUDIES / name)
    sft = study.sft_run(study.config.seeds[0])
    assert sft.diagnostics is not None and sft.stages[0].kind == "sft"
    assert sft.eval.at_steps == study.config.sft.checkpoint_steps
    assert sft.checkpoint_every * study.config.sft.checkpoints == sft.stages[0].steps
    rl = study.rl_run(0, "/some/checkpoint")
    assert rl.model == "/some/checkpoint" and [s.kind for s in rl.stages] == ["rl"]
    assert [s.kind for s in study.reverse_run(0).stages] == ["rl", "sft"]


@pytest.mark.parametrize(("override", "message"), [
    ("sft.checkpoints=5", r"sft\.checkpoints: expected an integer between 1 and 4, got 5"),
    ("sft.steps=1001", r"sft\.steps: expected a positive multiple of checkpoints \(2\)"),
    ("premises.ce_epsilon=0", r"premises\.ce_epsilon: expected a positive number"),
    ("spectral.p=[0.2, 1.5]", r"spectral\.p: expected a non-empty list of fractions"),
    ("rl_config=../tiny/sft-arithmetic.yaml", r"rl_config: expected a pipeline whose stages are rl"),
    ("sft.stage={lr_schedule: linear}", r"lr_schedule: expected 'constant' or 'cosine'"),
])
def test_a_bad_study_names_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_study(STUDIES / "tiny-arithmetic-quick.yaml", [override])


@pytest.mark.parametrize(("ood", "starts"), [
    ({500: 0.3, 1000: 0.6, 1500: 0.4, 2000: 0.2}, [1000, 2000]),  # peak, then past it
    ({500: 0.3, 1000: 0.6, 1500: 0.6, 2000: 0.2}, [1000, 2000]),  # ties: the earliest
    ({500: 0.1, 1000: 0.2, 1500: 0.3, 2000: 0.4}, [1500, 2000]),  # no decline: the two last
    ({400: 0.5}, [400]),
])
def test_rl_starts_on_both_sides_of_the_ood_peak(ood, starts):
    assert rl_starts(ood) == starts


def constructed_rl(mu: float, eta: float, gap0: float, rise: float, steps: int, every: int,
                   s0: float = 0.1) -> list[dict]:
    """A trajectory that meets PL with equality: gap_t = (1 - eta mu)^t gap0, ||grad R||^2 =
    2 mu gap_t; S rises by `rise` per step; reward* = 1."""
    points = []
    for t in range(0, steps + 1, every):
        gap = (1 - eta * mu) ** t * gap0
        points.append({"step": t, "global_step": t, "flops": 1e6 * t, "sft_ce": s0 + rise * t,
                       "reward": 1 - gap, "sampled_reward": 1 - gap, "id_accuracy": None,
                       "ood_accuracy": None, "sft_grad_norm": 0.5, "rl_grad_sq": 2 * mu * gap,
                       "cosine": -0.5, "smoothness": 2.0 if t else None,
                       "step_length": eta * math.sqrt(2 * mu * gap) if t else None})
    return points


def test_pl_and_the_best_duration_on_a_constructed_trajectory():
    mu, eta, gap0 = 50.0, 1e-3, 0.5
    smooth, g_s, g_r = 2.0, 0.5, math.sqrt(2 * mu * gap0)
    rise = sft_rise_per_step(smooth, eta, g_r, g_s)
    points = constructed_rl(mu, eta, gap0, rise, steps=400, every=10)
    assert ca.rl_pl(points, reward_star=1.0) == pytest.approx(mu)
    got = ca.prediction(points, eta, reward_star=1.0, exchange_rate=1.0)
    expected = optimal_rl_steps(mu, eta, gap0, rise, 1.0)
    assert got["predicted_best_step_lr"] == pytest.approx(expected)
    assert got["eta_effective"] == pytest.approx(eta)  # step length / ||grad R||, as constructed
    # the observed U(t) = gap_t + rise t has its minimum at the eval point nearest the formula's
    assert abs(got["observed_best_step"] - expected) <= 10
    assert got["predicted_ce_direction"] == "rises"  # cosine -0.5 < -threshold


def test_no_prediction_says_why():
    points = constructed_rl(mu=50.0, eta=1e-3, gap0=0.5, rise=0.0, steps=20, every=10)
    for p in points:
        p["rl_grad_sq"] = -1.0  # below the sampling noise everywhere: mu_hat = 0
    got = ca.prediction(points, 1e-3, reward_star=1.0, exchange_rate=1.0)
    assert got["predicted_best_step_lr"] is None
    assert "PL not usable" in got["why_no_prediction_lr"]


def test_sft_floor_and_pl():
    points = [{"sft_ce": ce, "sft_grad_norm": g} for ce, g in [(1.0, 2.0), (0.5, 1.0), (0.2, 0.1)]]
    floor = ca.ce_floor(points)
    assert floor == 0.2
    assert ca.sft_pl(points, floor) == pytest.approx(min(4.0 / 1.6, 1.0 / 0.6))


def three_seeds(peak: float, last: float, restored: float, unrelated: float) -> list[dict]:
    """The stored one-seed quick study's record as three seeds with the OOD accuracies given."""
    import copy
    import json

    record = json.loads((Path(__file__).parent / "data" / "diagnostics-study.json").read_text())["seeds"][0]
    seeds = []
    for i, jitter in enumerate((0.0, 0.01, -0.01)):
        s = copy.deepcopy(record)
        s["seed"] = i
        s["evaluated"]["peak"]["ood"], s["evaluated"]["sft"]["ood"] = peak + jitter, last
        for r in s["restore"]:
            r["ood"] = (unrelated if r["reference"] == "unrelated" else restored) + jitter
        seeds.append(s)
    return seeds


def test_judge_reads_the_right_numbers_and_a_broken_premise_flips_the_verdict():
    from ptbench.comparison.study import judge

    study = load_study(STUDIES / "tiny-arithmetic-quick.yaml")
    verdicts = {c["key"]: c["verdict"] for c in judge(study, three_seeds(0.6, 0.3, 0.45, 0.0))}
    assert verdicts["restore_recovers"] == "held"
    assert verdicts["unrelated_restore_recovers"] == "not held"  # the planted case
    broken = {c["key"]: c for c in judge(study, three_seeds(0.3, 0.3, 0.45, 0.0))}  # nothing lost
    assert broken["restore_recovers"]["verdict"] == "premise not met"
    assert broken["restore_recovers"]["measured"] == pytest.approx(-0.01)


def test_the_summary_names_each_premise_with_its_threshold_and_every_claim():
    import json

    from ptbench.comparison.study_summary import render

    summary = json.loads((Path(__file__).parent / "data" / "diagnostics-study.json").read_text())
    text = render(summary)
    for needle in ("needs <= 0.05", "needs <= 1", "needs >= 0.05", "predicted best RL step",
                   "rotation score per seed", "| p = 0.2 |"):
        assert needle in text, needle
    assert text.count("\n- **") == len(summary["claims"])
