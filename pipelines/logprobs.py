"""Per-token log-probabilities of a batch's labels under a model (HF label convention)."""

from __future__ import annotations

import torch

from ptbench.pipelines.data import IGNORE_INDEX, on_device


def token_logprobs(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(label_t+1 | prefix) [B, T-1] and the loss mask, HF label convention (-100 ignored)."""
    batch = on_device(batch, model)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp, mask
