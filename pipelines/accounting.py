"""What a pipeline has spent: FLOPs by kind of work (`flops.FlopsLedger`) and training tokens.

Stages add what they run on this rank; `global_step()` around a step makes the counters global,
summing over ranks what each rank added during the step.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ptbench.pipelines import distributed
from ptbench.pipelines.flops import FlopsLedger, ModelShape


@dataclass
class Counters:
    shape: ModelShape
    tokenizer: object
    """Counts prompt tokens of generated batches."""
    ledger: FlopsLedger = field(default_factory=FlopsLedger)
    tokens: int = 0
    """Training tokens (attended positions of trained micro-batches)."""
    last_step_flops: int = 0
    """What the last `global_step()` block spent, over all ranks."""

    def add_train(self, micro_batches: list[dict]) -> None:
        for mb in micro_batches:
            b, t = mb["input_ids"].shape
            self.ledger.add_train(self.shape, b, t)
            self.tokens += int(mb["attention_mask"].sum())

    def add_generation(self, examples: list, per_prompt: int, new_tokens: int) -> None:
        """`per_prompt` sampled completions of each prompt, `new_tokens` decoding steps each.

        Charged at the full budget: a batch decodes until its last sequence stops.
        """
        for example in examples:
            prompt_len = len(self.tokenizer(example.prompt, add_special_tokens=False)["input_ids"])
            self.ledger.add_generation(self.shape, per_prompt, prompt_len, new_tokens)

    def add_forward(self, batch: dict) -> None:
        b, t = batch["input_ids"].shape
        self.ledger.add_forward(self.shape, b, t)

    @contextlib.contextmanager
    def global_step(self) -> Iterator[None]:
        """Sum over ranks what every rank adds inside the block (a collective: all ranks)."""
        ledger, tokens = copy.copy(self.ledger), self.tokens
        yield
        names = [f.name for f in dataclasses.fields(FlopsLedger)]
        delta = [getattr(self.ledger, n) - getattr(ledger, n) for n in names] + [self.tokens - tokens]
        delta = distributed.sum_over_ranks(delta, dtype=torch.int64)
        self.ledger = FlopsLedger(**{n: getattr(ledger, n) + int(d)
                                     for n, d in zip(names, delta[:-1], strict=True)})
        self.tokens = tokens + int(delta[-1])
        self.last_step_flops = self.ledger.total - ledger.total
