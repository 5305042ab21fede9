"""From the metric rows of a study's runs to the coupling numbers: the SFT floor, the PL
estimates along SFT and RL, the truncated-RL trade-off curve, and the predicted against the
observed best RL duration (formulas in `pipelines.coupling`).

Conventions. S is the held-out demonstration cross-entropy (eval/sft_ce); R = 1 - J is the RL
loss, J the probe reward (diag/probe_reward, the rollouts whose gradient diag/rl_grad_sq
measures). L* estimates: S* is the lowest S the SFT run reached (its floor); R* = 1 - the
highest probe reward any RL run of the seed reached. The PL estimate is the smallest
||grad||^2 / (2 (loss - L*)) over the trajectory's eval points (`coupling.pl_constant`), the
unbiased ||grad R||^2 estimate taken as 0 where it is negative (a gradient below the sampling
noise). The observed best RL duration minimizes U(t) = (R(t) - R*) + lambda (S(t) - S(0)) over
the RL run's eval points, each of which is a truncation point of the sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ptbench.pipelines.coupling import (
    decoupling_threshold,
    optimal_rl_steps,
    pl_constant,
    sft_rise_per_step,
)
from ptbench.pipelines.tracking import Row

TRAJECTORY = {"sft_ce": "eval/sft_ce", "reward": "diag/probe_reward",
              "sampled_reward": "eval/sampled_reward", "id_accuracy": "eval/id_accuracy",
              "ood_accuracy": "eval/ood_accuracy", "sft_grad_norm": "diag/sft_grad_norm",
              "rl_grad_sq": "diag/rl_grad_sq", "cosine": "diag/grad_cosine",
              "smoothness": "diag/sft_smoothness", "step_length": "diag/step_length"}


def trajectory(rows: Sequence[Row], stage: str | None = None) -> list[dict]:
    """One point per eval point of `stage` (every stage when None): step, global step, FLOPs
    and the TRAJECTORY values measured there (None where not measured)."""
    points: dict[tuple[str, int], dict] = {}
    for r in rows:
        if stage is not None and r.stage != stage:
            continue
        name = next((k for k, m in TRAJECTORY.items() if m == r.metric), None)
        if name is None:
            continue
        point = points.setdefault((r.stage, r.step), {"stage": r.stage, "step": r.step,
                                                      "global_step": r.global_step, "flops": r.flops,
                                                      **dict.fromkeys(TRAJECTORY)})
        point[name] = r.value
    return sorted(points.values(), key=lambda p: p["global_step"])


def ce_floor(sft_points: Sequence[dict]) -> float:
    """S*: the lowest demonstration CE the SFT run reached."""
    return min(p["sft_ce"] for p in sft_points)


def pl_estimate(grad_sq: Sequence[float | None], losses: Sequence[float], loss_star: float,
                tol: float = 1e-6) -> float | None:
    """`pl_constant` over the points where both are measured (None when no point is above
    L* + tol: the trajectory says nothing about mu)."""
    pairs = [(max(g, 0.0), loss) for g, loss in zip(grad_sq, losses, strict=True)
             if g is not None and loss is not None]
    if not any(loss - loss_star > tol for _, loss in pairs):
        return None
    return pl_constant([g for g, _ in pairs], [loss for _, loss in pairs], loss_star, tol=tol)


def sft_pl(sft_points: Sequence[dict], floor: float) -> float | None:
    return pl_estimate([p["sft_grad_norm"] ** 2 if p["sft_grad_norm"] is not None else None
                        for p in sft_points], [p["sft_ce"] for p in sft_points], floor)


def rl_pl(rl_points: Sequence[dict], reward_star: float) -> float | None:
    return pl_estimate([p["rl_grad_sq"] for p in rl_points],
                       [1 - p["reward"] if p["reward"] is not None else None for p in rl_points],
                       1 - reward_star)


def tradeoff(rl_points: Sequence[dict], reward_star: float, exchange_rate: float) -> list[dict]:
    """The truncated-RL sweep: per truncation point, reward, CE, FLOPs and U(t)."""
    s0 = rl_points[0]["sft_ce"]
    return [{"step": p["step"], "flops": p["flops"], "reward": p["reward"],
             "sampled_reward": p["sampled_reward"], "sft_ce": p["sft_ce"],
             "id_accuracy": p["id_accuracy"], "ood_accuracy": p["ood_accuracy"],
             "objective": (reward_star - p["reward"]) + exchange_rate * (p["sft_ce"] - s0)}
            for p in rl_points]


def _median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None and math.isfinite(v))
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def prediction(rl_points: Sequence[dict], lr: float, reward_star: float, exchange_rate: float
               ) -> dict:
    """The PL + smoothness predictions at the start of RL, and what was observed.

    Step size: the configured lr (the derivation's gradient descent) and the effective one,
    eta_eff = median over intervals of (parameter step length) / ||grad R|| (Adam's steps are
    not lr x gradient)."""
    start = rl_points[0]
    mu = rl_pl(rl_points, reward_star)
    smooth = max((p["smoothness"] for p in rl_points if p["smoothness"] is not None), default=None)
    g_r = math.sqrt(max(start["rl_grad_sq"] or 0.0, 0.0))
    g_s = start["sft_grad_norm"]
    eff = _median([p["step_length"] / math.sqrt(p["rl_grad_sq"]) for p in rl_points[1:]
                   if p["step_length"] is not None and (p["rl_grad_sq"] or 0) > 0])
    curve = tradeoff(rl_points, reward_star, exchange_rate)
    best = min(curve, key=lambda c: c["objective"])
    out = {"mu_rl": mu, "smoothness": smooth, "rl_grad_norm": g_r, "sft_grad_norm": g_s,
           "reward_gap": reward_star - start["reward"], "cosine_start": start["cosine"],
           "eta_lr": lr, "eta_effective": eff, "observed_best_step": best["step"],
           "observed_last_step": curve[-1]["step"],
           "ce_change_first_interval": (curve[1]["sft_ce"] - curve[0]["sft_ce"]) if len(curve) > 1 else None}
    for name, eta in (("lr", lr), ("effective", eff)):
        tau = t_star = reason = None
        if smooth is None or g_s is None or eta is None:
            reason = "no smoothness, SFT gradient or step-size estimate"
        else:
            tau = decoupling_threshold(smooth, eta, g_r, g_s)
            if mu is None or not 0 < eta * mu < 1:
                reason = f"PL not usable: mu_hat {mu!r}, eta x mu must lie in (0, 1)"
            else:
                delta = sft_rise_per_step(smooth, eta, g_r, g_s)
                t_star = optimal_rl_steps(mu, eta, out["reward_gap"], delta, exchange_rate)
        out[f"threshold_{name}"] = tau
        out[f"predicted_best_step_{name}"] = t_star
        out[f"why_no_prediction_{name}"] = reason
    cos, tau = start["cosine"], out["threshold_lr"]
    out["predicted_ce_direction"] = (None if cos is None or tau is None else
                                     "rises" if cos < -tau else "falls" if cos > tau else "undecided")
    return out
