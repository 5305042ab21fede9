"""ptbench.pipelines.losses against values worked out by hand (float64, tolerance 1e-12)."""

from __future__ import annotations

import math

import pytest
import torch

from ptbench.fixtures.probes import LOSS_AGGS as PROBE_LOSS_AGGS
from ptbench.fixtures.probes.reference import row_token_weights
from ptbench.pipelines.losses import (
    LOSS_AGGS,
    aggregate,
    clip_fraction,
    group_advantages,
    per_token_policy_loss,
    per_token_shaped_off_policy_loss,
    policy_loss,
    sft_loss,
    shaped_off_policy_loss,
)

F64 = torch.float64
TOL = {"rtol": 0.0, "atol": 1e-12}
INF = math.inf


def t(values, dtype=F64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=F64), **TOL)


# --------------------------------------------------------------------------------------------
# aggregate: one hand example, three rows of unequal length, T = 4.
#   row 0: l = [1, 2]      (sum 3,  n = 2)
#   row 1: l = [3, 4, 5]   (sum 12, n = 3)
#   row 2: l = [6]         (sum 6,  n = 1)
# padding holds 99 (and one inf) to show it is ignored. sum(l) = 21, tokens = 6, B = 3.
# --------------------------------------------------------------------------------------------

L = [[1.0, 2.0, 99.0, INF], [3.0, 4.0, 5.0, 99.0], [6.0, 99.0, 99.0, 99.0]]
MASK = [[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]]
EXPECTED = {
    "token-mean": 21 / 6,  # (1+2+3+4+5+6) / 6 = 3.5
    "seq-mean-token-mean": (3 / 2 + 12 / 3 + 6 / 1) / 3,  # (1.5 + 4 + 6) / 3 = 3.8333...
    "seq-mean-token-sum": (3 + 12 + 6) / 3,  # 7
    "seq-mean-token-sum-norm": 21 / (3 * 4),  # sum / (B * T) = 1.75
}


# d aggregate / d l[i, t] on each loss token of the hand example (n = [2, 3, 1], N = 3, T = 4);
# 0 on padding.
TOKEN_WEIGHTS = {
    "token-mean": [1 / 6, 1 / 6, 1 / 6],  # 1 / sum(n_i) = 1/6
    "seq-mean-token-mean": [1 / 6, 1 / 9, 1 / 3],  # 1 / (N * n_i): 1/(3*2), 1/(3*3), 1/(3*1)
    "seq-mean-token-sum": [1 / 3, 1 / 3, 1 / 3],  # 1 / N
    "seq-mean-token-sum-norm": [1 / 12, 1 / 12, 1 / 12],  # 1 / (N * T) = 1/(3*4)
}


def test_pipeline_and_probe_know_the_same_modes_and_weigh_each_token_alike():
    # The probe's reference maths (ptbench.fixtures.probes) is written independently of
    # ptbench.pipelines: a mode one of them lacks, or weighs otherwise, is never really probed.
    assert LOSS_AGGS == PROBE_LOSS_AGGS
    assert tuple(TOKEN_WEIGHTS) == LOSS_AGGS == tuple(EXPECTED)
    mask = t(MASK)
    # The same three rows as a probe micro-batch: labels [B, T + 1], position 0 never a loss token.
    labels = torch.full((3, 5), -100)
    labels[:, 1:][mask.bool()] = 1
    mb = {"input_ids": torch.zeros(3, 5, dtype=torch.long), "labels": labels}
    for loss_agg, by_hand in TOKEN_WEIGHTS.items():
        per_token = t(L).requires_grad_()
        (grad,) = torch.autograd.grad(aggregate(per_token, mask, loss_agg), per_token)
        close(grad, t(by_hand)[:, None] * mask)
        (probe_weights,) = row_token_weights([mb], loss_agg)
        close(probe_weights, by_hand)


@pytest.mark.parametrize("loss_agg", LOSS_AGGS)
@pytest.mark.parametrize("mask_dtype", [torch.bool, F64])
def test_aggregate_modes_on_the_hand_example(loss_agg, mask_dtype):
    close(aggregate(t(L), t(MASK, mask_dtype), loss_agg), EXPECTED[loss_agg])


