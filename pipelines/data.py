"""Tokenized batches: demonstrations for SFT, prompt+completion rows for RL (HF conventions)."""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def pad_rows(rows: list[list[int]], loss_starts: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token rows; labels are -100 before each row's `loss_start` and on padding."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (row, start) in enumerate(zip(rows, loss_starts, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
        labels[i, start: len(row)] = torch.tensor(row[start:])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def on_device(batch: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`batch` with every tensor on the device of `model`'s parameters."""
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in batch.items()}


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of `text`, without special tokens."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def demonstration_batch(tokenizer, prompts: list[str], completions: list[str]) -> dict[str, torch.Tensor]:
    """SFT rows prompt + completion; the loss covers the completion tokens only."""
    rows, starts = [], []
    for prompt, completion in zip(prompts, completions, strict=True):
        p, c = encode(tokenizer, prompt), encode(tokenizer, completion)
        rows.append(p + c)
        starts.append(max(len(p), 1))
    return pad_rows(rows, starts, tokenizer.pad_token_id)


def split_micro_batches(batch: dict[str, torch.Tensor], micro_batch_size: int | None
                        ) -> list[dict[str, torch.Tensor]]:
    """Split rows into micro-batches, each trimmed to its own longest row."""
    n = batch["input_ids"].shape[0]
    size = micro_batch_size or n
    out = []
    for start in range(0, n, size):
        mb = {k: v[start:start + size] for k, v in batch.items()}
        width = int(mb["attention_mask"].sum(dim=1).max())
        # [B, T] token tensors keep `width` columns, [B, T-1] per-position logprobs width - 1.
        out.append({k: (v[:, : width - 1] if k.endswith("logprobs") else v[:, :width])
                    if v.dim() == 2 else v for k, v in mb.items()})
    return out
