"""The papers' explanations as claims, judged over seeds only where their premises hold.

Each check returns a `reports.stats.ClaimResult`: held / not held / inconclusive (paired over
seeds, `paired_claim`), or premise not met (`premise_not_met`, with the measured value) when a
seed's run does not meet the premise the claim rests on. The thresholds are fixed in
`Premises` before any run.

    ce_rises_during_rl        RL after a converged SFT raises the demonstration cross-entropy
                              (premise: SFT's CE within epsilon of its floor, grad norm below g)
    reward_falls_during_sft   SFT after a converged RL lowers the reward
                              (premise: RL's reward within `reward_margin` of the best run)
    vectors_rotate_more       fine-tuning rotates singular vectors more than it moves singular
                              values, each measured against a random perturbation of the same
                              Frobenius norm (per seed: mean over matrices of
                              log(angle / random angle) - log(value change / random value change))
    restore_recovers          UV restore recovers part of the OOD accuracy SFT lost
                              (premise: SFT lost at least `min_ood_loss` of OOD accuracy)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ptbench.pipelines.config import require
from ptbench.reports.stats import ClaimResult, paired_claim, premise_not_met


@dataclass(frozen=True)
class Premises:
    """Thresholds of the premises, fixed before the runs."""

    ce_epsilon: float = 0.05
    """SFT converged: demonstration CE within this of the floor (nats)."""
    grad_norm_max: float = 1.0
    """SFT converged: gradient norm of the SFT loss below this."""
    reward_margin: float = 0.05
    """RL converged: reward within this of the best run's."""
    min_ood_loss: float = 0.05
    """Restoration: SFT must have lost at least this much OOD accuracy."""

    def __post_init__(self) -> None:
        for name in ("ce_epsilon", "grad_norm_max", "reward_margin", "min_ood_loss"):
            value = getattr(self, name)
            require(not isinstance(value, bool) and isinstance(value, int | float) and value > 0,
                    name, "a positive number", value)


def _lengths(**series: Sequence[float]) -> int:
    sizes = {k: len(v) for k, v in series.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"expected one value per seed in each of {', '.join(sizes)}, got {sizes}")
    return next(iter(sizes.values()))


def ce_rises_during_rl(ce_start: Sequence[float], ce_end: Sequence[float], ce_floor: Sequence[float],
                       sft_grad_norm: Sequence[float], premises: Premises = Premises()) -> ClaimResult:
    """Per seed: CE when RL starts, when it ends, SFT's floor, SFT's gradient norm at the start."""
    name = "demonstration CE rises during RL after a converged SFT"
    _lengths(ce_start=ce_start, ce_end=ce_end, ce_floor=ce_floor, sft_grad_norm=sft_grad_norm)
    gap = max(s - f for s, f in zip(ce_start, ce_floor, strict=True))
    if gap > premises.ce_epsilon:
        return premise_not_met(gap, premises.ce_epsilon, "SFT's CE above its floor (worst seed)",
                               name=name)
    worst = max(sft_grad_norm)
    if worst > premises.grad_norm_max:
        return premise_not_met(worst, premises.grad_norm_max, "SFT's gradient norm (worst seed)",
                               name=name)
    return paired_claim([e - s for s, e in zip(ce_start, ce_end, strict=True)], 0.0, name=name)


def reward_falls_during_sft(reward_start: Sequence[float], reward_end: Sequence[float],
                            best_reward: float, premises: Premises = Premises()) -> ClaimResult:
    """Per seed: reward when SFT starts (after RL) and when it ends; the best run's reward."""
    name = "reward falls during SFT after a converged RL"
    _lengths(reward_start=reward_start, reward_end=reward_end)
    short = best_reward - min(reward_start)
    if short > premises.reward_margin:
        return premise_not_met(short, premises.reward_margin,
                               "RL's reward below the best run's (worst seed)", name=name)
    return paired_claim([s - e for s, e in zip(reward_start, reward_end, strict=True)], 0.0, name=name)


def rotation_score(tuned: Sequence[dict], random: Sequence[dict], floor: float = 1e-12) -> float:
    """Mean over matrices of log(angle / random angle) - log(value change / random value change),
    rows as `spectral_pass` gives them (angle: the larger of the left and right angles)."""
    if len(tuned) != len(random) or not tuned:
        raise ValueError("tuned and random: expected the same non-empty list of matrices")
    scores = []
    for t, r in zip(tuned, random, strict=True):
        angle = max(t["left_angle"], t["right_angle"]) + floor
        random_angle = max(r["left_angle"], r["right_angle"]) + floor
        scores.append(math.log(angle / random_angle)
                      - math.log((t["value_change"] + floor) / (r["value_change"] + floor)))
    return sum(scores) / len(scores)


def vectors_rotate_more(scores: Sequence[float]) -> ClaimResult:
    """Per seed `rotation_score`: held when its CI lies above 0."""
    return paired_claim(list(scores), 0.0, name="singular vectors rotate more than singular "
                        "values move (each against a random perturbation of the same norm)")


def restore_recovers(ood_base: Sequence[float], ood_sft: Sequence[float],
                     ood_restored: Sequence[float], premises: Premises = Premises(),
                     name: str = "UV restore recovers part of the OOD accuracy SFT lost"
                     ) -> ClaimResult:
    """Per seed OOD accuracy of the base (or the model before SFT lost OOD accuracy), the SFT
    model and the restored SFT model (by UV restore, or by RL for `name` saying so)."""
    _lengths(ood_base=ood_base, ood_sft=ood_sft, ood_restored=ood_restored)
    lost = min(b - s for b, s in zip(ood_base, ood_sft, strict=True))
    if lost < premises.min_ood_loss:
        return premise_not_met(lost, premises.min_ood_loss, "OOD accuracy SFT lost (least seed)",
                               name=name)
    return paired_claim([r - s for s, r in zip(ood_sft, ood_restored, strict=True)], 0.0, name=name)


def recovered_fraction(ood_base: float, ood_sft: float, ood_restored: float) -> float:
    """(restored - sft) / (base - sft): the share of the lost OOD accuracy recovered."""
    if ood_base <= ood_sft:
        raise ValueError(f"ood_base: expected above ood_sft ({ood_sft}), got {ood_base}: nothing lost")
    return (ood_restored - ood_sft) / (ood_base - ood_sft)