def test_aggregate_all_masked_row_contributes_nothing_but_counts_as_a_sequence():
    # row 3 has no loss token (and inf everywhere): the numerators are unchanged; for the seq
    # modes it still counts in N = 4 (its n_i is clamped at 1, so its mean is 0, not NaN).
    per_token = t(L + [[INF, INF, INF, INF]])
    mask = t(MASK + [[0, 0, 0, 0]])
    expected = {
        "token-mean": 21 / 6,
        "seq-mean-token-mean": (1.5 + 4 + 6 + 0) / 4,
        "seq-mean-token-sum": 21 / 4,
        "seq-mean-token-sum-norm": 21 / (4 * 4),
    }
    for loss_agg, value in expected.items():
        close(aggregate(per_token, mask, loss_agg), value)


@pytest.mark.parametrize("loss_agg", LOSS_AGGS)
def test_aggregate_all_masked_batch_is_zero_not_nan(loss_agg):
    close(aggregate(t([[INF, 1.0]]), t([[0, 0]]), loss_agg), 0.0)


@pytest.mark.parametrize("loss_agg", LOSS_AGGS)
def test_global_normalizers_make_micro_batches_sum_to_the_whole_batch(loss_agg):
    # Gradient accumulation: rows {0, 1} in one micro-batch, row 2 (trimmed to width 1) in the
    # other. With the global num_tokens = 6, num_seqs = 3, max_len = 4 passed to both, the two
    # micro-batch losses add up to the whole-batch loss, e.g. for token-mean 15/6 + 6/6 = 3.5.
    per_token = t(L, F64).requires_grad_()
    mask = t(MASK)
    norms = {"num_tokens": 6, "num_seqs": 3, "max_len": 4}
    first = aggregate(per_token[:2], mask[:2], loss_agg, **norms)
    second = aggregate(per_token[2:, :1], mask[2:, :1], loss_agg, **norms)
    whole = aggregate(per_token, mask, loss_agg)
    close(first + second, EXPECTED[loss_agg])
    close(first + second, whole)
    (grad_sum,) = torch.autograd.grad(first + second, per_token)
    (grad_whole,) = torch.autograd.grad(whole, per_token)
    close(grad_sum, grad_whole)


def test_local_normalizers_would_break_accumulation():
    # The point of the explicit arguments: per-micro-batch token-mean gives 15/5 + 6/1 = 9.
    per_token, mask = t(L), t(MASK)
    local = aggregate(per_token[:2], mask[:2]) + aggregate(per_token[2:], mask[2:])
    close(local, 9.0)


# --------------------------------------------------------------------------------------------
# group_advantages
# --------------------------------------------------------------------------------------------


def test_group_advantages_std():
    # rewards [1, 0 | 0, 1], groups of 2: means 0.5, 0.5; unbiased std = sqrt(0.5) = 0.7071...
    s = math.sqrt(0.5) + 1e-6
    close(group_advantages(t([1, 0, 0, 1]), 2), [0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s])
    # rewards [1, 2, 6], one group of 3: mean 3, deviations [-2, -1, 3],
    # unbiased var = (4 + 1 + 9) / 2 = 7, std = sqrt(7).
    s = math.sqrt(7) + 1e-6
    close(group_advantages(t([1, 2, 6]), 3, scale="std"), [-2 / s, -1 / s, 3 / s])


def test_group_advantages_none_only_centres():
    close(group_advantages(t([1, 0, 0, 1]), 2, scale="none"), [0.5, -0.5, -0.5, 0.5])
    close(group_advantages(t([1, 2, 6]), 3, scale="none"), [-2, -1, 3])
    close(group_advantages(t([4]), 1, scale="none"), [0])


def test_group_advantages_equal_rewards_give_zero_not_nan():
    close(group_advantages(t([1, 1, 0, 0]), 2), [0, 0, 0, 0])


