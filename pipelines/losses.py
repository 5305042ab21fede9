"""The losses of ptbench's own post-training stages: ONE implementation of each, shared by all.

Pure functions, tensors in, tensor out: no trainer state, no logging, no distributed calls, no
in-place changes to their inputs. Every loss is built from a per-token helper returning a [B, T]
tensor (zero at masked positions) and `aggregate`, so a mixed-policy stage (LUFFY) can aggregate
its on- and off-policy tokens together::

    per_token = torch.where(is_off_policy[:, None],
                            per_token_shaped_off_policy_loss(lp, adv, mask),
                            per_token_policy_loss(lp, old_lp, adv, mask))
    loss = aggregate(per_token, mask, "token-mean")

Shapes: logprobs, old_logprobs, ref_logprobs and mask are [B, T] (B rows, T token positions);
advantages are [B] (one per sequence, broadcast over its tokens; [B, 1] too) or [B, T]. mask is
0/1, bool or float; positions where it is 0 are zeroed with `torch.where` BEFORE any exp or
product, so they never produce NaN, in the loss or in its gradient, even when their logprobs are
-inf.

Normalizers are explicit: with gradient accumulation, pass the GLOBAL ones of the whole step
(`num_tokens`, `num_seqs`, `max_len`) to every micro-batch; the sum of the micro-batch losses is
then the loss of the whole step (see `aggregate`).
"""

from __future__ import annotations

import torch

LOSS_AGGS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
ADVANTAGE_SCALES = ("std", "none")

__all__ = [
    "ADVANTAGE_SCALES",
    "LOSS_AGGS",
    "aggregate",
    "clip_fraction",
    "group_advantages",
    "per_token_policy_loss",
    "per_token_shaped_off_policy_loss",
    "policy_loss",
    "sft_loss",
    "shaped_off_policy_loss",
]


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _check_loss_agg(loss_agg: str) -> None:
    if loss_agg not in LOSS_AGGS:
        raise ValueError(f"loss_agg: unknown mode {loss_agg!r}; expected one of {LOSS_AGGS}")


def _check_2d(name: str, tensor: torch.Tensor, shape: torch.Size | None = None) -> None:
    if tensor.dim() != 2:
        raise ValueError(f"{name}: expected a [B, T] tensor, got shape {tuple(tensor.shape)}")
    if shape is not None and tensor.shape != shape:
        raise ValueError(
            f"{name}: expected shape {tuple(shape)} (that of mask), got {tuple(tensor.shape)}"
        )


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name}: expected a positive global normalizer or None, got {value!r}")


def _keep(mask: torch.Tensor) -> torch.Tensor:
    """Boolean [B, T]: True on loss tokens."""
    return mask if mask.dtype == torch.bool else mask != 0


