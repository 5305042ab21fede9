"""Run a pipeline config end to end: base model, stages in order, eval points, checkpoints.

    ptbench run configs/tiny/sft_then_rl-arithmetic.yaml --out runs/x [--set stages.1.steps=20]

Writes `metrics.jsonl` (one row per measurement, see `tracking`) and checkpoints (see
`checkpoint`) at every stage boundary and every `checkpoint_every` steps. `--resume` continues a
killed run from its last checkpoint with identical results on CPU. The loop is below; the pieces
it composes each own one idea: `base_model` (the starting policy), `evaluation` (held-out data,
eval points), `diagnostics` (gradient coupling at eval points, when switched on), `accounting`
(FLOPs and tokens), `checkpoint` (the saved record), `schedule` (lr),
`process` (seeds and threads, restored at the end), the stages and the backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tqdm import tqdm

from ptbench.fixtures.models.devices import default_device, default_dtype
from ptbench.fixtures.models.tiny import cache_root
from ptbench.fixtures.tasks import get_task
from ptbench.pipelines import distributed
from ptbench.pipelines.accounting import Counters
from ptbench.pipelines.backends import get_backend
from ptbench.pipelines.base_model import load_base_model
from ptbench.pipelines.checkpoint import (
    Checkpoint,
    RunnerState,
    latest_checkpoint,
    load_checkpoint,
    restore_rngs,
    restore_stage,
    save_checkpoint,
)
from ptbench.pipelines.config import ConfigError, PipelineConfig
from ptbench.pipelines.context import RunContext
from ptbench.pipelines.diagnostics import Diagnostics
from ptbench.pipelines.evaluation import Anchor, HeldOut, eval_max_new_tokens, evaluate
from ptbench.pipelines.flops import FlopsLedger, ModelShape
from ptbench.pipelines.process import run_process_state
from ptbench.pipelines.schedule import set_lr
from ptbench.pipelines.stages import build_stage
from ptbench.pipelines.tracking import Tracker

TRAIN_POOL = 4000
"""Training examples a run draws from (all of them when a task has fewer, `task.size`)."""


def train_pool(task, seed: int) -> list:
    """The run's training examples: TRAIN_POOL of them, or every one of a smaller task."""
    size = task.size("train", seed) if hasattr(task, "size") else TRAIN_POOL
    return task.examples("train", min(TRAIN_POOL, size), seed=seed)


def check_launch(config: PipelineConfig, world: int) -> None:
    """What the launch decides: every stage's batch (and its RL mini-batches) splits evenly over
    the ranks, and the backend's own launch checks (devices, optional packages)."""
    for i, stage in enumerate(config.stages):
        if world > 1 and stage.batch_size % (world * stage.mini_batches):
            raise ConfigError(f"stages[{i}].batch_size: expected a multiple of the world size "
                              f"{world} x mini_batches {stage.mini_batches}, got {stage.batch_size}")
    get_backend(config.backend).check_launch(config, world)


def reduce_step_metrics(metrics: dict[str, float | None]) -> dict[str, float | None]:
    """A step's metrics averaged over ranks. Rewards and shares of groups are means over equal
    shares of the batch; losses and grad norms are the whole step's already, the same on every
    rank, and stay."""
    if distributed.world_size() == 1:
        return metrics
    names = sorted(k for k, v in metrics.items() if v is not None)
    totals = distributed.sum_over_ranks([float(metrics[k]) for k in names])
    w = distributed.world_size()
    return {**metrics, **{k: t / w for k, t in zip(names, totals, strict=True)}}


def start_context(config: PipelineConfig, cache: Path) -> RunContext:
    """The task, the starting policy on this machine's device and precision, the counters."""
    task = get_task(config.task.name, **config.task.options)
    device = default_device()
    bf16 = {"auto": default_dtype(device) == torch.bfloat16, "bfloat16": True,
            "float32": False}[config.dtype]
    # Weights are float32 unless DeepSpeed's bf16 mode casts them anyway (then load them so).
    weights = torch.bfloat16 if bf16 and config.deepspeed is not None else torch.float32
    model, tokenizer = load_base_model(config, task, cache, device, weights)
    return RunContext(config, get_backend(config.backend), model, tokenizer, task,
                      train_pool(task, config.seed),
                      torch.Generator().manual_seed(config.seed),
                      Counters(ModelShape.from_config(model.config), tokenizer), bf16=bf16)


def crossed(points: list[float], before: float, after: float) -> bool:
    """Whether a step that took the run's FLOPs from `before` to `after` reached a point."""
    return any(before < p <= after for p in points)


