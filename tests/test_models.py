"""Tiny models and tokenizers: real architectures, seeded, reloaded through from_pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ptbench.fixtures.models import (
    build_tiny_model,
    load_causal_lm,
    load_tokenizer,
    resolve_model,
    tiny_model_dir,
    train_tokenizer,
)


def test_same_seed_same_weights_and_different_seed_differs():
    a, b, c = (build_tiny_model("probe-qwen2", seed=s) for s in (0, 0, 1))
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), n
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


@pytest.mark.parametrize("preset", ["probe-qwen2", "probe-llama"])
def test_save_and_reload_through_from_pretrained(tmp_path, preset):
    tok = train_tokenizer(["12+34=46", "7*8=56", "(1+2)*3=9"], vocab_size=32)
    path = tiny_model_dir(preset, seed=3, tokenizer=tok, root=tmp_path)
    assert tiny_model_dir(preset, seed=3, tokenizer=tok, root=tmp_path) == path, "cached"
    model = load_causal_lm(str(path), device="cpu")
    assert model.config.model_type == preset.split("-")[1]
    assert model.config.vocab_size == len(tok)
    assert model.dtype == torch.float32
    tok2 = load_tokenizer(str(path))
    ids = tok2("12+3=15")["input_ids"]
    assert tok2.decode(ids) == "12+3=15"
    out = model(input_ids=torch.tensor([ids])).logits
    assert out.shape == (1, len(ids), len(tok))
    assert not list(tmp_path.glob(".building-*")), "no half-built directory left behind"


def test_tokenizer_is_character_level_and_deterministic():
    corpus = ["3 + 4 = 7", "10 - 2 = 8"]
    a, b = train_tokenizer(corpus, vocab_size=40), train_tokenizer(corpus, vocab_size=40)
    assert a.get_vocab() == b.get_vocab()
    assert a.tokenize("3 + 4") == ["3", " ", "+", " ", "4"]
    assert a.pad_token == "<pad>" and a.eos_token == "<eos>"


def test_tiny_preset_names_resolve_and_bad_names_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("PTBENCH_CACHE", str(tmp_path))
    path = Path(resolve_model("tiny:probe-qwen2"))
    # built once, under $PTBENCH_CACHE/models, and one directory per seed
    assert path.parent == tmp_path / "models" and path.name.startswith("tiny-qwen2-")
    assert (path / "config.json").exists()
    assert resolve_model("tiny:probe-qwen2") == str(path)
    assert resolve_model("tiny:probe-qwen2", seed=1) != str(path)
    loaded = load_causal_lm("tiny:probe-qwen2", seed=1, device="cpu")
    built = build_tiny_model("probe-qwen2", seed=1)
    for (name, a), b in zip(loaded.named_parameters(), built.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert resolve_model("Qwen/Qwen2.5-Math-7B") == "Qwen/Qwen2.5-Math-7B"
    with pytest.raises(ValueError, match="model: expected 'tiny:' followed by one of"):
        resolve_model("tiny:gpt5")
    with pytest.raises(ValueError, match="spec: expected one of"):
        build_tiny_model("huge")
