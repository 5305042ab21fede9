"""Typed configs, validated once at the edge: unknown keys, wrong types and impossible
combinations fail at load with the field's path named and what was expected.

A pipeline is a sequence of stages declared in a config file (YAML or JSON); a stage's `kind`
names a class registered with `ptbench.pipelines.stages.register`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ptbench.pipelines.losses import LOSS_AGGS


class ConfigError(ValueError):
    """A config that cannot run; the message names the field (`stages[1].group_size`)."""


def type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        (_, value_tp) = typing.get_args(tp) or (Any, Any)
        return {k: _coerce(v, value_tp, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass `cls` from `data`, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of "
                          f"{', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        path = f"{where}.{name}"
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}: required ({type_name(hints[name])})")
    try:
        obj = cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    return obj


def require(ok: bool, field_name: str, expected: str, got: Any) -> None:
    """Raise ConfigError('field: expected ..., got ...') unless `ok`."""
    if not ok:
        raise ConfigError(f"{field_name}: expected {expected}, got {got!r}")


@dataclass(frozen=True)
class TaskConfig:
    """Which task, with its options."""

    name: str
    """A task of ptbench.fixtures.tasks: arithmetic, generalpoints, math, cola."""
    options: dict = field(default_factory=dict)
    """Keyword options of the task (e.g. {"id_digits": 2})."""

    def __post_init__(self) -> None:
        from ptbench.fixtures.tasks import TASKS

        require(self.name in TASKS, "name", f"one of {sorted(TASKS)}", self.name)


@dataclass(frozen=True)
class BaseModelConfig:
    """For tiny models: the short, cached pretraining run that makes a task's "base model"."""

    steps: int = 300
    """Pretraining steps on the task's text (0: use the initial weights)."""
    lr: float = 1e-3
    batch_size: int = 64

    def __post_init__(self) -> None:
        require(self.steps >= 0, "steps", "an integer >= 0", self.steps)
        require(self.lr > 0, "lr", "a float > 0", self.lr)
        require(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)


