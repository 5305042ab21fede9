"""Model shapes and task lengths for planning a comparison without the network.

The dry run and the budget check price FLOPs from a model's shape (its transformers config) and
a task's longest prompt and demonstration (its training rows). Offline, the hub config and the
hub dataset cannot be read; then the published config.json values below stand in for the
model, and `ASSUMED_LENGTHS` for the task, and the plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ptbench.pipelines.config import TaskConfig
from ptbench.pipelines.estimate import Lengths
from ptbench.pipelines.flops import ModelShape

CONFIG_SOURCE = "config.json of the model's hub repository, as published (recorded offline)"
PUBLISHED_CONFIGS: dict[str, dict[str, int]] = {
    # huggingface.co/Qwen/Qwen2.5-Math-7B/blob/main/config.json (Qwen2ForCausalLM; also
    # max_position_embeddings 4096, rope_theta 10000, tie_word_embeddings false).
    "Qwen/Qwen2.5-Math-7B": {"hidden_size": 3584, "intermediate_size": 18944,
                             "num_hidden_layers": 28, "num_attention_heads": 28,
                             "num_key_value_heads": 4, "vocab_size": 152064},
    # huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json (LlamaForCausalLM; also
    # head_dim 128, max_position_embeddings 131072, rope_theta 500000, tie_word_embeddings false).
    "meta-llama/Llama-3.1-8B": {"hidden_size": 4096, "intermediate_size": 14336,
                                "num_hidden_layers": 32, "num_attention_heads": 32,
                                "num_key_value_heads": 8, "vocab_size": 128256},
}
"""Shape fields of the paper models' config.json files, used when the hub cannot be read."""

ASSUMED_LENGTHS = Lengths(prompt=1024, demonstration=8192)
"""Longest token lengths assumed when a hub dataset cannot be read: a MATH problem in the CoT
chat prompt fits in 1024 tokens, and a demonstration in the paper's generation cap of 8192 new
tokens. An assumption for planning, not a measurement."""
ASSUMED_SHORTEST = Lengths(prompt=1, demonstration=1)
"""Shortest lengths assumed then: one token each, the floor that never refuses a budget."""


@dataclass(frozen=True)
class Resolved:
    """A value and where it came from (said by the dry run)."""

    value: object
    source: str


@lru_cache(maxsize=32)
def resolve_shape(model: str) -> Resolved:
    """The shape of `model` (a tiny preset, a local path or a hub id): from its transformers
    config, or, when that cannot be read (offline) and `model` is a paper model, from
    `PUBLISHED_CONFIGS`. Each model is looked up once per process."""
    if model.startswith("tiny:"):
        from ptbench.fixtures.models import TINY_PRESETS

        spec = TINY_PRESETS[model.removeprefix("tiny:")]
        return Resolved(ModelShape.from_config(spec.config()), "tiny preset")
    from transformers import AutoConfig

    try:
        return Resolved(ModelShape.from_config(AutoConfig.from_pretrained(model)),
                        "transformers config")
    except OSError as exc:  # offline, or no such repository / folder
        if model not in PUBLISHED_CONFIGS:
            raise
        reason = str(exc).splitlines()[0]
        return Resolved(ModelShape(**PUBLISHED_CONFIGS[model]),
                        f"{CONFIG_SOURCE}; the hub config could not be read: {reason}")


def hub_shape(model: str) -> ModelShape:
    """`resolve_shape(model)`'s shape."""
    return resolve_shape(model).value  # type: ignore[return-value]


def _hub_sources(task: TaskConfig) -> list[str]:
    from ptbench.fixtures.tasks.loading import is_local

    names = [task.options.get(k) for k in ("source", "train_source")]
    return [s for s in names if isinstance(s, str) and not is_local(s)]


def task_lengths(task: TaskConfig, seed: int = 0, *, shortest: bool = False) -> Resolved:
    """The task's longest `Lengths` (`Lengths.of_task`), or with `shortest` its lower bound
    (`Lengths.shortest_of_task`), from its training rows; when they come from the hub and
    cannot be read (offline), `ASSUMED_LENGTHS` or `ASSUMED_SHORTEST`. A local file that fails
    to load still raises."""
    from ptbench.fixtures.tasks import get_task

    measure = Lengths.shortest_of_task if shortest else Lengths.of_task
    try:
        return Resolved(measure(get_task(task.name, **task.options), seed), "measured")
    except OSError as exc:  # datasets' ConnectionError and hub errors are OSErrors
        hub = _hub_sources(task)
        if not hub:
            raise
        reason = str(exc).splitlines()[0]
        assumed = ASSUMED_SHORTEST if shortest else ASSUMED_LENGTHS
        return Resolved(assumed, f"assumed: {', '.join(hub)} could not be read: {reason}")
