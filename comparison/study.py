"""Run a diagnostics study end to end and judge the papers' explanations over its seeds.

    summary = run_study(load_study("configs/diagnostics/tiny-arithmetic.yaml"), "runs/diag")

Writes `study.json` under `out`: per seed the premises' measured values, the coupling numbers
(`coupling_analysis`), the misalignment curves, the spectral tables and the UV-restore sweep;
and the claims, each held / not held / inconclusive / premise not met (`diagnostic_claims`):

    ce_rises_during_rl        RL from the last SFT checkpoint; premise: SFT's CE near its floor
    reward_falls_during_sft   RL then SFT, from the base and after SFT-then-RL; premise: RL's
                              reward near the best final reward of the study's RL runs
    vectors_rotate_more       base -> SFT and SFT -> SFT+RL, each against a random perturbation
    restore_recovers          UV restore (the study's claim_p, claim_q) from the OOD peak
    rl_recovers_ood           RL from the last SFT checkpoint, against the same OOD loss
    restore from an unrelated model (planted: must not be held)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from ptbench.comparison import coupling_analysis as ca
from ptbench.comparison import study_runs as sr
from ptbench.comparison.diagnostic_claims import (
    ce_rises_during_rl,
    restore_recovers,
    reward_falls_during_sft,
    vectors_rotate_more,
)
from ptbench.comparison.spectral_study import (
    Checkpoints,
    evaluate_checkpoint,
    export_model,
    restore_sweep,
    rotation_scores,
    spectral_tables,
)
from ptbench.comparison.study_config import CLAIM_KEYS, Study
from ptbench.fixtures.atomic import write_json_atomic
from ptbench.fixtures.models.tiny import cache_root
from ptbench.fixtures.tasks import get_task
from ptbench.pipelines.evaluation import eval_max_new_tokens
from ptbench.reports.stats import ClaimResult

SUMMARY = "study.json"


def claim_json(result: ClaimResult, key: str) -> dict:
    return {"key": key, "name": result.name, "verdict": str(result.verdict), "n": result.n,
            "mean": result.mean, "ci_low": result.ci_low, "ci_high": result.ci_high,
            "measured": result.measured, "threshold": result.threshold, "explain": result.explain()}


def _models(study: Study, out: Path, seed: int, cache: Path) -> Checkpoints:
    """The seed's models as folders: the base and an unrelated random initialisation exported
    once, the SFT checkpoints and the RL run's last checkpoint."""
    from transformers import AutoModelForCausalLM

    from ptbench.pipelines.base_model import load_base_model

    config = study.sft_run(seed)
    task = get_task(config.task.name, **config.task.options)
    folder = out / "models" / f"seed-{seed}"
    base, unrelated = folder / "base", folder / "unrelated"
    if not (base.exists() and unrelated.exists()):
        model, tokenizer = load_base_model(config, task, cache, torch.device("cpu"), torch.float32)
        export_model(model, tokenizer, base)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(10_000 + seed)
            export_model(AutoModelForCausalLM.from_config(model.config), tokenizer, unrelated)
    ood = sr.ood_by_checkpoint(study, sr.rows(out, f"sft/seed-{seed}"))
    peak = max(sorted(ood), key=lambda s: (ood[s], -s))
    return Checkpoints(base=base, peak=sr.checkpoint_path(out, seed, peak),
                       sft=sr.checkpoint_path(out, seed, study.config.sft.checkpoint_steps[-1]),
                       rl=sr.rl_end(study, out, seed), unrelated=unrelated)


def seed_record(study: Study, out: Path, seed: int, cache: Path) -> dict:
    """Everything the study measured on one seed."""
    c = study.config
    sft_rows = sr.rows(out, f"sft/seed-{seed}")
    by_checkpoint = sr.ood_by_checkpoint(study, sft_rows)
    starts = sr.rl_starts(by_checkpoint)
    sft_points = ca.trajectory(sft_rows)
    floor = ca.ce_floor(sft_points)
    rl_points = {s: ca.trajectory(sr.rows(out, f"rl/step-{s}/seed-{seed}")) for s in starts}
    reverse_rows = sr.rows(out, f"rl_then_sft/seed-{seed}")
    reverse = {stage: ca.trajectory(reverse_rows, stage) for stage in ("0:rl", "1:sft")}
    sft_after_rl = ca.trajectory(sr.rows(out, f"sft_after_rl/seed-{seed}"))
    best_reward = max(p["reward"] for pts in [*rl_points.values(), reverse["0:rl"]] for p in pts)
    last = c.sft.checkpoint_steps[-1]
    rl_config = study.rl_run(seed, "checkpoint")
    pred = ca.prediction(rl_points[last], rl_config.stages[0].lr, best_reward, c.exchange_rate)

    models = _models(study, out, seed, cache)
    work = out / "spectral" / f"seed-{seed}"
    tables = spectral_tables(models, work, c.spectral.k, seed)
    config = study.sft_run(seed)
    task = get_task(config.task.name, **config.task.options)
    from ptbench.fixtures.models import load_tokenizer
    from ptbench.pipelines.evaluation import HeldOut

    held = HeldOut.draw(task, load_tokenizer(str(models.base)), config.eval, seed)
    examples, max_new = {"id": held.id, "ood": held.ood}, eval_max_new_tokens(config)
    evaluated = {name: evaluate_checkpoint(getattr(models, name), task, examples, max_new)
                 for name in ("base", "peak", "sft", "rl")}
    return {
        "seed": seed, "ce_floor": floor, "sft_pl": ca.sft_pl(sft_points, floor),
        "sft_checkpoints": {str(s): v for s, v in by_checkpoint.items()}, "rl_starts": starts,
        "sft_curve": sft_points, "rl_curves": {str(s): p for s, p in rl_points.items()},
        "reverse_curves": reverse, "sft_after_rl_curve": sft_after_rl, "best_reward": best_reward,
        "prediction": pred,
        "tradeoff": ca.tradeoff(rl_points[last], best_reward, c.exchange_rate),
        "evaluated": evaluated, "spectral": tables, "rotation": rotation_scores(tables),
        "restore": restore_sweep(models, work, c.spectral, task, examples, max_new),
    }


