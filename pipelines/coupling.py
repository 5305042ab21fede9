"""SFT-RL coupling under the Polyak-Lojasiewicz (PL) condition: the constant, the threshold, the
optimal RL duration.

Notation: S the SFT loss (demonstration cross-entropy), R the RL loss (minus the reward), both
L-smooth; RL runs gradient descent theta' = theta - eta grad R with eta <= 1/L.

PL constant. R satisfies PL with mu when ||grad R||^2 >= 2 mu (R - R*) everywhere. Along a
trajectory the largest mu consistent with what was seen is

    mu_hat = min_t ||grad R(theta_t)||^2 / (2 (R(theta_t) - R*)),   over points with R - R* > tol

an upper bound on the true constant (a trajectory cannot see the directions it never visits).
R* is not known for a real model: `pl_constant` takes it from the caller, who estimates it as
the floor a run trained to convergence reaches (its lowest loss, or the converged value of its
loss curve).

Non-decoupling threshold (derived here; the paper's exact statement is not available to us).
L-smoothness of S bounds one RL step's change of S on both sides:

    -eta <grad S, grad R> - (L eta^2 / 2) ||grad R||^2  <=  dS  <=  -eta <grad S, grad R> + (L eta^2 / 2) ||grad R||^2

With c = cos(grad S, grad R) and tau = (L eta / 2) ||grad R|| / ||grad S||:
    c < -tau   the step raises S (RL undoes SFT: coupled)
    c >  tau   the step lowers S (RL also helps SFT)
    |c| <= tau undecided at this step size.

Optimal RL duration (derived under PL + L-smoothness). After t RL steps the reward gap obeys
R(theta_t) - R* <= (1 - eta mu)^t g0 (g0 the gap when RL starts), and each step raises S by at
most delta = eta ||grad R|| (||grad S|| + (L eta / 2) ||grad R||) (the upper bound above, with
the worst-case cosine). Trading reward against SFT loss at rate lambda (one unit of R is worth
lambda units of S), the bound on the combined loss

    U(t) = (1 - eta mu)^t g0 + lambda delta t

is minimized, with q = -ln(1 - eta mu) > 0, at

    t* = ln(q g0 / (lambda delta)) / q        (0 when q g0 <= lambda delta: no RL step pays).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def pl_constant(grad_norms_sq: Sequence[float], losses: Sequence[float], loss_star: float,
                tol: float = 1e-9) -> float:
    """mu_hat = min ||g||^2 / (2 (L - L*)) over the trajectory's points with L - L* > tol."""
    if len(grad_norms_sq) != len(losses):
        raise ValueError(f"grad_norms_sq and losses: expected one entry per point, got "
                         f"{len(grad_norms_sq)} and {len(losses)}")
    ratios = [g / (2 * (loss - loss_star)) for g, loss in zip(grad_norms_sq, losses, strict=True)
              if loss - loss_star > tol]
    if not ratios:
        raise ValueError(f"losses: no point above loss_star + tol ({loss_star} + {tol}): "
                         "the trajectory says nothing about mu")
    return min(ratios)


def decoupling_threshold(smoothness: float, lr: float, rl_grad_norm: float,
                         sft_grad_norm: float) -> float:
    """tau = (L eta / 2) ||grad R|| / ||grad S||: a cosine below -tau raises S, above tau lowers it."""
    if sft_grad_norm <= 0:
        return math.inf  # at an exact SFT optimum the first-order term vanishes
    return smoothness * lr / 2 * rl_grad_norm / sft_grad_norm


def sft_rise_per_step(smoothness: float, lr: float, rl_grad_norm: float, sft_grad_norm: float) -> float:
    """delta: the most one RL step can raise S (worst-case cosine)."""
    return lr * rl_grad_norm * (sft_grad_norm + smoothness * lr / 2 * rl_grad_norm)


def optimal_rl_steps(mu: float, lr: float, reward_gap: float, sft_rise: float,
                     exchange_rate: float = 1.0) -> float:
    """t* minimizing (1 - lr mu)^t reward_gap + exchange_rate sft_rise t (see the docstring)."""
    if not 0 < lr * mu < 1:
        raise ValueError(f"lr * mu: expected in (0, 1), got {lr * mu!r}")
    if sft_rise <= 0 or exchange_rate <= 0:
        return math.inf  # RL costs nothing in SFT loss: run it to convergence
    q = -math.log1p(-lr * mu)
    ratio = q * reward_gap / (exchange_rate * sft_rise)
    return math.log(ratio) / q if ratio > 1 else 0.0
