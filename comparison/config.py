"""The comparison file: which pipelines, on which task, to which compute budgets, tuned how,
over which seeds, judged by which claims, and re-run with which bugs. Validated once, before
any training, naming the field and what was expected.

A pipeline entry points at an ordinary pipeline config; the comparison imposes on it the
shared task, base model, evaluation and seed, and sets its last stage to stop at the budget.
Search keys and bug settings are `--set` key paths of the pipeline config.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ptbench.pipelines.config import (
    BaseModelConfig,
    ConfigError,
    EvalConfig,
    PipelineConfig,
    TaskConfig,
    from_dict,
    load_file,
    read_mapping,
    require,
)
from ptbench.pipelines.overrides import apply_overrides

METRICS = ("id_accuracy", "ood_accuracy", "val_accuracy", "sampled_reward")
"""What claims and the search may read: `eval/<metric>` of the pipeline runs."""
CLAIM_KINDS = ("at_least", "fraction_of_gain")
VERDICTS = ("held", "not held", "inconclusive")


@dataclass(frozen=True)
class Budget:
    """The compute every pipeline is run to and evaluated at."""

    points: list[float]
    """Increasing budgets; every pipeline is evaluated at the first step at or past each."""
    unit: str = "flops"
    """'flops' (the run's FLOPs ledger: training, generation and extra forwards) or 'steps'
    (optimizer steps over all stages)."""

    def __post_init__(self) -> None:
        require(self.unit in ("flops", "steps"), "unit", "'flops' or 'steps'", self.unit)
        require(len(self.points) >= 1 and all(p > 0 for p in self.points)
                and list(self.points) == sorted(set(self.points)), "points",
                "a non-empty list of increasing budgets > 0", self.points)
        if self.unit == "steps":
            require(all(float(p).is_integer() for p in self.points), "points",
                    "whole numbers of steps", self.points)

    @property
    def last(self) -> float:
        return self.points[-1]


@dataclass(frozen=True)
class Search:
    """The tuning budget every method gets: the same number of trials, on one seed, chosen on
    the validation split at the method's last budget point."""

    trials: int = 3
    seed: int = 0
    """The seed the trials run on (its chosen trial is that seed's final run too)."""
    metric: str = "val_accuracy"
    sample_seed: int = 0
    """Seeds the draw of `trials` points from a space with more points than trials."""

    def __post_init__(self) -> None:
        require(self.trials >= 1, "trials", "an integer >= 1", self.trials)
        require(self.metric in METRICS, "metric", f"one of {METRICS}", self.metric)


@dataclass(frozen=True)
class PipelineEntry:
    """One method of the comparison."""

    config: str
    """A pipeline config file, relative to the comparison file."""
    search: dict[str, list] = field(default_factory=dict)
    """`--set` key path -> the values to try (a grid; `Search.trials` points of it are run)."""
    stop_at: float | None = None
    """Stop at this budget point instead of the last one (truncated pipelines)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """`--set` key path -> value, applied to every trial (before the search point)."""

    def __post_init__(self) -> None:
        for key, values in self.search.items():
            require(isinstance(values, list) and len(values) >= 1, f"search.{key}",
                    "a non-empty list of values to try", values)


@dataclass(frozen=True)
class Claim:
    """An ordering claim, declared with its margin before any run.

    at_least:          metric(a) >= metric(b) - delta at budget point `at`, paired over seeds.
    fraction_of_gain:  a's gain over its start >= `fraction` of b's gain, within delta:
                       gain(a) - fraction * gain(b) > -delta, each at its own last point (a may
                       stop earlier: it then used fewer FLOPs, which the result states).
    """

    name: str
    a: str
    b: str
    metric: str = "id_accuracy"
    kind: str = "at_least"
    delta: float = 0.0
    """The margin: >= 0 asks "a is not worse than b by more than delta" (non-inferiority); a
    negative delta asks "a beats b by more than |delta|" (superiority)."""
    at: float | None = None
    """at_least: the budget point (default: the last point both reach)."""
    fraction: float = 1.0
    expect: str = "inconclusive"
    """The verdict recorded when the comparison was committed: a different one fails the bench
    test (a change to report), whichever way it goes."""

    def __post_init__(self) -> None:
        require(self.kind in CLAIM_KINDS, "kind", f"one of {CLAIM_KINDS}", self.kind)
        require(self.metric in METRICS, "metric", f"one of {METRICS}", self.metric)
        require(0 < self.fraction <= 1, "fraction", "a float in (0, 1]", self.fraction)
        require(self.expect in VERDICTS, "expect", f"one of {VERDICTS}", self.expect)
        require(self.a != self.b, "b", f"a pipeline other than a ({self.a!r})", self.b)


@dataclass(frozen=True)
class Bug:
    """A framework bug switched on for the pipelines with an SFT stage."""

    name: str
    plant: str
    """A planted bug of `ptbench.fixtures.probes.plant`."""
    settings: dict[str, Any] = field(default_factory=dict)
    """`--set` key path -> value that the bug needs (e.g. DeepSpeed with CPU offload); the same
    settings with the bug off are what it is measured against."""
    micro_batch_size: int = 8
    """Every SFT stage accumulates gradients over batch_size / micro_batch_size micro-batches."""
    pipelines: list[str] = field(default_factory=list)
    """Default: every pipeline with an SFT stage."""

    def __post_init__(self) -> None:
        from ptbench.fixtures.probes.plant import PLANTS

        require(self.plant in PLANTS, "plant", f"one of {sorted(PLANTS)}", self.plant)
        require(self.micro_batch_size >= 1, "micro_batch_size", "an integer >= 1",
                self.micro_batch_size)


@dataclass(frozen=True)
class ComparisonConfig:
    """A whole comparison (see the module docstring)."""

    name: str
    task: TaskConfig
    budget: Budget
    pipelines: dict[str, PipelineEntry]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    search: Search = field(default_factory=Search)
    claims: list[Claim] = field(default_factory=list)
    bugs: list[Bug] = field(default_factory=list)
    model: str | None = None
    """Shared by every pipeline (default: the pipeline configs', which must then agree)."""
    base: BaseModelConfig | None = None
    eval: EvalConfig | None = None
    """Shared evaluation (n_val must be > 0: trials are chosen on it)."""
    min_gain: float = 0.2
    """'Learns': at least this ID accuracy gain over its starting point on every seed."""
    description: str = ""

    def __post_init__(self) -> None:
        require(len(self.pipelines) >= 2, "pipelines", "at least two pipelines", list(self.pipelines))
        require(len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds), "seeds",
                "distinct seeds", self.seeds)
        require(self.search.seed in self.seeds, "search.seed",
                f"one of the seeds {self.seeds}", self.search.seed)
        if self.eval is not None:
            require(self.eval.n_val > 0, "eval.n_val", "> 0 (trials are chosen on validation "
                    "accuracy)", self.eval.n_val)
        for name, entry in self.pipelines.items():
            if entry.stop_at is not None:
                require(entry.stop_at in self.budget.points, f"pipelines.{name}.stop_at",
                        f"one of the budget points {self.budget.points}", entry.stop_at)
        for i, claim in enumerate(self.claims):
            for side in ("a", "b"):
                require(getattr(claim, side) in self.pipelines, f"claims[{i}].{side}",
                        f"one of the pipelines {sorted(self.pipelines)}", getattr(claim, side))
            if claim.at is not None:
                require(claim.at in self.budget.points, f"claims[{i}].at",
                        f"one of the budget points {self.budget.points}", claim.at)
                for side in ("a", "b"):
                    stop = self.stop_point(getattr(claim, side))
                    require(claim.at <= stop, f"claims[{i}].at",
                            f"a point {getattr(claim, side)!r} reaches (it stops at {stop:g})",
                            claim.at)
        for i, bug in enumerate(self.bugs):
            for name in bug.pipelines:
                require(name in self.pipelines, f"bugs[{i}].pipelines",
                        f"pipelines of the comparison {sorted(self.pipelines)}", name)

    def stop_point(self, pipeline: str) -> float:
        """The budget point `pipeline` runs to."""
        return self.pipelines[pipeline].stop_at or self.budget.last


@dataclass(frozen=True)
class Comparison:
    """A validated comparison: its config, its file's folder, and every pipeline config it
    loaded (with the comparison's shared settings imposed)."""

    config: ComparisonConfig
    source: Path
    base_configs: dict[str, PipelineConfig]

    def pipeline_config(self, pipeline: str, *, seed: int, point: dict[str, Any] | None = None,
                        bug: Bug | None = None, handicap: dict[str, Any] | None = None
                        ) -> PipelineConfig:
        """The pipeline config of one trial: `pipeline` at search point `point` on `seed`, with
        `bug`'s settings (the plant itself is switched on by the trial), and a `handicap` (the
        planted reversals of the claim tests)."""
        return build_pipeline_config(self, pipeline, seed, point or {}, bug, handicap or {})

    def bug_pipelines(self, bug: Bug) -> list[str]:
        """The pipelines `bug` is switched on for: the named ones, or all with an SFT stage."""
        return bug.pipelines or [n for n, c in self.base_configs.items()
                                 if any(s.kind == "sft" for s in c.stages)]


def _setting(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def _raw_pipeline(cfg: ComparisonConfig, entry: PipelineEntry, source: Path, where: str) -> dict:
    path = (source.parent / entry.config).resolve()
    data = dict(read_mapping(path, f"{where}.config (a pipeline config)"))
    task = (data.get("task") or {}).get("name")
    if task != cfg.task.name:
        raise ConfigError(f"{where}.config: task {task!r} differs from the comparison's "
                          f"{cfg.task.name!r}; every pipeline of a comparison runs one task")
    for i, stage in enumerate(data.get("stages") or []):
        for key in ("budget_steps", "budget_flops"):
            if stage.get(key) is not None:
                raise ConfigError(
                    f"{where}.config: stages[{i}].{key} is set ({stage[key]}); the comparison "
                    f"owns the budget (budget.points, and stop_at for a truncated pipeline)")
    data["task"] = {"name": cfg.task.name, "options": dict(cfg.task.options)}
    if cfg.model is not None:
        data["model"] = cfg.model
    for section in ("base", "eval"):
        value = getattr(cfg, section)
        if value is not None:
            data[section] = {k: v for k, v in value.__dict__.items()}
    return data


def build_pipeline_config(comparison: Comparison, pipeline: str, seed: int, point: dict,
                          bug: Bug | None, handicap: dict) -> PipelineConfig:
    cfg, where = comparison.config, f"pipelines.{pipeline}"
    entry = cfg.pipelines[pipeline]
    data = _raw_pipeline(cfg, entry, comparison.source, where)
    data["seed"] = seed
    data["name"] = pipeline
    settings = [_setting(k, v) for k, v in {**entry.settings, **point}.items()]
    if bug is not None:
        settings += [_setting(k, v) for k, v in bug.settings.items()]
        settings += [_setting(f"stages.{i}.micro_batch_size", bug.micro_batch_size)
                     for i, s in enumerate(data["stages"]) if s.get("kind") == "sft"]
    settings += [_setting(k, v) for k, v in handicap.items()]
    try:
        data = apply_overrides(data, settings, PipelineConfig)
        stop = cfg.stop_point(pipeline)
        key = "at_flops" if cfg.budget.unit == "flops" else "at_steps"
        reached = [p if key == "at_flops" else int(p) for p in cfg.budget.points if p <= stop]
        data["eval"] = {**data.get("eval", {}), key: reached}
        data["stages"] = _stop_at_budget(data["stages"], cfg.budget.unit, stop, where)
        config = from_dict(PipelineConfig, data, "config")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return config


def _stop_at_budget(stages: list[dict], unit: str, stop: float, where: str) -> list[dict]:
    """The stages with the last one ending at the budget: at the FLOPs total `stop` (its steps
    stay a cap), or with its steps set so that all stages together take `stop` steps."""
    stages = [dict(s) for s in stages]
    if unit == "flops":
        stages[-1]["budget_flops"] = float(stop)
        return stages
    before = sum(int(s["steps"]) for s in stages[:-1])
    if before >= stop:
        raise ConfigError(f"stages: the stages before the last take {before} steps, at or past "
                          f"the budget of {stop:g} steps")
    stages[-1]["steps"] = int(stop) - before
    stages[-1].pop("budget_steps", None)
    return stages


def search_points(space: dict[str, list], trials: int, sample_seed: int) -> list[dict[str, Any]]:
    """`trials` points of the grid `space` (all of it when it has no more): grid order, or a
    seeded sample keeping grid order."""
    keys = sorted(space)
    grid = [dict(zip(keys, values, strict=True)) for values in
            itertools.product(*(space[k] for k in keys))]
    if len(grid) <= trials:
        return grid
    picked = sorted(random.Random(sample_seed).sample(range(len(grid)), trials))
    return [grid[i] for i in picked]


def load_comparison(path: str | Path, overrides: Sequence[str] = ()) -> Comparison:
    """Read a comparison file, apply `--set key.path=value` overrides, and validate it and every
    pipeline config and search point it implies, before any training."""
    path = Path(path)
    cfg = load_file(ComparisonConfig, path, overrides, "comparison")
    comparison = Comparison(cfg, path.resolve(), {})
    try:
        base = {name: comparison.pipeline_config(name, seed=cfg.search.seed) for name in cfg.pipelines}
        comparison = replace(comparison, base_configs=base)
        _check_shared(cfg, base)
        for name, entry in cfg.pipelines.items():
            _check_search(comparison, name, entry)
        for i, bug in enumerate(cfg.bugs):
            for name in comparison.bug_pipelines(bug):
                try:
                    comparison.pipeline_config(name, seed=cfg.search.seed, bug=bug)
                except ConfigError as exc:
                    raise ConfigError(f"bugs[{i}] ({bug.name}) on {exc}") from None
        from ptbench.comparison.budget import check_reachable

        check_reachable(comparison)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return comparison


def _check_shared(cfg: ComparisonConfig, configs: dict[str, PipelineConfig]) -> None:
    """Every pipeline runs the same model and backend (the task, base model and evaluation are
    imposed by the comparison)."""
    for attribute in ("model", "backend", "base", "eval"):
        values = {name: getattr(c, attribute) for name, c in configs.items()}
        if attribute == "eval":  # (the budget points a truncated pipeline reaches are fewer)
            values = {name: replace(v, at_flops=[], at_steps=[]) for name, v in values.items()}
        first_name, first = next(iter(values.items()))
        for name, value in values.items():
            if value != first:
                raise ConfigError(f"pipelines.{name}.config: {attribute} differs from "
                                  f"{first_name}'s ({value!r} vs {first!r}); a comparison runs "
                                  f"every pipeline on the same {attribute}")


def _check_search(comparison: Comparison, name: str, entry: PipelineEntry) -> None:
    cfg = comparison.config
    grid = search_points(entry.search, 10**9, 0)
    valid, errors = [], []
    for point in grid:
        try:
            comparison.pipeline_config(name, seed=cfg.search.seed, point=point)
            valid.append(point)
        except ConfigError as exc:
            errors.append(str(exc))
    if not valid:
        raise ConfigError(f"pipelines.{name}.search: no valid point; e.g. {errors[0]}")
    if len(valid) < len(grid):
        raise ConfigError(f"pipelines.{name}.search: {len(errors)} point(s) are invalid, e.g. "
                          f"{errors[0]}")