def run_pipeline(config: PipelineConfig, out: str | os.PathLike, *, resume: bool = False,
                 stop_after: int | None = None, cache: str | os.PathLike | None = None) -> Path:
    """Run `config`; write metrics and checkpoints under `out`. Returns the metrics file.

    `stop_after` stops (as if killed) after that many global steps, for resume tests.
    """
    out = Path(out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    distributed.init_from_env()
    check_launch(config, distributed.world_size())
    cache = Path(cache or cache_root()) / "base"
    cache.mkdir(parents=True, exist_ok=True)
    with run_process_state(config.seed):
        ctx = start_context(config, cache)
        return _run(ctx, out, resume, stop_after)


def resume_from(ctx: RunContext, path: Path) -> Checkpoint:
    """Put the checkpoint's weights, data generator and counters into `ctx`; its record."""
    model, saved = load_checkpoint(path)
    ctx.model.load_state_dict(model.state_dict())
    ctx.generator.set_state(saved.generator)
    ctx.counters.tokens = saved.tokens
    ctx.counters.ledger = FlopsLedger(**{k: v for k, v in saved.ledger.items() if k != "total"})
    return saved


def _run(ctx: RunContext, out: Path, resume: bool, stop_after: int | None) -> Path:
    config, main_rank = ctx.config, distributed.is_main()
    base = Anchor.of(ctx.model)
    held_out = HeldOut.draw(ctx.task, ctx.tokenizer, config.eval, config.seed)
    diagnostics = (Diagnostics(config.diagnostics, ctx.task, config.seed)
                   if config.diagnostics is not None else None)
    tracker = Tracker(out / "metrics.jsonl", config.name, config.seed)  # written by rank 0 only
    state, saved, path = RunnerState(), None, latest_checkpoint(out) if resume else None
    if path is not None:
        saved = resume_from(ctx, path)
        state = saved.state
        # Rows logged after the checkpoint are redone; a stage's step-0 eval is redone with it.
        resume_at = (state.stage_index, state.step or -1)
        kept = [r for r in Tracker.read(tracker.path) if (r.stage_index, r.step) <= resume_at]
        tracker = Tracker(tracker.path, config.name, config.seed, kept)
        if main_rank:
            tracker.flush()

    for index in range(state.stage_index, len(config.stages)):
        sc, stage = config.stages[index], build_stage(config.stages[index], index)
        first = state.step if index == state.stage_index else 0
        start = Anchor.of(ctx.model, saved.stage_start if saved is not None else None)
        ctx.stage_start = start.model
        stage.setup(ctx)
        if saved is not None:
            if first > 0:
                restore_stage(stage.train, saved, path)
            restore_rngs(saved)
            saved = None
        last = min(sc.steps, sc.budget_steps or sc.steps)
        name = f"{index}:{sc.kind}"

        def log(at: RunnerState, metrics: dict, evaluated: bool, _name=name, _start=start):
            if evaluated and main_rank:
                with ctx.precision():
                    metrics.update(evaluate(ctx, held_out, base, _start))
                    if diagnostics is not None:
                        metrics.update(diagnostics.measure(ctx, held_out.demos,
                                                           eval_max_new_tokens(config), at.global_step))
            if main_rank:
                flops = ctx.counters.ledger
                tracker.log(_name, at.stage_index, at.step, at.global_step,
                            {**metrics, **{f"flops/{k}": v for k, v in flops.to_dict().items()}},
                            flops.total, ctx.counters.tokens)
            if evaluated:
                distributed.barrier()

        if first == 0:
            log(RunnerState(index, 0, state.global_step), {}, evaluated=True)
        for step in tqdm(range(first + 1, last + 1), desc=name, initial=first, total=last,
                         disable=not main_rank):
            set_lr(stage.train.optimizer, sc, step)
            with ctx.counters.global_step(), ctx.precision():
                metrics = reduce_step_metrics(stage.step(ctx, step))
            state = RunnerState(index, step, state.global_step + 1)
            total = ctx.counters.ledger.total
            over_budget = sc.budget_flops is not None and total >= sc.budget_flops
            ends = over_budget or step == last
            at_point = (crossed(config.eval.at_flops, total - ctx.counters.last_step_flops, total)
                        or state.global_step in config.eval.at_steps)
            log(state, metrics, evaluated=step % config.eval.every == 0 or ends or at_point)
            if ends:
                save_checkpoint(out, ctx, RunnerState(index + 1, 0, state.global_step))
            elif config.checkpoint_every and step % config.checkpoint_every == 0:
                save_checkpoint(out, ctx, state, stage.train, start.model)
            if stop_after is not None and state.global_step >= stop_after:
                return tracker.path
            if over_budget:
                break
        stage.train.close()
        state = RunnerState(index + 1, 0, state.global_step)
    return tracker.path