def judge(study: Study, seeds: list[dict]) -> list[dict]:
    """The claims over the seeds' records."""
    c, last = study.config, str(study.config.sft.checkpoint_steps[-1])
    rl = [s["rl_curves"][last] for s in seeds]
    reverse = [s["reverse_curves"] for s in seeds]
    after_rl = [s["sft_after_rl_curve"] for s in seeds]
    # RL's optimum: the highest final probe reward of any RL run of the study.
    best = max([p[-1]["reward"] for s in seeds for p in s["rl_curves"].values()]
               + [r["0:rl"][-1]["reward"] for r in reverse])
    restored = {key: [next(r["ood"] for r in s["restore"] if r["reference"] == key
                           and r["p"] == c.spectral.claim_p and r["q"] == c.spectral.claim_q)
                      for s in seeds] for key in ("peak", "unrelated")}
    peak = [s["evaluated"]["peak"]["ood"] for s in seeds]
    sft = [s["evaluated"]["sft"]["ood"] for s in seeds]
    results = {
        "ce_rises_during_rl": ce_rises_during_rl(
            [p[0]["sft_ce"] for p in rl], [p[-1]["sft_ce"] for p in rl],
            [s["ce_floor"] for s in seeds], [p[0]["sft_grad_norm"] for p in rl], c.premises),
        "reward_falls_during_sft": reward_falls_during_sft(
            [r["1:sft"][0]["reward"] for r in reverse], [r["1:sft"][-1]["reward"] for r in reverse],
            best, c.premises),
        "reward_falls_during_sft_after_rl": reward_falls_during_sft(
            [p[0]["reward"] for p in after_rl], [p[-1]["reward"] for p in after_rl], best, c.premises),
        "sft_vectors_rotate_more": vectors_rotate_more([s["rotation"]["sft"] for s in seeds]),
        "rl_vectors_rotate_more": vectors_rotate_more([s["rotation"]["rl"] for s in seeds]),
        "restore_recovers": restore_recovers(peak, sft, restored["peak"], c.premises),
        "rl_recovers_ood": restore_recovers(
            peak, sft, [s["evaluated"]["rl"]["ood"] for s in seeds], c.premises,
            name="RL from the last SFT checkpoint recovers part of the OOD accuracy SFT lost"),
        "unrelated_restore_recovers": restore_recovers(
            peak, sft, restored["unrelated"], c.premises,
            name="planted: UV restore from an unrelated model recovers part of the lost OOD accuracy"),
    }
    names = {"reward_falls_during_sft": "RL from the base, then SFT: ",
             "reward_falls_during_sft_after_rl": "SFT-then-RL, then SFT: ",
             "sft_vectors_rotate_more": "base -> SFT: ", "rl_vectors_rotate_more": "SFT -> SFT+RL: "}
    assert tuple(results) == CLAIM_KEYS
    claims = [claim_json(replace(r, name=names.get(k, "") + r.name) if k in names else r, k)
              for k, r in results.items()]
    for claim in claims:
        claim["expect"] = c.expect.get(claim["key"])
        claim["as_expected"] = claim["expect"] in (None, claim["verdict"])
    return claims


def run_study(study: Study, out: str | Path, *, workers: int = 1, cache: str | Path | None = None,
              say: Callable[[str], None] = print) -> dict:
    """Every run (resuming), then the analysis; returns and writes the summary."""
    out = Path(out)
    started = time.monotonic()
    cache_dir = str(cache) if cache is not None else None
    runs: list[sr.StudyRun] = []
    for title, wave in ((f"study {study.config.name}: wave 1 (SFT sweep, RL then SFT), "
                         f"{len(study.config.seeds)} seed(s)", lambda: sr.first_wave(study)),
                        ("wave 2 (RL from SFT checkpoints on both sides of the OOD peak)",
                         lambda: sr.second_wave(study, out)),
                        ("wave 3 (SFT after the RL from the last SFT checkpoint)",
                         lambda: sr.third_wave(study, out))):
        say(title)
        this = wave()  # built once the wave before has finished: it reads that wave's results
        sr.run_all(this, out, workers=workers, cache=cache_dir, say=say)
        runs += this
    base_cache = Path(cache or cache_root()) / "base"
    seeds = []
    for seed in study.config.seeds:
        say(f"spectral tables and UV-restore sweep, seed {seed}")
        seeds.append(seed_record(study, out, seed, base_cache))
    summary = {"name": study.config.name, "study": str(study.path), "seeds": seeds,
               "runs_wall_s": sr.total_wall(runs, out), "workers": workers,
               "premises": study.config.premises.__dict__, "claims": judge(study, seeds),
               "exchange_rate": study.config.exchange_rate,
               "wall_s": time.monotonic() - started}
    write_json_atomic(out / SUMMARY, summary)
    for claim in summary["claims"]:
        say(f"  {claim['explain']}")
    return summary
