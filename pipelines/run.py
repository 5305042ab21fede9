"""Run a pipeline config end to end: base model, stages in order, eval points, checkpoints.

    python -m ptbench.pipelines.run configs/tiny/sft_then_rl-arithmetic.yaml --out runs/x

Writes `metrics.jsonl` (one row per measurement, see `tracking`) and checkpoints
(`checkpoints/step-XXXXXX/`: HF `save_pretrained` model and tokenizer, optimizer state, RNG
state, runner state) at every stage boundary and every `checkpoint_every` steps. `--resume`
continues a killed run from its last checkpoint with identical results on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ptbench.fixtures.models import TINY_PRESETS, build_tiny_model, load_causal_lm, train_tokenizer
from ptbench.fixtures.models.devices import default_device, default_dtype
from ptbench.fixtures.tasks import get_task
from ptbench.pipelines import distributed, evaluation
from ptbench.pipelines.backends import deepspeed, trl
from ptbench.pipelines.backends.native import NativeTrainStep
from ptbench.pipelines.config import ConfigError, PipelineConfig, StageConfig, load_config
from ptbench.pipelines.data import demonstration_batch
from ptbench.pipelines.flops import FlopsLedger, ModelShape
from ptbench.pipelines.stages import build_stage
from ptbench.pipelines.tracking import Tracker

TRAIN_POOL = 4000


@dataclass
class RunContext:
    """What stages share: the model being trained and the run's bookkeeping."""

    config: PipelineConfig
    model: torch.nn.Module
    tokenizer: object
    task: object
    train_pool: list
    generator: torch.Generator
    shape: ModelShape
    ledger: FlopsLedger = field(default_factory=FlopsLedger)
    tokens: int = 0
    bf16: bool = False
    """Train in bfloat16 (see PipelineConfig.dtype)."""
    optimizers: dict = field(default_factory=dict)
    engines: dict = field(default_factory=dict)
    """DeepSpeed engines by stage, when the config has a deepspeed section."""
    closers: dict = field(default_factory=dict)
    """What ends a stage's trainer (TRL's trainer thread), by stage."""
    stage_start: torch.nn.Module | None = None
    """A frozen copy of the policy at the start of the current stage (the KL reference)."""

    def sample_train(self, n: int) -> list:
        """This rank's share of `n` training examples drawn with replacement by the run's
        seeded generator (every rank draws the same `n`)."""
        idx = torch.randint(len(self.train_pool), (n,), generator=self.generator)
        return distributed.shard([self.train_pool[int(i)] for i in idx])

    def sync_counters(self, before: tuple[FlopsLedger, int]) -> None:
        """Make FLOPs and tokens global: sum over ranks what each rank added since `before`."""
        ledger, tokens = before
        fields = [f.name for f in dataclasses.fields(FlopsLedger)]
        delta = [getattr(self.ledger, f) - getattr(ledger, f) for f in fields] + [self.tokens - tokens]
        delta = distributed.sum_over_ranks(delta, dtype=torch.int64)
        self.ledger = FlopsLedger(**{f: getattr(ledger, f) + int(d) for f, d in zip(fields, delta[:-1], strict=True)})
        self.tokens = tokens + int(delta[-1])

    def optimizer(self, stage: StageConfig) -> torch.optim.Optimizer:
        """AdamW for a stage (weight decay 0), kept so checkpoints can save its state."""
        opt = torch.optim.AdamW(self.model.parameters(), lr=stage.lr, weight_decay=0.0)
        self.optimizers[id(stage)] = opt
        return opt

    def native_step(self, stage: StageConfig, **kwargs) -> NativeTrainStep:
        """The native backend's step for `stage`: its AdamW, under a DeepSpeed engine when the
        config asks for one (the engine then owns reduction, clipping and the update)."""
        optimizer, engine = self.optimizer(stage), None
        ds = self.config.deepspeed
        if ds is not None:
            engine = deepspeed.wrap(self.model, optimizer, deepspeed.engine_config(
                ds.zero_stage, offload_optimizer=ds.offload_optimizer,
                max_grad_norm=stage.max_grad_norm, bf16=self.bf16))
            self.engines[id(stage)] = engine
        return NativeTrainStep(self.model, optimizer, max_grad_norm=stage.max_grad_norm,
                               engine=engine, **kwargs)

    def trl_trainer(self, stage: StageConfig, build):
        """TRL's trainer for the whole of `stage`, started: `build(optimizer, deepspeed)` with
        ptbench's AdamW, or with None and the DeepSpeed arguments under DeepSpeed (the trainer
        then builds the engine and optimizer itself). Its optimizer (and engine) are registered
        for the runner's lr and checkpoints."""
        ds = self.config.deepspeed
        if ds is None:
            step = build(self.optimizer(stage), None)
        else:
            deepspeed.init_deepspeed()
            step = build(None, trl.deepspeed_args(ds.zero_stage, ds.offload_optimizer))
            self.optimizers[id(stage)] = step.stage.optimizer
            self.engines[id(stage)] = step.stage.engine
        self.closers[id(stage)] = step.stage.close
        return step

    def end_stage(self, stage: StageConfig) -> None:
        """End the stage's trainer and release its engine (its gradient hooks) before the next
        stage wraps the model."""
        closer = self.closers.pop(id(stage), None)
        if closer is not None:
            closer()
        engine = self.engines.pop(id(stage), None)
        if engine is not None:
            engine.destroy()

    def precision(self):
        """bf16 autocast around forward passes where bf16 is mixed precision (no DeepSpeed: its
        bf16 mode casts the weights instead)."""
        if self.bf16 and self.config.deepspeed is None:
            return torch.autocast(next(self.model.parameters()).device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def account_train(self, micro_batches: list[dict]) -> None:
        for mb in micro_batches:
            b, t = mb["input_ids"].shape
            self.ledger.add_train(self.shape, b, t)
            self.tokens += int(mb["attention_mask"].sum())

    def account_generation(self, examples: list, per_prompt: int, new_tokens: int) -> None:
        """`per_prompt` sampled completions of each prompt, `new_tokens` decoding steps each.

        Charged at the full budget: a batch decodes until its last sequence stops.
        """
        for example in examples:
            prompt_len = len(self.tokenizer(example.prompt, add_special_tokens=False)["input_ids"])
            self.ledger.add_generation(self.shape, per_prompt, prompt_len, new_tokens)

    def account_forward(self, batch: dict) -> None:
        b, t = batch["input_ids"].shape
        self.ledger.add_forward(self.shape, b, t)


# ----------------------------------------------------------------------------- model setup
def tiny_base_model(config: PipelineConfig, task, cache: Path):
    """Tokenizer trained on the task's text and a tiny model pretrained on it briefly (cached)."""
    preset = config.model.removeprefix("tiny:")
    if preset not in TINY_PRESETS:
        raise ValueError(f"model: expected 'tiny:' + one of {sorted(TINY_PRESETS)}, got {config.model!r}")
    key = json.dumps([preset, config.task.name, config.task.options, config.seed,
                      config.base.steps, config.base.lr, config.base.batch_size], sort_keys=True)
    target = cache / f"base-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if (target / "config.json").exists():
        return load_causal_lm(str(target), device="cpu"), _tokenizer(target)
    corpus = task.corpus(4000, seed=config.seed)
    tokenizer = train_tokenizer(corpus, vocab_size=512)
    spec = TINY_PRESETS[preset]
    spec = type(spec)(**{**spec.__dict__, "vocab_size": len(tokenizer)})
    model = build_tiny_model(spec, seed=config.seed)
    model.config.pad_token_id, model.config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    if config.base.steps:
        # Rank 0 pretrains alone while the other ranks wait: no collectives.
        step = NativeTrainStep(model, torch.optim.AdamW(model.parameters(), lr=config.base.lr),
                               across_ranks=False)
        g = torch.Generator().manual_seed(config.seed)
        for _ in tqdm(range(config.base.steps), desc="base model pretraining", leave=False):
            texts = [corpus[int(i)] for i in torch.randint(len(corpus), (config.base.batch_size,), generator=g)]
            step([demonstration_batch(tokenizer, [""] * len(texts), texts)])
    tmp = Path(tempfile.mkdtemp(prefix=".base-", dir=cache))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target) if not target.exists() else shutil.rmtree(tmp)
    return load_causal_lm(str(target), device="cpu"), _tokenizer(target)


