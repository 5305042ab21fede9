"""ptbench.pipelines.flops: the formulas against FlopCounterMode on real tiny transformers models.

The formulas and the measured counts agree exactly (ratio 1.0000) where the same work is priced;
REL_TOL is the 5% bound the brief allows, and is not to be widened.
"""

from __future__ import annotations

import pytest
import torch

from ptbench.fixtures.models import TINY_PRESETS, build_tiny_model
from ptbench.pipelines.flops import (
    FlopsLedger,
    ModelShape,
    forward_flops,
    generation_flops,
    measure_flops,
    training_flops,
)

REL_TOL = 0.05
MODELS = ("probe-qwen2", "probe-llama", "qwen2-0.6m")
BATCHES = ((2, 16), (3, 40))
CASES = [(name, b, t) for name in MODELS for b, t in BATCHES]
GEN_CASES = [(name, b, p, k) for name in MODELS for b, p, k in ((2, 8, 6), (3, 20, 12))]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small run fastest on one thread, and do not slow down on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(one_thread):
    return {name: build_tiny_model(name) for name in MODELS}


def _ids(batch_size: int, seq_len: int, vocab: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch_size, seq_len), generator=gen)


def _assert_close(formula: int, measured: int) -> None:
    assert measured > 0
    assert abs(formula / measured - 1) <= REL_TOL, f"formula {formula} vs measured {measured}"


