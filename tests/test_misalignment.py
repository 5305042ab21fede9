"""Gradient misalignment on constructed batches whose cosine is known."""

from __future__ import annotations

import pytest
import torch

from ptbench.fixtures.models.tiny import build_tiny_model
from ptbench.pipelines.misalignment import gradient_cosine


def batch(seed: int, rows: int = 3, width: int = 7, vocab: int = 64) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, width), generator=g)
    labels = ids.clone()
    labels[:, :2] = -100  # a prompt
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


@pytest.fixture(scope="module")
def model():
    return build_tiny_model("probe-qwen2", seed=0)


def test_rollouts_equal_to_the_demonstrations_align_exactly(model):
    """R on the demonstrations with advantage +1 is S itself (ratio 1: -A log p); with -1, its
    opposite; so the cosines are +1 and -1."""
    demos = batch(0, vocab=model.config.vocab_size)
    assert gradient_cosine(model, demos, {**demos, "advantages": torch.ones(3)}) == pytest.approx(1.0)
    assert gradient_cosine(model, demos, {**demos, "advantages": -torch.ones(3)}) == pytest.approx(-1.0)


def test_unrelated_rollouts_are_between(model):
    demos = batch(0, vocab=model.config.vocab_size)
    other = {**batch(1, vocab=model.config.vocab_size), "advantages": torch.tensor([1.0, -0.5, 0.8])}
    cos = gradient_cosine(model, demos, other)
    assert -0.99 < cos < 0.99
