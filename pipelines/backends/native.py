"""Native PyTorch backend: one optimizer step with gradient accumulation, readable top to bottom.

Every micro-batch's loss is computed with `ptbench.pipelines.losses` and the GLOBAL normalizers
of the whole step (loss tokens, sequences, longest shifted row, summed over ranks when
distributed), so the accumulated gradient is that of one `loss_agg` over the whole step, however
the step is split. `ptbench.fixtures.probes` checks exactly that (adapter `ptbench-native`).
With a DeepSpeed engine (`ptbench.pipelines.backends.deepspeed`) the losses are the same and the
engine reduces, clips and updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from ptbench.pipelines import distributed, losses
from ptbench.pipelines.backends import deepspeed as ds
from ptbench.pipelines.backends import register_backend
from ptbench.pipelines.config import ConfigError, PipelineConfig, StageConfig
from ptbench.pipelines.data import IGNORE_INDEX, on_device
from ptbench.pipelines.logprobs import token_logprobs


@dataclass(frozen=True)
class StepNormalizers:
    """The global normalizers of one optimizer step."""

    num_tokens: float
    num_seqs: float
    max_len: int

    @classmethod
    def of(cls, micro_batches: list[dict], across_ranks: bool = True) -> StepNormalizers:
        """Counted over `micro_batches`, then summed (tokens, rows) or maxed (length) over ranks
        (unless `across_ranks` is False: a step one process takes alone)."""
        counts = torch.tensor([
            float(sum(int((mb["labels"][:, 1:] != IGNORE_INDEX).sum()) for mb in micro_batches)),
            float(sum(mb["input_ids"].shape[0] for mb in micro_batches)),
        ], dtype=torch.float64)
        longest = torch.tensor([max(mb["input_ids"].shape[1] - 1 for mb in micro_batches)])
        if across_ranks and distributed.world_size() > 1:
            dist.all_reduce(counts)
            dist.all_reduce(longest, op=dist.ReduceOp.MAX)
        return cls(float(counts[0]), float(counts[1]), int(longest))


class NativeTrainStep:
    """`step(micro_batches)`: accumulate gradients over the micro-batches, then one update.

    objective 'ce': SFT cross-entropy. objective 'pg': clipped policy gradient with per-row
    `advantages` (old logprobs = current, detached, unless the micro-batch carries
    `old_logprobs`); rows flagged in an optional bool `off_policy` [B] get LUFFY's shaped loss
    instead, aggregated together with the on-policy tokens in one `loss_agg`.

    With `engine` (a DeepSpeed engine wrapping `model` and `optimizer`), the engine takes the
    backward passes and the update; `max_grad_norm` is then the engine's `gradient_clipping`.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 objective: str = "ce", loss_agg: str = "token-mean",
                 max_grad_norm: float | None = None, clip_eps: float = 0.2,
                 clip_eps_high: float | None = None, kl_coef: float = 0.0,
                 shaping_gamma: float = 0.1, across_ranks: bool = True, engine=None) -> None:
        if objective not in ("ce", "pg"):
            raise ValueError(f"objective: expected 'ce' or 'pg', got {objective!r}")
        if loss_agg not in losses.LOSS_AGGS:
            raise ValueError(f"loss_agg: expected one of {losses.LOSS_AGGS}, got {loss_agg!r}")
        self.model, self.optimizer = model, optimizer
        self.objective, self.loss_agg = objective, loss_agg
        self.max_grad_norm, self.clip_eps = max_grad_norm, clip_eps
        self.clip_eps_high, self.kl_coef, self.shaping_gamma = clip_eps_high, kl_coef, shaping_gamma
        self.across_ranks = across_ranks
        """False: this process steps alone even inside a process group (no collectives)."""
        self.engine = engine
        self.clip_counts = [0.0, 0.0]
        """Clipped and all on-policy loss tokens since the last `pop_clip_fraction`."""

    def micro_batch_loss(self, mb: dict, norm: StepNormalizers, objective: str | None = None,
                         loss_agg: str | None = None) -> torch.Tensor:
        """This micro-batch's share of the step's loss (objective / loss_agg: this call only)."""
        mb = on_device(mb, self.model)
        logp, mask = token_logprobs(self.model, mb)
        kwargs = dict(loss_agg=loss_agg or self.loss_agg, num_tokens=norm.num_tokens,
                      num_seqs=norm.num_seqs, max_len=norm.max_len)
        if (objective or self.objective) == "ce":
            return losses.sft_loss(logp, mask, **kwargs)
        # Rollouts carry the sampling policy's logprobs when updates reuse them (PPO epochs,
        # mini-batches); a fresh on-policy batch has ratio 1.
        old = mb.get("old_logprobs", logp.detach())
        on_policy = mask if "off_policy" not in mb else mask & ~mb["off_policy"][:, None]
        clipped = losses.clip_fraction(logp, old, mb["advantages"], on_policy,
                                       clip_eps=self.clip_eps, clip_eps_high=self.clip_eps_high)
        self.clip_counts[0] += float(clipped) * float(on_policy.sum())
        self.clip_counts[1] += float(on_policy.sum())
        per_token = losses.per_token_policy_loss(
            logp, old, mb["advantages"], mask, clip_eps=self.clip_eps,
            clip_eps_high=self.clip_eps_high, kl_coef=self.kl_coef,
            ref_logprobs=mb.get("ref_logprobs"))
        if "off_policy" in mb:  # LUFFY: demonstration rows are shaped, not importance-weighted
            shaped = losses.per_token_shaped_off_policy_loss(logp, mb["advantages"], mask,
                                                             gamma=self.shaping_gamma)
            per_token = torch.where(mb["off_policy"][:, None], shaped, per_token)
        return losses.aggregate(per_token, mask, **kwargs)

    def pop_clip_fraction(self) -> float:
        """Share of on-policy loss tokens clipped since the last call (0 when none)."""
        clipped, total = self.clip_counts
        self.clip_counts = [0.0, 0.0]
        return clipped / total if total else 0.0

    def backward(self, micro_batches: list[dict], *, objective: str | None = None,
                 loss_agg: str | None = None, weight: float = 1.0) -> float:
        """Accumulate weight x the gradient of one loss over `micro_batches`; returns the loss
        (of the whole step: summed over ranks, each rank holding its share)."""
        norm = StepNormalizers.of(micro_batches, self.across_ranks)
        total = torch.zeros((), dtype=torch.float64)
        for mb in micro_batches:
            loss = self.micro_batch_loss(mb, norm, objective, loss_agg)
            if self.engine is None:
                (loss * weight).backward()
            else:  # DeepSpeed averages gradients over ranks; each rank's loss is a global share
                self.engine.backward(loss * (weight * distributed.world_size()))
            total += float(loss.detach())
        if self.across_ranks and distributed.world_size() > 1:
            dist.all_reduce(total)
        return float(total)

    def update(self) -> float | None:
        """Sum gradients over ranks, clip, step, zero; returns the pre-clip gradient norm (None
        where a DeepSpeed engine does not report one: ZeRO stage 0 in float32)."""
        if self.engine is not None:
            self.engine.step()
            norm = self.engine.get_global_grad_norm()
            return None if norm is None else float(norm)
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.across_ranks and distributed.world_size() > 1:
            for p in params:  # each rank's share is already globally normalized: sum, not mean
                dist.all_reduce(p.grad)
        max_norm = self.max_grad_norm if self.max_grad_norm else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm)

    def __call__(self, micro_batches: list[dict]) -> dict[str, float]:
        self.model.train()
        loss = self.backward(micro_batches)
        return {"grad_norm": self.update(), "loss": loss}

    def close(self) -> None:
        """Release the DeepSpeed engine (its gradient hooks on the model), if any."""
        if self.engine is not None:
            self.engine.destroy()


