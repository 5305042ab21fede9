"""SFT stage: token-level cross-entropy on the task's demonstrations."""

from __future__ import annotations

from ptbench.pipelines.data import demonstration_batch, split_micro_batches
from ptbench.pipelines.stages import StageBase, register


@register
class SFTStage(StageBase):
    """loss = loss_agg over demonstration tokens of -log pi(token | prefix)."""

    kind = "sft"

    def setup(self, ctx) -> None:
        self.train = ctx.backend.sft_step(ctx, self.config)

    def step(self, ctx, step: int) -> dict[str, float]:
        examples = ctx.sample_train(self.config.batch_size)
        batch = demonstration_batch(ctx.tokenizer, [e.prompt for e in examples],
                                    [e.demonstration for e in examples])
        micro_batches = split_micro_batches(batch, self.config.micro_batch_size)
        out = self.train(micro_batches)
        ctx.counters.add_train(micro_batches)
        return {"train/loss": out["loss"], "train/grad_norm": out["grad_norm"]}
