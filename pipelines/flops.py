"""FLOPs accounting for training, generation and extra forward passes, to compare at equal compute.

Formula (dense decoder-only transformer; every count is a multiply-add counted as 2 FLOPs)::

    N_matmul = n_layers * (d * d_attn          # q_proj
                           + 2 * d * d_kv      # k_proj, v_proj (GQA: d_kv = n_kv_heads * head_dim)
                           + d_attn * d        # o_proj
                           + 3 * d * d_ff)     # SwiGLU gate_proj, up_proj, down_proj
               + vocab * d                     # LM head, counted even when tied to the embedding

    forward, per token attending to `ctx` positions = 2 * N_matmul + 2 * 2 * n_layers * ctx * d_attn

with d = hidden_size, d_attn = n_heads * head_dim, d_ff = intermediate_size. N_matmul is the
number of weights used in a matrix multiply per token; the embedding lookup is a gather, not a
matmul, so it is not counted. The attention term is QK^T plus AV (2 matmuls of 2 * ctx * d_attn
FLOPs each, per layer).

* `forward_flops` (one forward over B sequences of length T): every token attends to all T
  positions, ``ctx = T``, i.e. NO causal discount: this is what `FlopCounterMode` counts, since
  it prices the dense SDPA / attention matmuls, not the causal half a kernel may skip.
  ``causal=True`` charges token t (1-based) for t positions instead, T(T+1)/2 in all.
* `training_flops` = 3 x forward (the 6ND rule: backward ~ 2 x forward, weight plus input
  gradients). Flash/SDPA kernels recompute QK^T in their backward (5 attention matmuls instead of
  4); ``attn_recompute=True`` charges that (attention term x 3.5 instead of x 3), which is what
  `FlopCounterMode` reports for an SDPA backward.
* Extra forward passes (old / reference logprobs over prompt + response): 1 x forward.
* `generation_flops` (KV cache): a prefill of the P prompt tokens (dense attention by default,
  like `forward_flops`), then k - 1 decode steps, each one token attending to the current context
  (P + 1, ..., P + k - 1 positions); the LM head runs once per generated token (k times), never on
  the prompt positions, as in `transformers` `generate` and vLLM. Per sequence::

      2 * N_body * (P + k - 1) + 2 * N_head * k + 4 * n_layers * d_attn * (P*P + sum_{i<k} (P + i))

  with N_head = vocab * d and N_body = N_matmul - N_head.

Not counted, here or by `FlopCounterMode`: biases (Qwen2's q/k/v biases), norms, rotary
embeddings, activations, softmax, residual adds and the loss; they are O(d) per token against
O(d^2) for the matmuls. MoE layers are not modelled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "FlopsLedger",
    "ModelShape",
    "forward_flops",
    "generation_flops",
    "measure_flops",
    "training_flops",
]


@dataclass(frozen=True)
class ModelShape:
    """The shape of a dense decoder-only transformer, as far as its FLOPs go."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int
    num_key_value_heads: int | None = None
    """Defaults to num_attention_heads (no GQA)."""
    head_dim: int | None = None
    """Defaults to hidden_size // num_attention_heads."""

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelShape.{f.name}: expected a positive int, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                "ModelShape.num_key_value_heads: expected a divisor of num_attention_heads "
                f"({self.num_attention_heads}), got {self.num_key_value_heads}"
            )

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """Read the shape from a transformers config (its text config for multimodal ones)."""
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        return cls(
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            vocab_size=config.vocab_size,
            num_key_value_heads=getattr(config, "num_key_value_heads", None),
            head_dim=getattr(config, "head_dim", None),
        )

    @property
    def attn_dim(self) -> int:
        """d_attn = num_attention_heads * head_dim, the width of Q and of the attention output."""
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """num_key_value_heads * head_dim, the width of K and of V."""
        return self.num_key_value_heads * self.head_dim

    @property
    def layer_matmul_params(self) -> int:
        """Matmul weights of one decoder layer: q, k, v, o projections and the SwiGLU MLP."""
        d = self.hidden_size
        attention = 2 * d * self.attn_dim + 2 * d * self.kv_dim
        mlp = 3 * d * self.intermediate_size
        return attention + mlp

    @property
    def head_matmul_params(self) -> int:
        """LM head weights, vocab_size * hidden_size (counted even when tied)."""
        return self.vocab_size * self.hidden_size

    @property
    def body_matmul_params(self) -> int:
        """Matmul weights of all decoder layers (everything but the LM head)."""
        return self.num_hidden_layers * self.layer_matmul_params

    @property
    def matmul_params(self) -> int:
        """N_matmul: weights used in a matrix multiply per token, LM head included."""
        return self.body_matmul_params + self.head_matmul_params

    def attention_flops(self, query_tokens_times_keys: int) -> int:
        """QK^T + AV FLOPs of all layers for `query_tokens_times_keys` (query, key) pairs."""
        return 4 * self.num_hidden_layers * self.attn_dim * query_tokens_times_keys