class NativeBackend:
    """ptbench's own steps (`NativeTrainStep`): every stage kind and `loss_agg`, AdamW (weight
    decay 0), under a DeepSpeed engine when the config has a `deepspeed` section."""

    name = "native"
    stage_kinds = frozenset({"sft", "rl", "luffy", "srft"})

    def check(self, config: PipelineConfig) -> None:
        for i, stage in enumerate(config.stages):
            if stage.generation != "ptbench":
                raise ConfigError(f"stages[{i}].generation: {stage.generation!r} is TRL's "
                                  "generation; expected backend: trl, or generation: ptbench")

    def check_launch(self, config: PipelineConfig, world_size: int) -> None:
        pass

    def sft_step(self, ctx, stage: StageConfig) -> NativeTrainStep:
        return self._step(ctx, stage, objective="ce")

    def rl_step(self, ctx, stage: StageConfig) -> NativeTrainStep:
        return self._step(ctx, stage, objective="pg", clip_eps=stage.clip_eps,
                          clip_eps_high=stage.clip_eps_high, kl_coef=stage.kl_coef,
                          shaping_gamma=stage.shaping_gamma)

    def rl_micro_batch_size(self, stage: StageConfig) -> int | None:
        return stage.micro_batch_size

    @staticmethod
    def _step(ctx, stage: StageConfig, **kwargs) -> NativeTrainStep:
        optimizer = torch.optim.AdamW(ctx.model.parameters(), lr=stage.lr, weight_decay=0.0)
        engine, section = None, ctx.config.deepspeed
        if section is not None:  # the engine then owns reduction, clipping and the update
            engine = ds.wrap(ctx.model, optimizer, ds.engine_config(
                section.zero_stage, offload_optimizer=section.offload_optimizer,
                max_grad_norm=stage.max_grad_norm, bf16=ctx.bf16))
        return NativeTrainStep(ctx.model, optimizer, max_grad_norm=stage.max_grad_norm,
                               loss_agg=stage.loss_agg, engine=engine, **kwargs)


register_backend(NativeBackend())
