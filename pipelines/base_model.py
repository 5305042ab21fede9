"""The policy a run starts from: a hub id or local path, or a tiny model pretrained briefly on
the task's text (`fixtures.models.tiny_base_model`, trained here with the native step)."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from ptbench.fixtures.models import load_causal_lm, load_tokenizer, tiny_base_model
from ptbench.pipelines import distributed
from ptbench.pipelines.backends.native import NativeTrainStep
from ptbench.pipelines.config import BaseModelConfig, PipelineConfig
from ptbench.pipelines.data import demonstration_batch

CORPUS_SIZE = 4000


def pretrain(model: torch.nn.Module, tokenizer, corpus: list[str], base: BaseModelConfig,
             seed: int) -> None:
    """`base.steps` steps of token-mean cross-entropy on random batches of the task's text."""
    # One process trains alone while the other ranks wait: no collectives.
    step = NativeTrainStep(model, torch.optim.AdamW(model.parameters(), lr=base.lr),
                           across_ranks=False)
    g = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(base.steps), desc="base model pretraining", leave=False):
        texts = [corpus[int(i)] for i in torch.randint(len(corpus), (base.batch_size,), generator=g)]
        step([demonstration_batch(tokenizer, [""] * len(texts), texts)])


def load_base_model(config: PipelineConfig, task, cache: Path, device: torch.device,
                    dtype: torch.dtype) -> tuple[torch.nn.Module, object]:
    """(model on `device` in `dtype`, tokenizer). A tiny base model is built and cached by rank
    0 while the other ranks wait, then loaded by all."""
    if not config.model.startswith("tiny:"):
        return load_causal_lm(config.model, dtype=dtype, device=device), load_tokenizer(config.model)
    base = config.base
    if not distributed.is_main():
        distributed.barrier()
    model, tokenizer = tiny_base_model(
        config.model.removeprefix("tiny:"), lambda: task.corpus(CORPUS_SIZE, seed=config.seed),
        seed=config.seed, cache=cache,
        key=[config.task.name, config.task.options, config.seed, base.steps, base.lr, base.batch_size],
        pretrain=(lambda m, t, corpus: pretrain(m, t, corpus, base, config.seed)) if base.steps else None)
    if distributed.is_main():
        distributed.barrier()
    return model.to(device, dtype), tokenizer