def _check(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {value!r}")


def _attended_pairs(seq_len: int, causal: bool) -> int:
    """(query, key) pairs of one sequence: T*T dense, T(T+1)/2 causal."""
    return seq_len * (seq_len + 1) // 2 if causal else seq_len * seq_len


def forward_flops(shape: ModelShape, batch_size: int, seq_len: int, *,
                  causal: bool = False) -> int:
    """FLOPs of one forward over `batch_size` sequences of `seq_len` tokens, logits at every one.

    ``causal=False`` (default) prices dense attention, as `FlopCounterMode` does.
    """
    _check(batch_size=batch_size, seq_len=seq_len)
    per_seq = 2 * shape.matmul_params * seq_len + shape.attention_flops(
        _attended_pairs(seq_len, causal))
    return batch_size * per_seq


def training_flops(shape: ModelShape, batch_size: int, seq_len: int, *, causal: bool = False,
                   attn_recompute: bool = False) -> int:
    """FLOPs of a forward + backward over `batch_size` x `seq_len` tokens: 3 x `forward_flops`.

    ``attn_recompute=True`` adds the QK^T recomputation of flash/SDPA backward kernels (attention
    term x 3.5 instead of x 3), which `FlopCounterMode` counts for SDPA.
    """
    flops = 3 * forward_flops(shape, batch_size, seq_len, causal=causal)
    if attn_recompute:
        pairs = batch_size * _attended_pairs(seq_len, causal)
        flops += shape.attention_flops(pairs) // 2
    return flops


def generation_flops(shape: ModelShape, batch_size: int, prompt_len: int, new_tokens: int, *,
                     causal: bool = False) -> int:
    """FLOPs of generating `new_tokens` tokens after a `prompt_len` prompt with a KV cache.

    Prefill of the prompt (logits of its last position only), then ``new_tokens - 1`` decode
    steps, step i feeding one token that attends to ``prompt_len + i`` cached positions.
    ``causal`` applies to the prefill only; a decode step attends to its whole context anyway.
    Zero new tokens cost nothing.
    """
    _check(batch_size=batch_size, prompt_len=prompt_len, new_tokens=new_tokens)
    if new_tokens == 0:
        return 0
    steps = new_tokens - 1
    fed_tokens = prompt_len + steps
    # Decode step i (1..steps) attends to prompt_len + i positions.
    decode_pairs = steps * prompt_len + steps * (steps + 1) // 2
    per_seq = (
        2 * shape.body_matmul_params * fed_tokens
        + 2 * shape.head_matmul_params * new_tokens
        + shape.attention_flops(_attended_pairs(prompt_len, causal) + decode_pairs)
    )
    return batch_size * per_seq


@dataclass
class FlopsLedger:
    """Running FLOPs of a pipeline, split by kind of work; every `add_*` returns what it added."""

    train: int = 0
    """Forward + backward passes of the trained policy."""
    generation: int = 0
    """Rollouts (prefill + KV-cache decoding)."""
    extra_forward: int = 0
    """Forward-only passes: old-policy and reference logprobs, value or reward models."""

    def add_train(self, shape: ModelShape, batch_size: int, seq_len: int, *,
                  causal: bool = False, attn_recompute: bool = False) -> int:
        """Add `training_flops` of one micro-batch."""
        flops = training_flops(shape, batch_size, seq_len, causal=causal,
                               attn_recompute=attn_recompute)
        self.train += flops
        return flops

    def add_generation(self, shape: ModelShape, batch_size: int, prompt_len: int,
                       new_tokens: int, *, causal: bool = False) -> int:
        """Add `generation_flops` of one batch of rollouts."""
        flops = generation_flops(shape, batch_size, prompt_len, new_tokens, causal=causal)
        self.generation += flops
        return flops

    def add_forward(self, shape: ModelShape, batch_size: int, seq_len: int, *,
                    causal: bool = False) -> int:
        """Add `forward_flops` of one forward-only pass (old or reference logprobs)."""
        flops = forward_flops(shape, batch_size, seq_len, causal=causal)
        self.extra_forward += flops
        return flops

    @property
    def total(self) -> int:
        """train + generation + extra_forward."""
        return self.train + self.generation + self.extra_forward

    def to_dict(self) -> dict[str, int]:
        """The three counters and their total, for reports."""
        return {"train": self.train, "generation": self.generation,
                "extra_forward": self.extra_forward, "total": self.total}

    def merged(self, other: FlopsLedger) -> FlopsLedger:
        """A new ledger holding the sums of both (e.g. over ranks or stages); neither changes."""
        return FlopsLedger(train=self.train + other.train,
                           generation=self.generation + other.generation,
                           extra_forward=self.extra_forward + other.extra_forward)


def _sdpa_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Dense QK^T + AV, GQA allowed (key/value may have fewer heads than the query)."""
    b, h, s_q, d_q = query_shape
    s_k, d_v = key_shape[2], value_shape[3]
    return 2 * b * h * s_q * s_k * (d_q + d_v)


def _sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                   **kwargs) -> int:
    """Recomputed QK^T, dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q (as torch's SDPA one)."""
    b, h, s_q, d_q = query_shape
    s_k, d_v = key_shape[2], value_shape[3]
    return 2 * b * h * s_q * s_k * (3 * d_q + 2 * d_v)


# The fused CPU SDPA kernel that `F.scaled_dot_product_attention` dispatches to on CPU; torch's
# FlopCounterMode has formulas for the CUDA ones (flash, efficient, cuDNN) but not for it, and
# counts it as 0 FLOPs. Same argument order as the CUDA kernels.
_CPU_SDPA_FORMULAS = {
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa_forward,
    "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_backward,
}


def _missing_formulas() -> dict[Any, Callable[..., int]]:
    known = FlopCounterMode(display=False).flop_registry
    mapping: dict[Any, Callable[..., int]] = {}
    for name, formula in _CPU_SDPA_FORMULAS.items():
        packet = getattr(torch.ops.aten, name, None)
        if packet is not None and packet not in known:
            mapping[packet] = formula
    return mapping


def measure_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Run ``fn(*args, **kwargs)`` under `FlopCounterMode` and return the FLOPs it counted.

    Matmuls and SDPA only (as the formulas above). Adds the dense SDPA formula for the fused CPU
    kernel, which `FlopCounterMode` does not price itself.
    """
    counter = FlopCounterMode(display=False, custom_mapping=_missing_formulas())
    with counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()