@dataclass(frozen=True)
class StageConfig:
    """One stage. Which fields apply depends on `kind` (checked by the stage class)."""

    kind: str
    """sft, rl, luffy or srft."""
    steps: int
    """Optimizer steps in this stage."""
    lr: float = 1e-3
    batch_size: int = 64
    """SFT: demonstrations per step. RL: prompts per step (x group_size rollouts)."""
    micro_batch_size: int | None = None
    """Rows per forward/backward (gradient accumulation); default: the whole batch."""
    loss_agg: str = "token-mean"
    group_size: int = 8
    """RL: rollouts per prompt."""
    max_new_tokens: int = 8
    temperature: float = 1.0
    clip_eps: float = 0.2
    clip_eps_high: float | None = None
    kl_coef: float = 0.0
    advantage_scale: str = "std"
    """'std' (GRPO) or 'none' (Dr. GRPO, LUFFY)."""
    off_policy_per_group: int = 1
    """LUFFY: demonstrations in each group (7 + 1 in the paper)."""
    shaping_gamma: float = 0.1
    budget_steps: int | None = None
    """Truncated RL: stop after this many steps (<= steps)."""
    budget_flops: float | None = None
    """Stop this stage once the run's FLOPs (every stage so far, see `flops`) reach this."""
    num_iterations: int = 1
    """RL: passes over each rollout batch (PPO epochs, TRL's `num_iterations`). From the second
    update on, the ratio to the sampling policy differs from 1 and clipping acts."""
    mini_batches: int = 1
    """RL: optimizer updates per pass, each on an equal share of the batch's groups. A stage
    step (one rollout batch) takes num_iterations x mini_batches updates."""
    generation: str = "ptbench"
    """RL rollouts: 'ptbench' (ptbench's sampler, the same for both backends), 'trl' (TRL's
    GRPOTrainer samples prompts and generates and scores completions itself; backend trl) or
    'vllm' (the same through TRL's colocated vLLM; needs vllm and a GPU)."""
    max_grad_norm: float | None = 1.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    """'constant' or 'cosine' (to 0 at the last step), after `warmup_steps` of linear warmup."""

    def __post_init__(self) -> None:
        require(self.steps >= 1, "steps", "an integer >= 1", self.steps)
        require(self.lr > 0, "lr", "a float > 0", self.lr)
        require(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        if self.micro_batch_size is not None:
            require(self.micro_batch_size >= 1, "micro_batch_size", "an integer >= 1",
                    self.micro_batch_size)
        require(self.loss_agg in LOSS_AGGS, "loss_agg", f"one of {LOSS_AGGS}", self.loss_agg)
        require(self.lr_schedule in ("constant", "cosine"), "lr_schedule", "'constant' or 'cosine'",
                self.lr_schedule)
        require(0 <= self.warmup_steps < self.steps, "warmup_steps",
                f"an integer between 0 and steps - 1 ({self.steps - 1})", self.warmup_steps)
        require(self.advantage_scale in ("std", "none"), "advantage_scale", "'std' or 'none'",
                self.advantage_scale)
        if self.kind in ("rl", "luffy", "srft"):
            require(self.group_size >= 2, "group_size",
                    "an integer >= 2 (group-normalized advantages need two rollouts)", self.group_size)
            require(self.max_new_tokens >= 1, "max_new_tokens", "an integer >= 1", self.max_new_tokens)
            require(self.temperature > 0, "temperature", "a float > 0", self.temperature)
        require(self.generation in ("ptbench", "trl", "vllm"), "generation",
                "'ptbench', 'trl' or 'vllm'", self.generation)
        if self.generation != "ptbench":
            require(self.kind == "rl", "generation", f"'ptbench' for a {self.kind!r} stage",
                    self.generation)
        require(self.num_iterations >= 1, "num_iterations", "an integer >= 1", self.num_iterations)
        require(self.mini_batches >= 1 and self.batch_size % self.mini_batches == 0, "mini_batches",
                f"an integer >= 1 dividing batch_size ({self.batch_size})", self.mini_batches)
        if self.kind not in ("rl", "luffy"):
            for name in ("num_iterations", "mini_batches"):
                require(getattr(self, name) == 1, name,
                        f"1 (a {self.kind!r} stage takes one update per batch)", getattr(self, name))
        if self.kind == "luffy":
            require(1 <= self.off_policy_per_group < self.group_size, "off_policy_per_group",
                    f"between 1 and group_size - 1 ({self.group_size - 1})", self.off_policy_per_group)
        if self.budget_steps is not None:
            require(1 <= self.budget_steps <= self.steps, "budget_steps",
                    f"an integer between 1 and the stage's steps ({self.steps})", self.budget_steps)
        if self.budget_flops is not None:
            require(self.budget_flops > 0, "budget_flops", "a float > 0", self.budget_flops)


@dataclass(frozen=True)
class EvalConfig:
    """When and how much to evaluate."""

    every: int = 50
    n_id: int = 200
    n_ood: int = 200
    n_demos: int = 64
    """Held-out demonstrations whose SFT cross-entropy is tracked (during RL too)."""
    n_reward: int = 64
    """Prompts whose sampled reward is tracked (during SFT too)."""
    max_new_tokens: int | None = None
    n_val: int = 0
    """Validation problems whose greedy accuracy is tracked (`eval/val_accuracy`), for choosing
    hyperparameters; 0: not measured."""
    at_flops: list[float] = field(default_factory=list)
    """Also evaluate at the first step at or past each of these run FLOPs totals (the budget
    points of an equal-compute comparison)."""
    at_steps: list[int] = field(default_factory=list)
    """Also evaluate after each of these optimizer steps, counted over all stages (the budget
    points of a comparison in steps)."""

    def __post_init__(self) -> None:
        require(self.every >= 1, "every", "an integer >= 1", self.every)
        for name in ("n_id", "n_ood", "n_demos", "n_reward", "n_val"):
            require(getattr(self, name) >= 0, name, "an integer >= 0", getattr(self, name))
        require(all(x > 0 for x in self.at_flops) and list(self.at_flops) == sorted(self.at_flops),
                "at_flops", "increasing FLOPs totals > 0", self.at_flops)
        require(all(x > 0 for x in self.at_steps) and list(self.at_steps) == sorted(self.at_steps),
                "at_steps", "increasing step counts > 0", self.at_steps)


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Coupling diagnostics measured at every eval point (`ptbench.pipelines.diagnostics`)."""

    n_prompts: int = 16
    """Fixed held-out probe prompts whose rollouts give the RL-objective gradient."""
    group_size: int = 8
    """Rollouts per probe prompt in each of the two independent gradient estimates."""
    temperature: float = 1.0

    def __post_init__(self) -> None:
        require(self.n_prompts >= 1, "n_prompts", "an integer >= 1", self.n_prompts)
        require(self.group_size >= 2, "group_size",
                "an integer >= 2 (the leave-one-out baseline needs two rollouts)", self.group_size)
        require(self.temperature > 0, "temperature", "a float > 0", self.temperature)


@dataclass(frozen=True)
class DeepSpeedConfig:
    """Train every stage under a DeepSpeed engine (either backend)."""

    zero_stage: int = 2
    """0 (plain data parallel), 1 (optimizer states partitioned) or 2 (and gradients). ZeRO-3
    partitions the weights themselves, which the runner's evaluation and checkpoints read
    whole; it is refused."""
    offload_optimizer: bool = False
    """Keep the optimizer states (and the update) on the CPU; ZeRO 1 or 2 only."""

    def __post_init__(self) -> None:
        require(self.zero_stage in (0, 1, 2), "zero_stage",
                "0, 1 or 2 (ZeRO-3 partitions the weights, which the runner reads whole)",
                self.zero_stage)
        if self.offload_optimizer:
            require(self.zero_stage >= 1, "offload_optimizer",
                    "false at zero_stage 0 (offloading needs ZeRO 1 or 2)", self.offload_optimizer)


@dataclass(frozen=True)
class PipelineConfig:
    """A whole post-training pipeline: a model, a task, and stages in order."""

    name: str
    model: str
    """`tiny:<preset>`, a local path or a hub id."""
    task: TaskConfig
    stages: list[StageConfig]
    seed: int = 0
    backend: str = "native"
    """A registered backend (`ptbench.pipelines.backends`): 'native' (ptbench.pipelines.losses)
    or 'trl' (TRL's trainers and losses). Every stage is checked against it at load time."""
    base: BaseModelConfig = field(default_factory=BaseModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint_every: int = 0
    """Also checkpoint every K steps inside a stage (0: only at stage boundaries)."""
    dtype: str = "auto"
    """Training precision. 'auto': bfloat16 on a CUDA device that supports it, else float32.
    bfloat16 under DeepSpeed is its bf16 mode (bf16 weights, fp32 master weights in the
    optimizer); without DeepSpeed, fp32 weights with bf16 autocast (mixed precision)."""
    deepspeed: DeepSpeedConfig | None = None
    """Train under DeepSpeed ZeRO (native: ptbench's engine; trl: the trainer's, through
    accelerate); none: plain data parallelism."""
    diagnostics: DiagnosticsConfig | None = None
    """Measure the coupling diagnostics (gradient misalignment, gradient norms, smoothness) at
    every eval point; none: not measured."""
    description: str = ""
    hardware: dict = field(default_factory=dict)
    """Informational (GPUs, launcher, vLLM) for paper configs; not used on CPU."""

    def __post_init__(self) -> None:
        from ptbench.pipelines.backends import get_backend
        from ptbench.pipelines.stages import stage_class

        require(len(self.stages) >= 1, "stages", "at least one stage", self.stages)
        require(self.dtype in ("auto", "float32", "bfloat16"), "dtype",
                "'auto', 'float32' or 'bfloat16'", self.dtype)
        require(self.checkpoint_every >= 0, "checkpoint_every", "an integer >= 0",
                self.checkpoint_every)
        if self.model.startswith("tiny:"):
            from ptbench.fixtures.models import TINY_PRESETS

            require(self.model.removeprefix("tiny:") in TINY_PRESETS, "model",
                    f"'tiny:' + one of {sorted(TINY_PRESETS)}", self.model)
        if self.diagnostics is not None:
            require(self.deepspeed is None, "diagnostics",
                    "none under deepspeed (its gradient hooks own the parameters' gradients)",
                    self.diagnostics)
        backend = get_backend(self.backend)
        for i, stage in enumerate(self.stages):
            stage_class(stage.kind, i).check(self, i)
            if stage.kind not in backend.stage_kinds:
                raise ConfigError(f"stages[{i}].kind: the {backend.name!r} backend has no "
                                  f"{stage.kind!r} stage (it trains {sorted(backend.stage_kinds)}); "
                                  "use backend: native")
        backend.check(self)


def read_mapping(path: str | Path, what: str = "config") -> Any:
    """The YAML or JSON content of `path` (a ConfigError naming `what` when it is missing)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what}: no such file {path}")
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def load_file(cls: type, path: str | Path, overrides: Sequence[str] = (), what: str = "config"
              ) -> Any:
    """Dataclass `cls` from a YAML or JSON file, `--set key.path=value` overrides applied,
    validated; errors name the file and the field."""
    data = read_mapping(path, what)
    if overrides:
        from ptbench.pipelines.overrides import apply_overrides

        data = apply_overrides(data, overrides, cls)
    try:
        return from_dict(cls, data, what)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> PipelineConfig:
    """Read a YAML or JSON pipeline config, apply `--set key.path=value` overrides, validate."""
    return load_file(PipelineConfig, path, overrides)
