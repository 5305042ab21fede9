"""The PL estimate, the non-decoupling threshold and the optimal RL duration on quadratics,
whose constants are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from ptbench.pipelines.coupling import (
    decoupling_threshold,
    optimal_rl_steps,
    pl_constant,
    sft_rise_per_step,
)

B = torch.tensor([1.0, 0.1, 4.0], dtype=torch.float64)  # R = 1/2 sum B_i (x_i - b_i)^2: mu = 0.1, L = 4
A = torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)
b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
a = torch.tensor([-1.0, 1.0, 2.0], dtype=torch.float64)


def rl_loss(x):
    return 0.5 * float((B * (x - b) ** 2).sum())


def sft_loss(x):
    return 0.5 * float((A * (x - a) ** 2).sum())


def test_the_pl_estimate_recovers_mu_on_a_quadratic():
    x, lr = torch.tensor([3.0, 4.0, -2.0], dtype=torch.float64), 0.2
    grads, losses = [], []
    for _ in range(200):
        g = B * (x - b)
        grads.append(float(g @ g))
        losses.append(rl_loss(x))
        x = x - lr * g
    mu = pl_constant(grads, losses, loss_star=0.0)
    assert 0.1 - 1e-12 <= mu < 0.1 * 1.01  # an upper bound the trajectory tightens to the truth
    with pytest.raises(ValueError, match="no point above loss_star"):
        pl_constant([1.0], [0.0], loss_star=0.0)
    with pytest.raises(ValueError, match="one entry per point"):
        pl_constant([1.0, 2.0], [1.0], loss_star=0.0)


def test_the_threshold_decides_whether_an_rl_step_raises_sft_loss():
    smooth, lr = float(torch.cat([A, B]).max()), 0.2
    g = torch.Generator().manual_seed(0)
    seen = {"raise": 0, "lower": 0}
    for _ in range(2000):
        x = torch.randn(3, generator=g, dtype=torch.float64) * 3
        gr, gs = B * (x - b), A * (x - a)
        cos = float(gs @ gr / (gs.norm() * gr.norm()))
        tau = decoupling_threshold(smooth, lr, float(gr.norm()), float(gs.norm()))
        rise = sft_loss(x - lr * gr) - sft_loss(x)
        assert rise <= sft_rise_per_step(smooth, lr, float(gr.norm()), float(gs.norm())) + 1e-12
        if cos < -tau:
            assert rise > 0
            seen["raise"] += 1
        elif cos > tau:
            assert rise < 0
            seen["lower"] += 1
    assert min(seen.values()) > 20  # both sides of the threshold were exercised


@pytest.mark.parametrize(("mu", "gap", "rise", "rate"), [(0.5, 10.0, 0.01, 1.0), (0.1, 3.0, 0.05, 2.0)])
def test_the_optimal_duration_minimizes_its_bound(mu, gap, rise, rate):
    lr = 1.0
    t_star = optimal_rl_steps(mu, lr, gap, rise, rate)
    bound = [(1 - lr * mu) ** (t / 100) * gap + rate * rise * t / 100 for t in range(0, 20000)]
    assert t_star == pytest.approx(min(range(len(bound)), key=bound.__getitem__) / 100, abs=0.011)
    assert optimal_rl_steps(mu, lr, gap, sft_rise=gap, exchange_rate=rate) == 0.0  # no step pays
    assert math.isinf(optimal_rl_steps(mu, lr, gap, 0.0))
    with pytest.raises(ValueError, match="lr \\* mu: expected in"):
        optimal_rl_steps(2.0, 1.0, gap, rise)