def _tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


# ------------------------------------------------------------------------------ checkpoints
def save_checkpoint(out: Path, ctx: RunContext, state: dict, stage: StageConfig | None,
                    stage_start: torch.nn.Module | None) -> Path:
    """Atomically write model, tokenizer, optimizer (of `stage`, mid-stage), RNG (every rank's
    torch RNG) and runner state. Rank 0 writes; under DeepSpeed every rank writes its optimizer
    partition into the same directory first."""
    target = out / "checkpoints" / f"step-{state['global_step']:06d}"
    tmp = out / "checkpoints" / f".tmp-{target.name}"
    torch_rngs = distributed.gather_objects(torch.get_rng_state())
    engine = ctx.engines.get(id(stage)) if stage is not None else None
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)  # a killed writer's leftovers
        tmp.mkdir()
    distributed.barrier()
    if engine is not None:
        deepspeed.save(engine, tmp / "deepspeed")
    if not distributed.is_main():
        distributed.barrier()
        return target
    optimizer = ctx.optimizers[id(stage)] if stage is not None and engine is None else None
    ctx.model.save_pretrained(tmp)
    ctx.tokenizer.save_pretrained(tmp)
    torch.save({"optimizer": optimizer.state_dict() if optimizer else None,
                "generator": ctx.generator.get_state(), "torch_rng": torch_rngs,
                "python_rng": random.getstate(), "ledger": ctx.ledger.to_dict(),
                "tokens": ctx.tokens, "state": state,
                # mid-stage only: the stage's starting weights, for KL / distance after a resume
                "stage_start": stage_start.state_dict() if stage_start is not None else None},
               tmp / "trainer_state.pt")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    (out / "checkpoints" / "latest.tmp").write_text(target.name)
    os.replace(out / "checkpoints" / "latest.tmp", out / "checkpoints" / "latest")
    distributed.barrier()
    return target