def _per_sequence(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Advantages broadcastable against [B, T]: [B] -> [B, 1]; [B, 1] and [B, T] unchanged."""
    if advantages.dim() == 1 and advantages.shape[0] == mask.shape[0]:
        return advantages.unsqueeze(-1)
    if advantages.shape in (mask.shape, (mask.shape[0], 1)):
        return advantages
    raise ValueError(
        f"advantages: expected shape [B]={mask.shape[0]} or [B, T]={tuple(mask.shape)}, "
        f"got {tuple(advantages.shape)}"
    )


# --------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------


def group_advantages(
    rewards: torch.Tensor, group_size: int, *, scale: str = "std"
) -> torch.Tensor:
    """Group-relative advantages of GRPO (DeepSeekMath, arXiv 2402.03300, eq. 3 outcome case).

    rewards [N] hold N / group_size groups, each of `group_size` contiguous completions of one
    prompt. With g the group of reward r:

        scale="std":   A = (r - mean(g)) / (std(g) + 1e-6)   (std unbiased, correction=1)
        scale="none":  A =  r - mean(g)                      (Dr. GRPO, arXiv 2503.20783)

    A group of equal rewards gets advantages 0 in both cases. Returns [N].
    """
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"scale: unknown value {scale!r}; expected one of {ADVANTAGE_SCALES}")
    if rewards.dim() != 1:
        raise ValueError(f"rewards: expected a 1-D [N] tensor, got shape {tuple(rewards.shape)}")
    if group_size < 1:
        raise ValueError(f"group_size: expected an integer >= 1, got {group_size!r}")
    if scale == "std" and group_size < 2:
        raise ValueError(
            f"group_size: expected >= 2 with scale='std' (the unbiased std of a group of "
            f"{group_size} is undefined), got {group_size!r}; use scale='none'"
        )
    if rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"group_size: expected a divisor of the number of rewards N={rewards.shape[0]}, "
            f"got {group_size!r}"
        )
    if not rewards.is_floating_point():
        rewards = rewards.to(torch.get_default_dtype())
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale == "std":
        centred = centred / (grouped.std(dim=1, keepdim=True) + 1e-6)
    return centred.reshape(-1)


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    loss_agg: str = "token-mean",
    *,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    max_len: int | None = None,
) -> torch.Tensor:
    """Reduce a [B, T] per-token loss l to a scalar over the loss tokens of `mask`.

    With n_i = sum_t mask[i, t], N = num_seqs (default B), T = max_len (default mask.shape[1]):

        token-mean               sum(l * mask) / num_tokens       (default num_tokens = sum(mask))
        seq-mean-token-mean      (1/N) sum_i sum_t(l_i * mask_i) / max(n_i, 1)
        seq-mean-token-sum       (1/N) sum_i sum_t(l_i * mask_i)
        seq-mean-token-sum-norm  sum(l * mask) / (N * T)          (Dr. GRPO, arXiv 2503.20783)

    A row without loss tokens contributes 0 to the numerator but still counts in N (its n_i is
    clamped at 1 so it never divides by zero); an all-masked batch gives 0 for token-mean.

    Gradient accumulation: give every micro-batch the global num_tokens, num_seqs and max_len of
    the step; the sum of the micro-batch losses then equals the loss on the whole batch. Each
    mode uses only its own normalizers and ignores the others, so all three may always be passed.
    Masked entries of per_token are replaced by 0 (torch.where), whatever their value.
    """
    _check_loss_agg(loss_agg)
    _check_2d("per_token", per_token)
    _check_2d("mask", mask, per_token.shape)
    _check_positive("num_tokens", num_tokens)
    _check_positive("num_seqs", num_seqs)
    _check_positive("max_len", max_len)

    weights = mask.to(per_token.dtype)
    masked = torch.where(_keep(mask), per_token, 0.0) * weights
    n_seqs = per_token.shape[0] if num_seqs is None else num_seqs

    if loss_agg == "token-mean":
        n_tokens = weights.sum().clamp(min=1.0) if num_tokens is None else num_tokens
        return masked.sum() / n_tokens
    if loss_agg == "seq-mean-token-mean":
        row_means = masked.sum(dim=-1) / weights.sum(dim=-1).clamp(min=1.0)
        return row_means.sum() / n_seqs
    if loss_agg == "seq-mean-token-sum":
        return masked.sum() / n_seqs
    width = mask.shape[1] if max_len is None else max_len
    return masked.sum() / (n_seqs * width)


# --------------------------------------------------------------------------------------------
# Per-token losses
# --------------------------------------------------------------------------------------------


def _surrogates(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    keep: torch.Tensor,
    clip_eps: float,
    clip_eps_high: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pg_loss1, pg_loss2) of the PPO clipped surrogate, masked positions at ratio 1."""
    high = clip_eps if clip_eps_high is None else clip_eps_high
    if clip_eps < 0 or high < 0:
        raise ValueError(
            f"clip_eps: expected clip_eps >= 0 and clip_eps_high >= 0, got {clip_eps!r}, {high!r}"
        )
    log_ratio = torch.where(keep, logprobs, 0.0) - torch.where(keep, old_logprobs, 0.0)
    ratio = torch.exp(log_ratio)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + high)
    return pg_loss1, pg_loss2


def per_token_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    """PPO clipped surrogate per token (PPO, arXiv 1707.06347; GRPO, arXiv 2402.03300), [B, T].

        ratio    = exp(logprobs - old_logprobs)
        pg_loss1 = -A * ratio
        pg_loss2 = -A * clamp(ratio, 1 - clip_eps, 1 + clip_eps_high)
        loss     = max(pg_loss1, pg_loss2) + kl_coef * k3

    clip_eps_high defaults to clip_eps; DAPO's clip-higher (arXiv 2503.14476) uses 0.2 / 0.28.
    The optional KL penalty to a reference policy is GRPO's k3 estimator, per token,
    k3 = exp(ref - logprobs) - (ref - logprobs) - 1; it needs ref_logprobs when kl_coef != 0.
    old_logprobs, advantages and ref_logprobs are used as given (pass them detached).
    Masked positions are 0.
    """
    _check_2d("mask", mask)
    _check_2d("logprobs", logprobs, mask.shape)
    _check_2d("old_logprobs", old_logprobs, mask.shape)
    keep = _keep(mask)
    adv = _per_sequence(advantages, mask)
    pg_loss1, pg_loss2 = _surrogates(logprobs, old_logprobs, adv, keep, clip_eps, clip_eps_high)
    loss = torch.maximum(pg_loss1, pg_loss2)
    if kl_coef != 0.0:
        if ref_logprobs is None:
            raise ValueError(f"ref_logprobs: required when kl_coef != 0 (kl_coef={kl_coef!r})")
        _check_2d("ref_logprobs", ref_logprobs, mask.shape)
        delta = torch.where(keep, ref_logprobs, 0.0) - torch.where(keep, logprobs, 0.0)
        loss = loss + kl_coef * (torch.exp(delta) - delta - 1.0)
    return torch.where(keep, loss, 0.0)