def _train_step(model, ids: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(ids, labels=ids).loss.backward()


def test_matmul_params_by_hand():
    shape = ModelShape.from_config(TINY_PRESETS["probe-qwen2"].config())
    # probe-qwen2: d=32, d_ff=64, 2 layers, 4 heads, 2 kv heads, head_dim 32/4=8, vocab 64.
    # q 32*32=1024, k 32*16=512, v 512, o 32*32=1024 -> 3072; MLP 3*32*64=6144 -> 9216/layer;
    # 2 layers 18432; LM head 64*32=2048 (tied, still a matmul) -> 20480.
    assert (shape.head_dim, shape.num_key_value_heads, shape.attn_dim) == (8, 2, 32)
    assert shape.layer_matmul_params == 9216
    assert shape.matmul_params == 20480
    # qwen2-0.6m: d=128, d_ff=256, 4 layers, head_dim 32, kv dim 64.
    # q 16384 + k 8192 + v 8192 + o 16384 + MLP 3*128*256=98304 -> 147456/layer; x4 = 589824;
    # LM head 64*128=8192 -> 598016.
    assert ModelShape.from_config(TINY_PRESETS["qwen2-0.6m"].config()).matmul_params == 598016


def test_model_shape_defaults_and_validation():
    shape = ModelShape(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                       num_attention_heads=4, vocab_size=10)
    assert (shape.num_key_value_heads, shape.head_dim, shape.kv_dim) == (4, 16, 64)
    explicit = ModelShape(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                          num_attention_heads=4, vocab_size=10, num_key_value_heads=1,
                          head_dim=32)
    assert (explicit.attn_dim, explicit.kv_dim) == (128, 32)
    # Non-square attention: q and o are d x d_attn, not d x d.
    assert explicit.layer_matmul_params == 2 * 64 * 128 + 2 * 64 * 32 + 3 * 64 * 128
    with pytest.raises(ValueError, match="num_key_value_heads"):
        ModelShape(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                   num_attention_heads=4, vocab_size=10, num_key_value_heads=3)
    with pytest.raises(ValueError, match="vocab_size"):
        ModelShape(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                   num_attention_heads=4, vocab_size=0)
    with pytest.raises(ValueError, match="seq_len"):
        forward_flops(shape, 1, -1)


def test_formula_terms():
    shape = ModelShape.from_config(TINY_PRESETS["probe-llama"].config())
    n, layers, d_attn = shape.matmul_params, shape.num_hidden_layers, shape.attn_dim
    b, t = 3, 10
    assert forward_flops(shape, b, t) == b * t * (2 * n + 4 * layers * t * d_attn)
    assert forward_flops(shape, b, t, causal=True) == b * (
        2 * n * t + 4 * layers * d_attn * t * (t + 1) // 2)
    assert training_flops(shape, b, t) == 3 * forward_flops(shape, b, t)
    # A causal forward is a token-by-token decode: token i attends to i positions.
    one_by_one = sum(2 * n + 4 * layers * i * d_attn for i in range(1, t + 1))
    assert forward_flops(shape, 1, t, causal=True) == one_by_one
    # Generation = prefill (logits of the last prompt position) + one-token decode steps.
    p, k = 7, 5
    body, head = shape.body_matmul_params, shape.head_matmul_params
    expected = 2 * body * p + 2 * head + 4 * layers * d_attn * p * p
    expected += sum(2 * n + 4 * layers * d_attn * (p + i) for i in range(1, k))
    assert generation_flops(shape, 2, p, k) == 2 * expected
    assert generation_flops(shape, 2, p, 0) == 0


# probe-qwen2 by hand (test_matmul_params_by_hand): N = 20480 = body 18432 + head 2048; 2 layers,
# d_attn = 32, so the attention of one (query, key) pair costs 4 * 2 * 32 = 256 FLOPs.
QWEN_FORWARD_2x16 = 1441792  # 2 * (2*20480*16 + 256*16*16) = 2 * (655360 + 65536)
QWEN_FORWARD_2x16_CAUSAL = 1380352  # 2 * (655360 + 256*136), 136 = 16*17/2 pairs
QWEN_TRAIN_2x16 = 4325376  # 3 * 1441792
QWEN_TRAIN_2x16_RECOMPUTE = 4390912  # 4325376 + 256 * (2*256 pairs) / 2 = + 65536
# 8-token prompt, 6 new tokens: 13 fed tokens through the body, the head 6 times, 64 prefill
# pairs + decode steps attending to 9..13 positions (55 pairs):
# 2 * (2*18432*13 + 2*2048*6 + 256*(64 + 55)) = 2 * (479232 + 24576 + 30464)
QWEN_GENERATE_2x8x6 = 1068544
QWEN_GENERATE_2x8x6_CAUSAL = 1054208  # causal prefill: 36 pairs instead of 64 -> 2 * 527104


def test_formulas_by_hand():
    shape = ModelShape.from_config(TINY_PRESETS["probe-qwen2"].config())
    assert forward_flops(shape, 2, 16) == QWEN_FORWARD_2x16
    assert forward_flops(shape, 2, 16, causal=True) == QWEN_FORWARD_2x16_CAUSAL
    assert training_flops(shape, 2, 16) == QWEN_TRAIN_2x16
    assert training_flops(shape, 2, 16, attn_recompute=True) == QWEN_TRAIN_2x16_RECOMPUTE
    # causal and recompute together: 3 * 1380352 + 256 * (2*136) / 2 = 4141056 + 34816
    assert training_flops(shape, 2, 16, causal=True, attn_recompute=True) == 4175872
    assert generation_flops(shape, 2, 8, 6) == QWEN_GENERATE_2x8x6
    assert generation_flops(shape, 2, 8, 6, causal=True) == QWEN_GENERATE_2x8x6_CAUSAL
    # One new token is the prefill alone: 2 * (2*18432*8 + 2*2048 + 256*64) = 2 * 315392
    assert generation_flops(shape, 2, 8, 1) == 630784


@pytest.mark.parametrize(("name", "batch_size", "seq_len"), CASES)
def test_forward_matches_flop_counter(models, name, batch_size, seq_len):
    model = models[name]
    shape = ModelShape.from_config(model.config)
    ids = _ids(batch_size, seq_len, shape.vocab_size)
    with torch.no_grad():
        measured = measure_flops(lambda: model(ids).logits)
    _assert_close(forward_flops(shape, batch_size, seq_len), measured)
    # Dense SDPA prices the same work as the formula: the count is exact.
    assert forward_flops(shape, batch_size, seq_len) == measured


@pytest.mark.parametrize(("name", "batch_size", "seq_len"), CASES)
def test_training_matches_flop_counter(models, name, batch_size, seq_len):
    model = models[name]
    shape = ModelShape.from_config(model.config)
    ids = _ids(batch_size, seq_len, shape.vocab_size)
    measured = measure_flops(_train_step, model, ids)
    _assert_close(training_flops(shape, batch_size, seq_len), measured)
    # SDPA's backward recomputes QK^T; with that charged the count is exact.
    assert training_flops(shape, batch_size, seq_len, attn_recompute=True) == measured


@pytest.mark.parametrize(("name", "batch_size", "seq_len"), [CASES[1], CASES[-1]])
def test_eager_attention_matches_without_sdpa_formula(name, batch_size, seq_len):
    """Eager attention is plain matmuls that FlopCounterMode prices itself: an independent check
    of the attention term, and of backward = 2 x forward when nothing is recomputed."""
    model = build_tiny_model(name)
    model.set_attn_implementation("eager")
    shape = ModelShape.from_config(model.config)
    ids = _ids(batch_size, seq_len, shape.vocab_size)
    with torch.no_grad():
        forward = measure_flops(lambda: model(ids).logits)
    train = measure_flops(_train_step, model, ids)
    assert forward == forward_flops(shape, batch_size, seq_len)
    assert train == training_flops(shape, batch_size, seq_len)


def _kv_cache_decode(model, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
    tokens = [out.logits[:, -1:].argmax(-1)]
    for _ in range(new_tokens - 1):
        out = model(input_ids=tokens[-1], past_key_values=out.past_key_values, use_cache=True)
        tokens.append(out.logits[:, -1:].argmax(-1))
    return torch.cat(tokens, dim=1)


@pytest.mark.parametrize(("name", "batch_size", "prompt_len", "new_tokens"), GEN_CASES)
def test_generation_matches_flop_counter(models, name, batch_size, prompt_len, new_tokens):
    model = models[name]
    shape = ModelShape.from_config(model.config)
    prompt = _ids(batch_size, prompt_len, shape.vocab_size)
    formula = generation_flops(shape, batch_size, prompt_len, new_tokens)
    with torch.no_grad():
        manual = measure_flops(_kv_cache_decode, model, prompt, new_tokens)
        generated = {}

        def run_generate() -> None:
            generated["ids"] = model.generate(
                prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0)

        via_generate = measure_flops(run_generate)
        manual_tokens = _kv_cache_decode(model, prompt, new_tokens)
    assert torch.equal(generated["ids"][:, prompt_len:], manual_tokens)
    _assert_close(formula, manual)
    _assert_close(formula, via_generate)
    # Exact, like the forward: an off-by-one in the decode context or in the LM-head count is
    # well inside REL_TOL.
    assert formula == manual == via_generate


def test_ledger():
    shape = ModelShape.from_config(TINY_PRESETS["probe-qwen2"].config())
    ledger = FlopsLedger()
    assert ledger.add_generation(shape, 2, 8, 6) == QWEN_GENERATE_2x8x6  # 1068544
    assert ledger.add_generation(shape, 2, 8, 6, causal=True) == QWEN_GENERATE_2x8x6_CAUSAL
    assert ledger.add_forward(shape, 2, 16) == QWEN_FORWARD_2x16  # 1441792
    assert ledger.add_forward(shape, 2, 16, causal=True) == QWEN_FORWARD_2x16_CAUSAL
    assert ledger.add_train(shape, 2, 16) == QWEN_TRAIN_2x16  # 4325376
    assert ledger.add_train(shape, 2, 16, attn_recompute=True) == QWEN_TRAIN_2x16_RECOMPUTE
    # generation 1068544 + 1054208 = 2122752; extra_forward 1441792 + 1380352 = 2822144;
    # train 4325376 + 4390912 = 8716288; total 2122752 + 2822144 + 8716288 = 13661184
    expected = {"train": 8716288, "generation": 2122752, "extra_forward": 2822144,
                "total": 13661184}
    assert (ledger.train, ledger.generation, ledger.extra_forward, ledger.total) == tuple(
        expected.values())
    assert ledger.to_dict() == expected
    other = FlopsLedger(train=1, generation=2, extra_forward=3)
    assert ledger.merged(other).to_dict() == {"train": 8716289, "generation": 2122754,
                                              "extra_forward": 2822147, "total": 13661190}
    assert ledger.to_dict() == expected, "merged() changes neither side"
    assert other.to_dict() == {"train": 1, "generation": 2, "extra_forward": 3, "total": 6}


def test_measure_flops_passes_arguments():
    a, b = torch.ones(3, 5), torch.ones(5, 7)
    assert measure_flops(torch.matmul, a, b) == 2 * 3 * 5 * 7
    assert measure_flops(lambda x, *, y: x @ y, a, y=b) == 2 * 3 * 5 * 7


def test_measure_flops_prices_sdpa_densely_with_gqa():
    """The CPU SDPA kernel, which stock FlopCounterMode prices at 0: QK^T + AV, dense even when
    causal; its backward recomputes QK^T (5 matmuls of the same size)."""
    b, h, h_kv, s_q, s_k, d = 2, 4, 2, 5, 7, 8
    q = torch.randn(b, h, s_q, d, requires_grad=True)
    k = torch.randn(b, h_kv, s_k, d, requires_grad=True)
    v = torch.randn(b, h_kv, s_k, d, requires_grad=True)

    def attend(is_causal: bool) -> torch.Tensor:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal,
                                                                enable_gqa=True)

    one_matmul = 2 * b * h * s_q * s_k * d
    assert measure_flops(attend, False) == 2 * one_matmul
    assert measure_flops(attend, True) == 2 * one_matmul
    assert measure_flops(lambda: attend(False).sum().backward()) == 7 * one_matmul
