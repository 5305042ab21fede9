"""TRL backend: each stage runs TRL's own trainer loop, accumulation, normalization and loss.

    sft  `trl.SFTTrainer`, loss_type 'nll': a token mean over the whole accumulated batch.
    rl   `trl.GRPOTrainer`, loss_type from loss_agg (`GRPO_LOSS_TYPE`), beta 0 (no reference
         model), one update per rollout batch. Rollouts come from ptbench's sampler (one
         prompt's group per micro-batch), or from TRL itself (`generation: trl | vllm`: TRL
         samples prompts, generates, and scores with the task's verifier).

The trainer of a stage runs its whole stage in ONE `train()` call (`trl_trainers`,
`trl_stage`); under DeepSpeed it builds its own engine and optimizer through accelerate.
What TRL cannot express is refused when the config is loaded, naming the field.
"""

from __future__ import annotations

import importlib.util

import torch

from ptbench.pipelines import distributed
from ptbench.pipelines.backends import register_backend
from ptbench.pipelines.config import ConfigError, PipelineConfig, StageConfig

GRPO_LOSS_TYPE = {"token-mean": "dapo", "seq-mean-token-mean": "grpo",
                  "seq-mean-token-sum-norm": "dr_grpo"}
"""The GRPOTrainer loss_type that declares each loss_agg (trl >= 0.20)."""


class TRLBackend:
    name = "trl"
    stage_kinds = frozenset({"sft", "rl"})

    def check(self, config: PipelineConfig) -> None:
        for i, s in enumerate(config.stages):
            where = f"stages[{i}]"
            if s.kind == "sft" and s.loss_agg != "token-mean":
                raise ConfigError(f"{where}.loss_agg: the TRL backend's SFTTrainer declares "
                                  f"token-mean only, got {s.loss_agg!r}")
            if s.kind != "rl":
                continue
            for name in ("num_iterations", "mini_batches"):
                if getattr(s, name) != 1:
                    raise ConfigError(f"{where}.{name}: the TRL backend takes one update per "
                                      f"rollout batch (1), got {getattr(s, name)}")
            if s.loss_agg not in GRPO_LOSS_TYPE:
                raise ConfigError(f"{where}.loss_agg: the TRL backend supports "
                                  f"{sorted(GRPO_LOSS_TYPE)}, got {s.loss_agg!r}")
            if s.kl_coef:
                raise ConfigError(f"{where}.kl_coef: the TRL backend runs GRPO without a "
                                  f"reference model (0), got {s.kl_coef}")

    def check_launch(self, config: PipelineConfig, world_size: int) -> None:
        for i, s in enumerate(config.stages):
            if s.generation == "vllm" and importlib.util.find_spec("vllm") is None:
                raise ConfigError(f"stages[{i}].generation: vLLM is not available here "
                                  "(pip install vllm, on a CUDA machine); expected 'ptbench' or "
                                  "'trl', got 'vllm'")

    def rl_micro_batch_size(self, stage: StageConfig) -> int:
        return stage.group_size  # GRPOTrainer: one prompt's group per micro-batch

    def sft_step(self, ctx, stage: StageConfig):
        from ptbench.pipelines.backends.trl_trainers import sft_stage

        per_rank = stage.batch_size // distributed.world_size()
        grad_accum = -(-per_rank // (stage.micro_batch_size or per_rank))
        return self._trainer(ctx, stage, lambda optimizer, ds: sft_stage(
            ctx.model, optimizer, lr=stage.lr, grad_accum=grad_accum, steps=stage.steps,
            max_grad_norm=stage.max_grad_norm, tokenizer=ctx.tokenizer, bf16=ctx.bf16,
            deepspeed=ds))

    def rl_step(self, ctx, stage: StageConfig):
        from ptbench.pipelines.backends.trl_trainers import grpo_stage
        from ptbench.pipelines.rollout import stop_token_ids

        scorer, generation = None, None
        if stage.generation != "ptbench":
            scorer = VerifierReward(ctx)
            ctx.model.generation_config.eos_token_id = stop_token_ids(ctx.tokenizer)
            generation = {"prompts": [e.prompt for e in ctx.train_pool], "reward": scorer,
                          "tokenizer": ctx.tokenizer, "max_new_tokens": stage.max_new_tokens,
                          "temperature": stage.temperature, "seed": ctx.config.seed,
                          "use_vllm": stage.generation == "vllm"}
        step = self._trainer(ctx, stage, lambda optimizer, ds: grpo_stage(
            ctx.model, optimizer, lr=stage.lr, loss_type=GRPO_LOSS_TYPE[stage.loss_agg],
            rows=stage.group_size, grad_accum=stage.batch_size // distributed.world_size(),
            steps=stage.steps, max_grad_norm=stage.max_grad_norm, clip_eps=stage.clip_eps,
            clip_eps_high=stage.clip_eps_high, bf16=ctx.bf16, deepspeed=ds,
            generation=generation))
        step.scorer = scorer
        return step

    @staticmethod
    def _trainer(ctx, stage: StageConfig, build):
        """`build(optimizer, deepspeed)` with ptbench's AdamW, or under DeepSpeed with None and
        the DeepSpeed arguments (the trainer then builds the engine and optimizer itself)."""
        from ptbench.pipelines.backends import deepspeed
        from ptbench.pipelines.backends.trl_trainers import deepspeed_args

        section = ctx.config.deepspeed
        if section is None:
            optimizer = torch.optim.AdamW(ctx.model.parameters(), lr=stage.lr, weight_decay=0.0)
            return build(optimizer, None)
        deepspeed.init_deepspeed()
        return build(None, deepspeed_args(section.zero_stage, section.offload_optimizer))


class VerifierReward:
    """The task's verifier as GRPOTrainer's reward function (called in the trainer's thread);
    keeps what it scored, (train pool index, completion, reward), for the runner to read."""

    __name__ = "task_verifier"  # TRL names reward functions in its logs

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.scored: list[tuple[int, str, float]] = []

    def __call__(self, completions: list[str], index: list[int], **_) -> list[float]:
        pool, task = self.ctx.train_pool, self.ctx.task
        rewards = [task.reward(pool[i], text) for i, text in zip(index, completions, strict=True)]
        self.scored += list(zip(index, completions, rewards, strict=True))
        return rewards

    def pop(self) -> list[tuple[int, str, float]]:
        scored, self.scored = self.scored, []
        return scored


register_backend(TRLBackend())