# ------------------------------------------------------------------------------- the loop
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


def check_world_size(config: PipelineConfig, world: int) -> None:
    """Every stage's batch (and its RL mini-batches) must split evenly over the ranks."""
    if world == 1:
        return
    for i, stage in enumerate(config.stages):
        if stage.batch_size % (world * stage.mini_batches):
            raise ConfigError(f"stages[{i}].batch_size: expected a multiple of the world size "
                              f"{world} x mini_batches {stage.mini_batches}, got {stage.batch_size}")


def lr_factor(stage: StageConfig, step: int) -> float:
    """Linear warmup over `warmup_steps`, then constant or cosine to 0 at the stage's last step."""
    if step <= stage.warmup_steps:
        return step / (stage.warmup_steps + 1)
    if stage.lr_schedule == "constant":
        return 1.0
    progress = (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def evaluate(ctx: RunContext, held_out: dict, start_params, base_params, base_model,
             stage_start_model) -> dict[str, float]:
    """Every eval-point measurement, ID and OOD, and the non-decoupling signals."""
    e = ctx.config.eval
    max_new = e.max_new_tokens or max(s.max_new_tokens for s in ctx.config.stages)
    m = ctx.model
    return {
        "eval/id_accuracy": evaluation.greedy_accuracy(m, ctx.tokenizer, ctx.task, held_out["id"], max_new),
        "eval/ood_accuracy": evaluation.greedy_accuracy(m, ctx.tokenizer, ctx.task, held_out["ood"], max_new),
        "eval/sampled_reward": evaluation.sampled_reward(m, ctx.tokenizer, ctx.task, held_out["reward"],
                                                         max_new, temperature=1.0),
        "eval/sft_ce": evaluation.demo_cross_entropy(m, held_out["demos"]),
        "eval/kl_to_stage_start": evaluation.demo_kl(m, stage_start_model, held_out["demos"]),
        "eval/kl_to_base": evaluation.demo_kl(m, base_model, held_out["demos"]),
        "eval/param_dist_stage_start": evaluation.parameter_distance(m, start_params),
        "eval/param_dist_base": evaluation.parameter_distance(m, base_params),
    }


def run_pipeline(config: PipelineConfig, out: str | os.PathLike, *, resume: bool = False,
                 stop_after: int | None = None, cache: str | os.PathLike | None = None) -> Path:
    """Run `config`; write metrics and checkpoints under `out`. Returns the metrics file.

    `stop_after` stops (as if killed) after that many global steps, for resume tests.
    """
    out = Path(out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    stages = [build_stage(s, i) for i, s in enumerate(config.stages)]  # validates kinds first
    distributed.init_from_env()
    check_world_size(config, distributed.world_size())
    main_rank = distributed.is_main()
    task = get_task(config.task.name, **config.task.options)
    cache = Path(cache or os.environ.get("PTBENCH_CACHE", Path.home() / ".cache" / "ptbench")) / "base"
    cache.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed + distributed.rank())  # ranks sample different completions
    random.seed(config.seed)
    if not torch.cuda.is_available():
        # Tiny models on a CPU run several times faster on one thread than on contended many.
        torch.set_num_threads(int(os.environ.get("PTBENCH_TORCH_THREADS", "1")))
    device = default_device()
    bf16 = {"auto": default_dtype(device) == torch.bfloat16, "bfloat16": True,
            "float32": False}[config.dtype]
    # Weights are float32 unless DeepSpeed's bf16 mode casts them anyway (then load them so).
    weights = torch.bfloat16 if bf16 and config.deepspeed is not None else torch.float32
    if config.model.startswith("tiny:"):
        if not main_rank:  # rank 0 builds and caches the base model, the others load it
            distributed.barrier()
        model, tokenizer = tiny_base_model(config, task, cache)
        model = model.to(device, weights)
        if main_rank:
            distributed.barrier()
    else:  # a hub id or a local path
        model = load_causal_lm(config.model, dtype=weights, device=device)
        tokenizer = _tokenizer(config.model)
    base_model = copy.deepcopy(model).eval()
    base_params = {n: p.detach().double().cpu().clone() for n, p in model.named_parameters()}
    e = config.eval
    held_out = {"id": task.examples("id", e.n_id, seed=config.seed),
                "ood": task.examples("ood", e.n_ood, seed=config.seed),
                "reward": task.examples("id", e.n_reward, seed=config.seed + 1)}
    demos = task.examples("id", e.n_demos, seed=config.seed + 2)
    held_out["demos"] = demonstration_batch(tokenizer, [d.prompt for d in demos],
                                            [d.demonstration for d in demos])
    ctx = RunContext(config, model, tokenizer, task, task.examples("train", TRAIN_POOL, seed=config.seed),
                     torch.Generator().manual_seed(config.seed), ModelShape.from_config(model.config),
                     bf16=bf16)
    tracker = Tracker(out / "metrics.jsonl", config.name, config.seed)  # written by rank 0 only
    state = {"stage_index": 0, "step": 0, "global_step": 0}
    saved = None
    if resume and (out / "checkpoints" / "latest").exists():
        ckpt = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
        loaded = load_causal_lm(str(ckpt), device="cpu")
        ctx.model.load_state_dict(loaded.state_dict())
        saved = torch.load(ckpt / "trainer_state.pt", weights_only=False)
        if len(saved["torch_rng"]) != distributed.world_size():
            raise ValueError(f"--resume: {ckpt} was written at world size {len(saved['torch_rng'])}, "
                             f"this run has {distributed.world_size()}")
        saved["torch_rng"] = saved["torch_rng"][distributed.rank()]
        state = saved["state"]
        ctx.generator.set_state(saved["generator"])
        ctx.tokens = saved["tokens"]
        counters = {k: v for k, v in saved["ledger"].items() if k != "total"}
        ctx.ledger = FlopsLedger(**counters)
        # Rows logged after the checkpoint are redone; a stage's step-0 eval is redone with it.
        resume_at = (state["stage_index"], state["step"] if state["step"] else -1)
        kept = [r for r in Tracker.read(out / "metrics.jsonl") if (r.stage_index, r.step) <= resume_at]
        tracker = Tracker(out / "metrics.jsonl", config.name, config.seed, kept)
        if main_rank:
            tracker.flush()
    stage_start_params = base_params
    for index in range(state["stage_index"], len(stages)):
        stage, sc = stages[index], config.stages[index]
        first = state["step"] if index == state["stage_index"] else 0
        stage_start = copy.deepcopy(ctx.model).eval()
        if saved is not None and saved["stage_start"] is not None:
            stage_start.load_state_dict(saved["stage_start"])
        ctx.stage_start = stage_start
        stage.setup(ctx)
        optimizer = ctx.optimizers[id(sc)]
        if saved is not None:
            if first > 0 and id(sc) in ctx.engines:
                deepspeed.load(ctx.engines[id(sc)], ckpt / "deepspeed")
            elif first > 0 and saved["optimizer"] is not None:
                optimizer.load_state_dict(saved["optimizer"])
            torch.set_rng_state(saved["torch_rng"])
            random.setstate(saved["python_rng"])
            saved = None
        stage_start_params = {n: p.detach().double().cpu().clone()
                              for n, p in stage_start.named_parameters()}
        last = min(sc.steps, sc.budget_steps or sc.steps)
        name = f"{index}:{sc.kind}"

        def log(step: int, metrics: dict[str, float], evaluated: bool, _name=name, _index=index,
                _start_params=stage_start_params, _start=stage_start) -> None:
            if evaluated and main_rank:
                with ctx.precision():
                    metrics.update(evaluate(ctx, held_out, _start_params, base_params, base_model,
                                            _start))
            if main_rank:
                flops = ctx.ledger.to_dict()
                metrics = {**metrics, **{f"flops/{k}": v for k, v in flops.items()}}
                tracker.log(_name, _index, step, state["global_step"], metrics, ctx.ledger.total,
                            ctx.tokens)
            if evaluated:
                distributed.barrier()

        if first == 0:
            log(0, {}, evaluated=True)
        for step in tqdm(range(first + 1, last + 1), desc=name, initial=first, total=last,
                         disable=not main_rank):
            for group in optimizer.param_groups:
                group["lr"] = sc.lr * lr_factor(sc, step)
            before = (copy.copy(ctx.ledger), ctx.tokens)
            with ctx.precision():
                metrics = reduce_step_metrics(stage.step(ctx, step))
            ctx.sync_counters(before)
            state.update(stage_index=index, step=step, global_step=state["global_step"] + 1)
            over_budget = sc.budget_flops is not None and ctx.ledger.total >= sc.budget_flops
            log(step, metrics, evaluated=step % e.every == 0 or step == last or over_budget)
            if over_budget or step == last or (config.checkpoint_every and step % config.checkpoint_every == 0):
                at_end = over_budget or step == last
                save_checkpoint(out, ctx, {**state, "stage_index": index + at_end,
                                           "step": 0 if at_end else step},
                                None if at_end else sc, None if at_end else stage_start)
            if stop_after is not None and state["global_step"] >= stop_after:
                return tracker.path
            if over_budget:
                break
        ctx.end_stage(sc)
        state.update(stage_index=index + 1, step=0)
    return tracker.path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptbench.pipelines.run", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    path = run_pipeline(load_config(args.config), args.out, resume=args.resume)
    if distributed.is_main():
        print(f"metrics: {path}")
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
