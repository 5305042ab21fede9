"""The diagnostic claims on constructed cases: each seen held, not held and premise not met."""

from __future__ import annotations

import math

import pytest
import torch

from ptbench.comparison.diagnostic_claims import (
    Premises,
    ce_rises_during_rl,
    recovered_fraction,
    restore_recovers,
    reward_falls_during_sft,
    rotation_score,
    vectors_rotate_more,
)
from ptbench.pipelines.spectral import compare


def verdict(result) -> str:
    return str(result.verdict)


def test_ce_claim_is_judged_only_after_a_converged_sft():
    floor, grad = [1.00, 1.01, 0.99], [0.2, 0.3, 0.1]
    start = [1.02, 1.03, 1.00]
    assert verdict(ce_rises_during_rl(start, [1.30, 1.25, 1.40], floor, grad)) == "held"
    assert verdict(ce_rises_during_rl(start, [0.80, 0.85, 0.82], floor, grad)) == "not held"
    broken = ce_rises_during_rl([1.5, 1.03, 1.0], [1.9, 1.3, 1.4], floor, grad)  # SFT stopped early
    assert verdict(broken) == "premise not met" and broken.measured == pytest.approx(0.5)
    steep = ce_rises_during_rl(start, [1.3, 1.25, 1.4], floor, [0.2, 5.0, 0.1])
    assert verdict(steep) == "premise not met" and steep.threshold == 1.0
    with pytest.raises(ValueError, match="one value per seed"):
        ce_rises_during_rl(start, [1.3], floor, grad)


def test_reward_claim_is_judged_only_after_a_converged_rl():
    assert verdict(reward_falls_during_sft([0.90, 0.92, 0.91], [0.6, 0.5, 0.7], 0.93)) == "held"
    assert verdict(reward_falls_during_sft([0.90, 0.92, 0.91], [0.95, 0.96, 0.97], 0.93)) == "not held"
    early = reward_falls_during_sft([0.5, 0.92, 0.91], [0.3, 0.5, 0.7], 0.93)
    assert verdict(early) == "premise not met" and "0.43" in early.explain()


def _matrix(seed: int, rows: int = 12, cols: int = 20):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=g, dtype=torch.float64))
    s = torch.linspace(10, 1, rows, dtype=torch.float64)
    return u, s, v, g


def _row(w0, w1):
    c = compare(w0, w1, k=4)
    return {"left_angle": max(c.left_angles), "right_angle": max(c.right_angles),
            "value_change": c.value_change}


def _scores(change: str) -> list[float]:
    """Per seed: a rotation of the top right singular vectors (angle 0.3), or the singular values
    scaled with the vectors fixed, each against a random perturbation of the same norm."""
    out = []
    for seed in range(4):
        u, s, v, g = _matrix(seed)
        w0 = (u * s) @ v[:, :len(s)].mT
        if change == "rotate":
            c, si = math.cos(0.3), math.sin(0.3)
            v1 = v.clone()
            v1[:, 0], v1[:, -1] = c * v[:, 0] + si * v[:, -1], -si * v[:, 0] + c * v[:, -1]
            w1 = (u * s) @ v1[:, :len(s)].mT
        else:
            w1 = (u * (s * torch.linspace(1.3, 0.8, len(s), dtype=torch.float64))) @ v[:, :len(s)].mT
        noise = torch.randn(w0.shape, generator=g, dtype=torch.float64)
        noise *= (w1 - w0).norm() / noise.norm()
        out.append(rotation_score([_row(w0, w1)], [_row(w0, w0 + noise)]))
    return out


def test_rotation_claim_holds_for_rotations_and_not_for_rescaled_values():
    assert verdict(vectors_rotate_more(_scores("rotate"))) == "held"
    assert verdict(vectors_rotate_more(_scores("scale"))) == "not held"


def test_restore_claim_and_the_recovered_fraction():
    assert verdict(restore_recovers([0.6, 0.62, 0.58], [0.2, 0.25, 0.22], [0.45, 0.5, 0.4])) == "held"
    # restored from an unrelated model: worse than the SFT model, so not held
    assert verdict(restore_recovers([0.6, 0.62, 0.58], [0.2, 0.25, 0.22], [0.1, 0.12, 0.15])) == "not held"
    assert verdict(restore_recovers([0.3, 0.3, 0.3], [0.29, 0.28, 0.3], [0.3, 0.3, 0.3])) == "premise not met"
    assert recovered_fraction(0.6, 0.2, 0.5) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="nothing lost"):
        recovered_fraction(0.2, 0.2, 0.3)


def test_premise_thresholds_are_checked():
    with pytest.raises(ValueError, match="ce_epsilon: expected a positive number"):
        Premises(ce_epsilon=0)
