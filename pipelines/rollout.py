"""Sampling completions with the model's own `generate`: groups for RL, greedy for evaluation."""

from __future__ import annotations

from collections import defaultdict

import torch

from ptbench.pipelines.data import encode


def stop_token_ids(tokenizer, end_marker: str = ".") -> list[int]:
    """EOS and the task's end marker (when it is a single token of the vocabulary)."""
    ids = [tokenizer.eos_token_id]
    marker = tokenizer.convert_tokens_to_ids(end_marker)
    if marker is not None and marker != tokenizer.unk_token_id:
        ids.append(marker)
    return ids


def _cut(tokens: list[int], stops: list[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in stops:
            return tokens[: i + 1]
    return tokens


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int, num_return: int = 1,
             temperature: float = 1.0, greedy: bool = False) -> list[list[list[int]]]:
    """Completion token ids, `num_return` per prompt, cut after the first stop token.

    Prompts of equal token length are generated together (no padding, so positions are exactly
    those of training rows); returns, for each prompt, a list of `num_return` completions.
    """
    stops = stop_token_ids(tokenizer)
    device = next(model.parameters()).device
    encoded = [encode(tokenizer, p) for p in prompts]
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(encoded):
        by_len[len(ids)].append(i)
    out: list[list[list[int]]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    for length, idx in by_len.items():
        ids = torch.tensor([encoded[i] for i in idx for _ in range(num_return)], device=device)
        kwargs = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature,
                                                           top_k=0, top_p=1.0)
        seqs = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                              max_new_tokens=max_new_tokens, eos_token_id=stops,
                              pad_token_id=tokenizer.pad_token_id, **kwargs)
        completions = seqs[:, length:].tolist()
        for j, i in enumerate(idx):
            out[i] = [_cut(c, stops) for c in completions[j * num_return:(j + 1) * num_return]]
    model.train(was_training)
    return out
