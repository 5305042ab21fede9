"""FLOPs of a pipeline before it runs: an upper bound per stage step, from the model's shape,
the stage's settings and the task's longest prompt and demonstration, priced with the same
formulas (`flops`) the runner's ledger uses while it runs.

Per step, with B = batch_size, G = group_size, k = demonstrations per group (LUFFY), P and D
the longest prompt and demonstration in tokens, M = max_new_tokens and C = max(M, D)::

    sft   train(B, P + D)
    rl    generate(B * (G - k), P, M) + iterations * train(B * G, P + C)
          + forward(B * G, P + C) * ([kl_coef > 0] + [iterations * mini_batches > 1])
    srft  the rl step + train(B, P + D) + forward(B, P + D)     (its SFT term and entropy pass)

The ledger charges the lengths a step really had (each micro-batch trimmed to its own longest
row, generation to the full M), so a run spends at most this; a comparison uses it to refuse a
budget a pipeline cannot reach before anything trains. Token lengths are bounded by character
counts: every token of the tokenizers ptbench loads covers at least one character of ASCII text.
"""

from __future__ import annotations

from dataclasses import dataclass

from ptbench.pipelines.config import PipelineConfig, StageConfig
from ptbench.pipelines.flops import ModelShape, forward_flops, generation_flops, training_flops

LENGTH_SAMPLE = 512
"""Training examples whose lengths bound the task's."""


@dataclass(frozen=True)
class Lengths:
    """The longest prompt and demonstration of a task, in tokens (or an upper bound)."""

    prompt: int
    demonstration: int

    @classmethod
    def of_task(cls, task, seed: int = 0) -> Lengths:
        """Character counts of `LENGTH_SAMPLE` training examples (an upper bound on tokens)."""
        examples = task.examples("train", LENGTH_SAMPLE, seed=seed)
        return cls(max(len(e.prompt) for e in examples),
                   max(len(e.demonstration) for e in examples) + 1)

    @classmethod
    def shortest_of_task(cls, task, seed: int = 0) -> Lengths:
        """One token per word-sized piece is the least any tokenizer spends: a lower bound."""
        examples = task.examples("train", LENGTH_SAMPLE, seed=seed)
        return cls(max(1, min(len(e.prompt.split()) for e in examples)),
                   max(1, min(len(e.demonstration.split()) for e in examples)))


def stage_step_flops(shape: ModelShape, stage: StageConfig, lengths: Lengths) -> int:
    """An upper bound on one step of `stage` (see the module docstring)."""
    b, p, d = stage.batch_size, lengths.prompt, lengths.demonstration
    if stage.kind == "sft":
        return training_flops(shape, b, p + d)
    k = stage.off_policy_per_group if stage.kind == "luffy" else 0
    rows, width = b * stage.group_size, p + max(stage.max_new_tokens, d)
    flops = generation_flops(shape, b * (stage.group_size - k), p, stage.max_new_tokens)
    flops += stage.num_iterations * training_flops(shape, rows, width)
    extra = int(stage.kl_coef > 0) + int(stage.num_iterations * stage.mini_batches > 1)
    flops += extra * forward_flops(shape, rows, width)
    if stage.kind == "srft":
        flops += training_flops(shape, b, p + d) + forward_flops(shape, b, p + d)
    return flops


def stage_step_flops_floor(shape: ModelShape, stage: StageConfig, shortest: Lengths) -> int:
    """A lower bound on one step of `stage`: its training pass alone, on the shortest rows
    (`shortest`), every rollout one token long."""
    b, p, d = stage.batch_size, shortest.prompt, shortest.demonstration
    if stage.kind == "sft":
        return training_flops(shape, b, p + d)
    return stage.num_iterations * training_flops(shape, b * stage.group_size, p + 1)


def stage_flops(shape: ModelShape, stage: StageConfig, lengths: Lengths) -> int:
    """An upper bound on a whole stage, with its step budget (`budget_steps`) applied."""
    return min(stage.steps, stage.budget_steps or stage.steps) * stage_step_flops(
        shape, stage, lengths)


def pipeline_flops(config: PipelineConfig, shape: ModelShape, lengths: Lengths) -> list[int]:
    """Upper bounds per stage, in order (a stage's `budget_flops` is left to the caller)."""
    return [stage_flops(shape, s, lengths) for s in config.stages]
