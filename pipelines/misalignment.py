"""Gradient misalignment: the cosine between the SFT-loss gradient and the RL-objective gradient
at the current parameters, on fixed probe batches.

    cos = <grad S, grad R> / (||grad S|| ||grad R||)

S is ptbench's SFT loss (token-mean cross-entropy of the demonstrations, `losses.sft_loss`); R
is ptbench's policy loss (`losses.policy_loss`, token-mean) on a FIXED rollout batch with its
advantages, taken on-policy (old log-probs = current, so the ratio is 1 and the gradient is that
of -A log p): the same rollouts at every point of a run, so the curve moves only because the
parameters do (freshly sampled rollouts would add sampling noise to every point). Negative
cosines mean an RL step raises the SFT loss to first order (`coupling.decoupling_threshold`).
"""

from __future__ import annotations

import torch

from ptbench.pipelines.logprobs import token_logprobs
from ptbench.pipelines.losses import policy_loss, sft_loss


def _gradient(model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).double()
                      for g, p in zip(grads, params, strict=True)])


def sft_gradient(model: torch.nn.Module, demonstrations: dict) -> torch.Tensor:
    """Flat gradient of the token-mean SFT loss on `demonstrations` (input_ids, attention_mask,
    labels)."""
    logp, mask = token_logprobs(model, demonstrations)
    return _gradient(model, sft_loss(logp, mask))


def rl_gradient(model: torch.nn.Module, rollouts: dict, loss_agg: str = "token-mean") -> torch.Tensor:
    """Flat gradient of the policy loss (aggregated by `loss_agg`) on fixed `rollouts`
    (input_ids, attention_mask, labels of the completion tokens, advantages [B]), on-policy.
    With 'seq-mean-token-sum' it is -mean_i A_i grad log pi(y_i | x_i), the REINFORCE estimate of
    minus the gradient of the expected reward when A_i is a baseline-corrected reward."""
    logp, mask = token_logprobs(model, rollouts)
    advantages = rollouts["advantages"].to(logp.device, logp.dtype)
    return _gradient(model, policy_loss(logp, logp.detach(), advantages, mask, loss_agg=loss_agg))


def gradient_cosine(model: torch.nn.Module, demonstrations: dict, rollouts: dict) -> float:
    """cos(grad S, grad R) at the model's current parameters (nan when either gradient is 0)."""
    gs, gr = sft_gradient(model, demonstrations), rl_gradient(model, rollouts)
    denom = gs.norm() * gr.norm()
    return float(gs @ gr / denom) if denom > 0 else float("nan")
