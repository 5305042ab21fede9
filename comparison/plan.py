"""`ptbench compare --dry-run`: what a comparison will run, and what it will cost, before it
runs: trials per phase, an upper bound on each trial's FLOPs, and the model-state memory per GPU.

Memory per GPU counts model states only (activations and the KV cache depend on batch and
length and are left out): mixed-precision AdamW keeps, per parameter, 2 bytes of bf16 weights,
2 of gradients and 12 of fp32 master weights and two moments (16 in all). ZeRO-1 shards the 12
over the GPUs, ZeRO-2 also the gradients; CPU offload moves the 12 off the GPU; fp32 training
keeps 4 + 4 + 8. A KL reference model adds its weights.

Offline, the model's shape and the task's lengths come from `shapes` (published config.json
values, assumed lengths), and the plan says which.
"""

from __future__ import annotations

from ptbench.comparison.config import Comparison, search_points
from ptbench.comparison.shapes import resolve_shape, task_lengths
from ptbench.pipelines.config import PipelineConfig
from ptbench.pipelines.estimate import pipeline_flops
from ptbench.pipelines.flops import ModelShape


def parameters(shape: ModelShape) -> int:
    """Matmul weights plus the input embedding (counted again: untied in large models)."""
    return shape.matmul_params + shape.vocab_size * shape.hidden_size


def state_bytes_per_gpu(config: PipelineConfig, params: int, gpus: int) -> float:
    """Model-state bytes on each GPU (see the module docstring)."""
    bf16 = config.dtype != "float32"
    weights, grads, optimizer = (2, 2, 12) if bf16 else (4, 4, 8)
    ds = config.deepspeed
    stage = ds.zero_stage if ds is not None else 0
    if ds is not None and ds.offload_optimizer:
        optimizer = 0
    elif stage >= 1:
        optimizer /= gpus
    if stage >= 2:
        grads /= gpus
    reference = weights if any(s.kl_coef > 0 for s in config.stages) else 0
    return params * (weights + grads + optimizer + reference)


def gpus_of(config: PipelineConfig) -> int:
    return int(config.hardware.get("gpus", 1))


def trial_counts(comparison: Comparison) -> dict[str, int]:
    """Trials per pipeline over all phases: its search points, its other seeds, its bug runs."""
    cfg = comparison.config
    counts = {}
    for name, entry in cfg.pipelines.items():
        search = len(search_points(entry.search, cfg.search.trials, cfg.search.sample_seed))
        bugs = sum(len(cfg.seeds) for b in cfg.bugs if name in comparison.bug_pipelines(b))
        counts[name] = search + len(cfg.seeds) - 1 + bugs
    return counts


def print_plan(comparison: Comparison, say=print) -> None:
    """Say the plan: phases, then per pipeline its stages, budget, FLOPs bound and memory."""
    cfg = comparison.config
    trials = sum(len(search_points(e.search, cfg.search.trials, cfg.search.sample_seed))
                 for e in cfg.pipelines.values())
    finals = len(cfg.pipelines) * (len(cfg.seeds) - 1)
    bugs = sum(len(comparison.bug_pipelines(b)) * len(cfg.seeds) for b in cfg.bugs)
    say(f"{cfg.name}: {trials} search trial(s) on seed {cfg.search.seed}, {finals} seed run(s), "
        f"{bugs} bug-on run(s); budget points ({cfg.budget.unit}) {cfg.budget.points}")
    first = next(iter(comparison.base_configs.values()))
    lengths = task_lengths(first.task)
    say(f"  task {first.task.name}: longest prompt {lengths.value.prompt}, demonstration "
        f"{lengths.value.demonstration} tokens ({lengths.source})")
    counts, total = trial_counts(comparison), 0.0
    for name, config in comparison.base_configs.items():
        shape = resolve_shape(config.model)
        bound = sum(pipeline_flops(config, shape.value, lengths.value))
        runs_to = cfg.stop_point(name)
        spent = min(bound, runs_to) if cfg.budget.unit == "flops" else bound
        total += spent * counts[name]
        gpus = gpus_of(config)
        params = parameters(shape.value)
        memory = state_bytes_per_gpu(config, params, gpus) / 2**30
        stages = " -> ".join(f"{s.kind} x{s.steps}" for s in config.stages)
        say(f"  {name}: {stages}; runs to {runs_to:.3g} {cfg.budget.unit} (at most "
            f"{spent:.3g} FLOPs per trial, {spent / gpus:.3g} per GPU; {counts[name]} "
            f"trial(s)); {params / 1e6:.4g}M parameters, model states {memory:.3g} GiB per GPU "
            f"on {gpus} GPU(s)")
    models = {c.model for c in comparison.base_configs.values()}
    for model in sorted(models):
        say(f"  shape of {model}: {resolve_shape(model).source}")
    say(f"  all trials together: at most {total:.3g} FLOPs")