def per_token_shaped_off_policy_loss(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float = 0.1,
) -> torch.Tensor:
    """LUFFY's policy shaping on off-policy tokens (arXiv 2504.14945), [B, T].

        pi = exp(logprobs),  f(pi) = pi / (pi + gamma),  loss = -A * f(pi)

    No importance ratio and no clipping; the gradient flows through pi, with
    d f / d logprobs = gamma * pi / (pi + gamma)^2, which up-weights low-probability tokens.
    Masked positions are 0.
    """
    if not gamma > 0:
        raise ValueError(f"gamma: expected a positive shaping constant, got {gamma!r}")
    _check_2d("mask", mask)
    _check_2d("logprobs", logprobs, mask.shape)
    keep = _keep(mask)
    adv = _per_sequence(advantages, mask)
    pi = torch.exp(torch.where(keep, logprobs, 0.0))
    loss = -adv * (pi / (pi + gamma))
    return torch.where(keep, loss, 0.0)


# --------------------------------------------------------------------------------------------
# Scalar losses
# --------------------------------------------------------------------------------------------


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_agg: str = "token-mean",
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    max_len: int | None = None,
) -> torch.Tensor:
    """PPO / GRPO / DAPO clipped policy loss: `per_token_policy_loss` reduced by `aggregate`."""
    _check_loss_agg(loss_agg)
    per_token = per_token_policy_loss(
        logprobs,
        old_logprobs,
        advantages,
        mask,
        clip_eps=clip_eps,
        clip_eps_high=clip_eps_high,
        ref_logprobs=ref_logprobs,
        kl_coef=kl_coef,
    )
    return aggregate(
        per_token, mask, loss_agg, num_tokens=num_tokens, num_seqs=num_seqs, max_len=max_len
    )


def shaped_off_policy_loss(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float = 0.1,
    loss_agg: str = "token-mean",
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    max_len: int | None = None,
) -> torch.Tensor:
    """LUFFY off-policy loss: `per_token_shaped_off_policy_loss` reduced by `aggregate`."""
    _check_loss_agg(loss_agg)
    per_token = per_token_shaped_off_policy_loss(logprobs, advantages, mask, gamma=gamma)
    return aggregate(
        per_token, mask, loss_agg, num_tokens=num_tokens, num_seqs=num_seqs, max_len=max_len
    )


def sft_loss(
    logprobs: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_agg: str = "token-mean",
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    max_len: int | None = None,
) -> torch.Tensor:
    """SFT cross-entropy: aggregate(-logprobs, mask), logprobs those of the label tokens."""
    _check_loss_agg(loss_agg)
    _check_2d("mask", mask)
    _check_2d("logprobs", logprobs, mask.shape)
    per_token = -torch.where(_keep(mask), logprobs, 0.0)
    return aggregate(
        per_token, mask, loss_agg, num_tokens=num_tokens, num_seqs=num_seqs, max_len=max_len
    )


def clip_fraction(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float,
    clip_eps_high: float | None = None,
) -> torch.Tensor:
    """Share of loss tokens where the clipped branch is active (pg_loss2 > pg_loss1), for tracking.

    A 0-dim float tensor, no gradient; 0 when there are no loss tokens.
    """
    _check_2d("mask", mask)
    _check_2d("logprobs", logprobs, mask.shape)
    _check_2d("old_logprobs", old_logprobs, mask.shape)
    with torch.no_grad():
        keep = _keep(mask)
        adv = _per_sequence(advantages, mask)
        pg_loss1, pg_loss2 = _surrogates(
            logprobs, old_logprobs, adv, keep, clip_eps, clip_eps_high
        )
        clipped = (pg_loss2 > pg_loss1) & keep
        dtype = logprobs.dtype if logprobs.is_floating_point() else torch.get_default_dtype()
        return clipped.sum().to(dtype) / keep.sum().clamp(min=1).to(dtype)
