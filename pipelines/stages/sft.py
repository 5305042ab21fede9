"""SFT stage: token-level cross-entropy on the task's demonstrations."""

from __future__ import annotations

from ptbench.pipelines import distributed
from ptbench.pipelines.backends import trl
from ptbench.pipelines.config import ConfigError, StageConfig
from ptbench.pipelines.data import demonstration_batch, split_micro_batches
from ptbench.pipelines.stages import register


@register
class SFTStage:
    """loss = loss_agg over demonstration tokens of -log pi(token | prefix)."""

    kind = "sft"

    def __init__(self, config: StageConfig, index: int) -> None:
        self.config, self.index = config, index

    def setup(self, ctx) -> None:
        c = self.config
        if ctx.config.backend == "trl":
            if c.loss_agg != "token-mean":
                raise ConfigError(f"stages[{self.index}].loss_agg: the TRL backend's SFTTrainer "
                                  f"declares token-mean only, got {c.loss_agg!r}")
            per_rank = c.batch_size // distributed.world_size()
            grad_accum = -(-per_rank // (c.micro_batch_size or per_rank))
            self.train = ctx.trl_trainer(c, lambda optimizer, ds: trl.sft_stage(
                ctx.model, optimizer, lr=c.lr, grad_accum=grad_accum, steps=c.steps,
                max_grad_norm=c.max_grad_norm, tokenizer=ctx.tokenizer, bf16=ctx.bf16,
                deepspeed=ds))
        else:
            self.train = ctx.native_step(c, objective="ce", loss_agg=c.loss_agg)

    def step(self, ctx, step: int) -> dict[str, float]:
        examples = ctx.sample_train(self.config.batch_size)
        batch = demonstration_batch(ctx.tokenizer, [e.prompt for e in examples],
                                    [e.demonstration for e in examples])
        micro_batches = split_micro_batches(batch, self.config.micro_batch_size)
        out = self.train(micro_batches)
        ctx.account_train(micro_batches)
        return {"train/loss": out["loss"], "train/grad_norm": out["grad_norm"]}