@pytest.mark.parametrize(
    ("rewards", "group_size", "scale", "match"),
    [
        ([1, 0, 1], 2, "std", "group_size: expected a divisor of the number of rewards N=3"),
        ([1, 0], 1, "std", r"group_size: expected >= 2 with scale='std'"),
        ([1, 0], 0, "none", "group_size: expected an integer >= 1"),
        ([1, 0], 2, "mad", r"scale: unknown value 'mad'; expected one of \('std', 'none'\)"),
        ([[1, 0]], 2, "std", r"rewards: expected a 1-D \[N\] tensor"),
    ],
)
def test_group_advantages_errors(rewards, group_size, scale, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(t(rewards), group_size, scale=scale)


# --------------------------------------------------------------------------------------------
# policy_loss: PPO clipped surrogate. old_logprobs = 0 and logprobs = log(ratio), so the
# ratio is exact; clip_eps = 0.2 unless said, so the unclipped band is [0.8, 1.2].
# --------------------------------------------------------------------------------------------


def one_token_loss(advantage, ratio, **kwargs):
    logprobs = t([[math.log(ratio)]]).requires_grad_()
    loss = policy_loss(logprobs, t([[0.0]]), t([advantage]), t([[1]]), **kwargs)
    (grad,) = torch.autograd.grad(loss, logprobs)
    return loss, grad[0, 0]


@pytest.mark.parametrize(
    ("advantage", "ratio", "clip_eps_high", "expected", "clipped"),
    [
        (+1.0, 1.5, None, -1.2, True),  # max(-1.5, -1.2): clipped at 1 + 0.2
        (+1.0, 0.5, None, -0.5, False),  # max(-0.5, -0.8): A > 0 never clipped below
        (+1.0, 1.1, None, -1.1, False),  # inside the band: both branches are -1.1
        (-1.0, 1.5, None, +1.5, False),  # max(1.5, 1.2): A < 0 never clipped above
        (-1.0, 0.5, None, +0.8, True),  # max(0.5, 0.8): clipped at 1 - 0.2
        (+1.0, 1.5, 0.28, -1.28, True),  # clip-higher: clipped at 1 + 0.28
        (+1.0, 1.25, 0.28, -1.25, False),  # inside [0.8, 1.28] (clipped to -1.2 if symmetric)
        (-1.0, 0.5, 0.28, +0.8, True),  # the low side still uses clip_eps = 0.2
    ],
)
def test_policy_loss_clipping_one_token(advantage, ratio, clip_eps_high, expected, clipped):
    loss, grad = one_token_loss(advantage, ratio, clip_eps=0.2, clip_eps_high=clip_eps_high)
    close(loss, expected)
    # d(-A * ratio) / d logprobs = -A * ratio when unclipped; 0 when the clamped branch wins.
    close(grad, 0.0 if clipped else -advantage * ratio)


def batch_example():
    # row 0: A = +2, ratios [1.5, 0.5, 1.1]; row 1: A = -1, ratios [1.5, 0.5], then padding.
    ratios = [[1.5, 0.5, 1.1], [1.5, 0.5, 1.0]]
    logprobs = t([[math.log(r) for r in row] for row in ratios]).requires_grad_()
    return logprobs, torch.zeros(2, 3, dtype=F64), t([2.0, -1.0]), t([[1, 1, 1], [1, 1, 0]])


def test_policy_loss_batch_token_mean_and_grad():
    logprobs, old, adv, mask = batch_example()
    # row 0 (A = 2):  r=1.5 -> max(-3, -2.4) = -2.4 (clipped); r=0.5 -> max(-1, -1.6) = -1;
    #                 r=1.1 -> -2.2
    # row 1 (A = -1): r=1.5 -> max(1.5, 1.2) = 1.5; r=0.5 -> max(0.5, 0.8) = 0.8 (clipped)
    # token-mean = (-2.4 - 1 - 2.2 + 1.5 + 0.8) / 5 = -3.3 / 5 = -0.66
    loss = policy_loss(logprobs, old, adv, mask, loss_agg="token-mean", clip_eps=0.2)
    close(loss, -0.66)
    # seq-mean-token-mean = ((-2.4 - 1 - 2.2) / 3 + (1.5 + 0.8) / 2) / 2
    close(policy_loss(logprobs, old, adv, mask, loss_agg="seq-mean-token-mean"),
          (-5.6 / 3 + 2.3 / 2) / 2)
    # gradient: -A * r / 5 on unclipped tokens, 0 on clipped ones and on padding
    (grad,) = torch.autograd.grad(loss, logprobs)
    close(grad, [[0.0, -2 * 0.5 / 5, -2 * 1.1 / 5], [1.5 / 5, 0.0, 0.0]])


def test_clip_fraction():
    logprobs, old, adv, mask = batch_example()
    # 2 of the 5 loss tokens above are clipped
    close(clip_fraction(logprobs, old, adv, mask, clip_eps=0.2), 2 / 5)
    # with clip_eps_high = 0.6 the r = 1.5, A = +2 token is no longer clipped
    close(clip_fraction(logprobs, old, adv, mask, clip_eps=0.2, clip_eps_high=0.6), 1 / 5)
    close(clip_fraction(logprobs, old, adv, torch.zeros(2, 3), clip_eps=0.2), 0.0)


def test_policy_loss_k3_kl_term():
    # ratio 1, A = 1: surrogate -1. ref - logprobs = log 2: k3 = 2 - log 2 - 1 = 1 - log 2.
    logprobs = t([[0.0]]).requires_grad_()
    loss = policy_loss(logprobs, t([[0.0]]), t([1.0]), t([[1]]),
                       ref_logprobs=t([[math.log(2.0)]]), kl_coef=0.5)
    close(loss, -1 + 0.5 * (1 - math.log(2)))
    # d/dlp: -A * r + kl_coef * (-e^(ref-lp) + 1) = -1 + 0.5 * (1 - 2) = -1.5
    (grad,) = torch.autograd.grad(loss, logprobs)
    close(grad, [[-1.5]])


def test_policy_loss_defaults_by_hand():
    logprobs, old, adv, mask = batch_example()
    # Defaults: token-mean, clip_eps = 0.2 on both sides, no KL: -0.66, worked out above.
    close(policy_loss(logprobs, old, adv, mask), -0.66)
    # clip_eps_high defaults to clip_eps (not to 0.2): clip_eps = 0.3 alone gives [0.7, 1.3].
    # row 0 (A = 2):  r=1.5 -> max(-3, -2.6) = -2.6 (clipped); r=0.5 -> max(-1, -1.4) = -1;
    #                 r=1.1 -> -2.2
    # row 1 (A = -1): r=1.5 -> max(1.5, 1.3) = 1.5; r=0.5 -> max(0.5, 0.7) = 0.7 (clipped)
    # token-mean = (-2.6 - 1 - 2.2 + 1.5 + 0.7) / 5 = -3.6 / 5 = -0.72
    close(policy_loss(logprobs, old, adv, mask, clip_eps=0.3), -0.72)
    # clip_fraction too: clip_eps = 0.6 alone gives [0.4, 1.6], and no token is clipped
    # (r=1.5 with A=+2 would be, at 1 + 0.2).
    close(clip_fraction(logprobs, old, adv, mask, clip_eps=0.6), 0.0)


# --------------------------------------------------------------------------------------------
# shaped_off_policy_loss (LUFFY): loss = -A * pi / (pi + gamma), gamma = 0.1
# --------------------------------------------------------------------------------------------


def test_shaped_off_policy_loss_value_and_gradient():
    # row 0: A = 2, pi = [0.5, 0.1]  -> f = [0.5/0.6, 0.1/0.2] = [0.8333.., 0.5]
    # row 1: A = -1, pi = [0.9], pad -> f = 0.9/1.0 = 0.9
    # token-mean = (-2 * 0.8333.. - 2 * 0.5 + 0.9) / 3
    pi = [[0.5, 0.1], [0.9, 0.3]]
    logprobs = t(pi).log().requires_grad_()
    adv, mask = t([2.0, -1.0]), t([[1, 1], [1, 0]])
    loss = shaped_off_policy_loss(logprobs, adv, mask, gamma=0.1)
    close(loss, (-2 * 0.5 / 0.6 - 2 * 0.5 + 0.9) / 3)
    # d loss / d logprob = -A * gamma * pi / (pi + gamma)^2 / 3:
    #   pi=0.5: 0.05/0.36 = 0.13888..; pi=0.1: 0.01/0.04 = 0.25; pi=0.9: 0.09/1 = 0.09
    (grad,) = torch.autograd.grad(loss, logprobs)
    close(grad, [[-2 * 0.05 / 0.36 / 3, -2 * 0.25 / 3], [0.09 / 3, 0.0]])


def test_shaped_off_policy_loss_has_no_clipping():
    # pi = 1 and A = 1 in seq-mean-token-sum: -1 / 1.1, whatever pi the behaviour policy had
    close(shaped_off_policy_loss(t([[0.0]]), t([1.0]), t([[1]]), loss_agg="seq-mean-token-sum"),
          -1 / 1.1)


def test_mixed_policy_batch_aggregates_on_and_off_policy_tokens_together():
    # row 0 on-policy (A = 2, ratios [1.5, 0.5] -> [-2.4, -1]); row 1 off-policy
    # (A = -1, pi = [0.9] -> +0.9): token-mean = (-2.4 - 1 + 0.9) / 3
    logprobs = t([[math.log(1.5), math.log(0.5)], [math.log(0.9), -INF]])
    old = t([[0.0, 0.0], [-INF, -INF]])  # no behaviour logprobs for the off-policy row
    adv, mask = t([2.0, -1.0]), t([[1, 1], [1, 0]])
    off_policy = torch.tensor([False, True])
    on_mask, off_mask = mask * ~off_policy[:, None], mask * off_policy[:, None]
    per_token = torch.where(
        off_policy[:, None],
        per_token_shaped_off_policy_loss(logprobs, adv, off_mask),
        per_token_policy_loss(logprobs, old, adv, on_mask),
    )
    close(aggregate(per_token, mask, "token-mean"), (-2.4 - 1 + 0.9) / 3)


# --------------------------------------------------------------------------------------------
# SFT
# --------------------------------------------------------------------------------------------


def test_sft_loss():
    # -logprobs: row 0 [1, 2], row 1 [3] (+ padding): token-mean 6/3 = 2; seq-mean-token-mean
    # (1.5 + 3) / 2 = 2.25
    logprobs, mask = t([[-1.0, -2.0], [-3.0, -INF]]), t([[1, 1], [1, 0]])
    close(sft_loss(logprobs, mask), 2.0)
    close(sft_loss(logprobs, mask, loss_agg="seq-mean-token-mean"), 2.25)
    close(sft_loss(logprobs[:1], mask[:1], num_tokens=3), 1.0)


# --------------------------------------------------------------------------------------------
# -inf on masked positions: finite losses, finite (zero) gradients there
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_agg", LOSS_AGGS)
def test_masked_minus_inf_logprobs_give_finite_loss_and_grads(loss_agg):
    mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    logprobs = t([[-0.5, -1.0, -INF], [-0.2, -INF, -INF], [-INF, -INF, -INF]])
    old = t([[-0.6, -0.9, -INF], [-0.3, -INF, -INF], [-INF, -INF, -INF]])
    adv = t([1.0, -1.0, 0.5])
    losses = {
        "policy": lambda lp: policy_loss(lp, old, adv, mask, loss_agg=loss_agg,
                                         ref_logprobs=old, kl_coef=0.1),
        "shaped": lambda lp: shaped_off_policy_loss(lp, adv, mask, loss_agg=loss_agg),
        "sft": lambda lp: sft_loss(lp, mask, loss_agg=loss_agg),
    }
    for name, fn in losses.items():
        lp = logprobs.clone().requires_grad_()
        loss = fn(lp)
        loss.backward()
        assert torch.isfinite(loss), name
        assert torch.isfinite(lp.grad).all(), name
        assert torch.all(lp.grad[~mask] == 0), name
        assert torch.all(lp.grad[mask] != 0), name


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_unknown_loss_agg_is_named_with_the_four_modes():
    lp, mask = t([[0.0]]), t([[1]])
    match = r"loss_agg: unknown mode 'mean'; expected one of \('token-mean', "
    calls = [
        lambda: aggregate(lp, mask, "mean"),
        lambda: policy_loss(lp, lp, t([1.0]), mask, loss_agg="mean"),
        lambda: shaped_off_policy_loss(lp, t([1.0]), mask, loss_agg="mean"),
        lambda: sft_loss(lp, mask, loss_agg="mean"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=match) as info:
            call()
        assert all(mode in str(info.value) for mode in LOSS_AGGS)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: aggregate(t([[1.0]]), t([[1]]), num_tokens=0), "num_tokens: expected a positive"),
        (lambda: aggregate(t([[1.0]]), t([[1]]), num_seqs=-1), "num_seqs: expected a positive"),
        (lambda: aggregate(t([[1.0]]), t([[1, 1]])), r"mask: expected shape \(1, 1\)"),
        (lambda: policy_loss(t([[0.0]]), t([[0.0]]), t([1.0, 2.0]), t([[1]])),
         r"advantages: expected shape \[B\]=1"),
        (lambda: policy_loss(t([0.0]), t([0.0]), t([1.0]), t([1])), r"mask: expected a \[B, T\]"),
        (lambda: policy_loss(t([[0.0]]), t([[0.0]]), t([1.0]), t([[1]]), kl_coef=0.1),
         "ref_logprobs: required when kl_coef != 0"),
        (lambda: policy_loss(t([[0.0]]), t([[0.0]]), t([1.0]), t([[1]]), clip_eps=-0.1),
         "clip_eps: expected clip_eps >= 0"),
        (lambda: shaped_off_policy_loss(t([[0.0]]), t([1.0]), t([[1]]), gamma=0.0),
         "gamma: expected a positive shaping constant"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
