"""Coupling diagnostics at eval points: what the non-decoupling analysis needs, measured along
any pipeline run (switch on with `diagnostics:` in its config, see `DiagnosticsConfig`).

At every eval point, on fixed held-out probes:

    diag/sft_grad_norm   ||grad S||, S the token-mean SFT loss on the held-out demonstrations
                         (the batch of eval/sft_ce; exact for that batch)
    diag/rl_grad_sq      an unbiased estimate of ||grad J||^2, J the expected reward on the probe
                         prompts: g1 . g2 for two independent REINFORCE estimates g1, g2 (fresh
                         rollouts from the current policy, leave-one-out baseline); below 0 when
                         the gradient is smaller than the sampling noise
    diag/rl_grad_norm    sqrt(diag/rl_grad_sq) (absent when that is <= 0)
    diag/grad_cosine     cos(grad S, grad R) with R = -J, the RL loss:
                         <grad S, -(g1 + g2) / 2> / (||grad S|| ||grad J||), both estimates
                         unbiased; < 0 means an RL step raises S to first order. Absent where
                         rl_grad_sq <= 0; beyond [-1, 1] where grad J is near the sampling noise
                         (a small rl_grad_sq): read it with rl_grad_sq beside it
    diag/probe_reward    mean reward of the probe rollouts (the estimate of J)
    diag/sft_smoothness  ||grad S(theta) - grad S(theta')|| / ||theta - theta'|| for the previous
                         eval point theta': the secant estimate of S's smoothness constant L
    diag/step_length     ||theta - theta'|| per optimizer step since the previous eval point

The rollouts are sampled afresh at each point (the RL gradient is the current policy's, not that
of fixed old rollouts) from a seed fixed by the run's seed and global step, under a forked RNG:
a run trains exactly as it would with diagnostics off. The previous point's parameters and SFT
gradient are kept on the CPU in float32 (two copies of the weights' size).
"""

from __future__ import annotations

import math

import torch

from ptbench.pipelines.config import DiagnosticsConfig
from ptbench.pipelines.data import encode, pad_rows
from ptbench.pipelines.losses import group_advantages
from ptbench.pipelines.misalignment import rl_gradient, sft_gradient
from ptbench.pipelines.rollout import generate

PROBE_SEED_OFFSET = 3
"""Probe prompts are held-out ID problems drawn with seed + 3 (eval uses seed .. seed + 2)."""


def reinforce_rollouts(model, tokenizer, task, examples: list, group_size: int,
                       max_new_tokens: int, temperature: float) -> tuple[dict, torch.Tensor]:
    """`group_size` sampled completions per example as training rows with leave-one-out
    advantages A_i = r_i - mean_{j != i} r_j (unbiased REINFORCE baseline), and the rewards."""
    groups = generate(model, tokenizer, [e.prompt for e in examples], max_new_tokens=max_new_tokens,
                      num_return=group_size, temperature=temperature)
    rows, starts, rewards = [], [], []
    for example, completions in zip(examples, groups, strict=True):
        prompt = encode(tokenizer, example.prompt)
        for completion in completions:
            rows.append(prompt + (completion or [tokenizer.eos_token_id]))
            starts.append(len(prompt))
            rewards.append(task.reward(example, tokenizer.decode(completion)))
    batch = pad_rows(rows, starts, tokenizer.pad_token_id)
    r = torch.tensor(rewards, dtype=torch.float64)
    batch["advantages"] = group_advantages(r, group_size, scale="none") * group_size / (group_size - 1)
    return batch, r


def _flat_parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).float().cpu() for p in model.parameters()
                      if p.requires_grad])


class Diagnostics:
    """Measures the diagnostics at each eval point of one run; remembers the previous point."""

    def __init__(self, config: DiagnosticsConfig, task, seed: int) -> None:
        self.config, self.seed = config, seed
        self.prompts = task.examples("id", config.n_prompts, seed=seed + PROBE_SEED_OFFSET)
        self._previous: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def _rl_gradients(self, ctx, max_new_tokens: int, global_step: int
                      ) -> tuple[torch.Tensor, torch.Tensor, float]:
        c = self.config
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed * 1_000_003 + global_step)
            estimates, rewards = [], []
            for _ in range(2):
                batch, r = reinforce_rollouts(ctx.model, ctx.tokenizer, ctx.task, self.prompts,
                                              c.group_size, max_new_tokens, c.temperature)
                # The policy loss's gradient is minus the REINFORCE estimate of grad J.
                estimates.append(-rl_gradient(ctx.model, batch, loss_agg="seq-mean-token-sum"))
                rewards.append(r)
        return estimates[0], estimates[1], float(torch.cat(rewards).mean())

    def measure(self, ctx, demonstrations: dict, max_new_tokens: int, global_step: int
                ) -> dict[str, float]:
        """Every diagnostic at the model's current parameters (see the module docstring)."""
        grad_s = sft_gradient(ctx.model, demonstrations)
        g1, g2, reward = self._rl_gradients(ctx, max_new_tokens, global_step)
        sq = float(g1 @ g2)
        out = {"diag/sft_grad_norm": float(grad_s.norm()), "diag/rl_grad_sq": sq,
               "diag/probe_reward": reward}
        if sq > 0:
            out["diag/rl_grad_norm"] = math.sqrt(sq)
            if out["diag/sft_grad_norm"] > 0:
                out["diag/grad_cosine"] = float(grad_s @ -(g1 + g2) / 2) / (
                    out["diag/sft_grad_norm"] * math.sqrt(sq))
        theta = _flat_parameters(ctx.model)
        grad_s = grad_s.float().cpu()
        if self._previous is not None and global_step > self._previous[0]:
            step, theta_prev, grad_prev = self._previous
            moved = float((theta - theta_prev).norm())
            out["diag/step_length"] = moved / (global_step - step)
            if moved > 0:
                out["diag/sft_smoothness"] = float((grad_s - grad_prev).norm()) / moved
        self._previous = (global_step, theta, grad_s)
        return out
