"""A comparison from start to end, in phases, each resumable:

1. search: every method's trials on the search seed; the one with the best validation
   accuracy at the method's last budget point is chosen (ties: the best mean validation
   accuracy over the budget points, then the first in grid order);
2. seeds: the chosen settings on every other seed (the search seed's chosen trial is reused);
3. bugs: each bug switched on for its pipelines, at their chosen settings, on every seed;
4. verdicts: curves, whether each method learns, each claim clean and under each bug.

Everything lands in `OUT/comparison.json` (atomically, after every phase) and a Markdown summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ptbench.comparison.claims import JudgedClaim, judge
from ptbench.comparison.config import Comparison, search_points
from ptbench.comparison.curves import CURVE_METRICS, curve, learning
from ptbench.comparison.trials import Job, Trial, TrialResult, config_hash, run_trials
from ptbench.fixtures.atomic import write_atomic, write_json_atomic
from ptbench.fixtures.probes.plant import PLANTS


def _trial_job(comparison: Comparison, pipeline: str, seed: int, point: dict, bug=None,
               handicap: dict | None = None) -> Job:
    handicap = handicap or {}
    config = comparison.pipeline_config(pipeline, seed=seed, point=point, bug=bug,
                                        handicap=handicap)
    trial = Trial(pipeline, seed, point, bug.name if bug else None, handicap, config_hash(config))
    return Job(trial, config, bug.plant if bug else None)


def search_jobs(comparison: Comparison) -> list[Job]:
    cfg = comparison.config
    return [_trial_job(comparison, name, cfg.search.seed, point)
            for name, entry in cfg.pipelines.items()
            for point in search_points(entry.search, cfg.search.trials, cfg.search.sample_seed)]


def _score(result: TrialResult, stop: float, metric: str) -> float:
    return (result.at(stop) or result.final).get(metric, float("-inf"))


def _curve_mean(result: TrialResult, metric: str) -> float:
    """Mean of `metric` over the budget points (ties on the last point go to the faster
    learner: 200 validation problems often tie exactly)."""
    values = [v[metric] for v in result.points.values() if metric in v]
    return sum(values) / len(values) if values else float("-inf")


def choose(comparison: Comparison, results: dict[str, TrialResult]) -> dict[str, dict]:
    """Per pipeline: the chosen point and every trial's score (validation metric at its last
    budget point)."""
    cfg = comparison.config
    chosen = {}
    for name, entry in cfg.pipelines.items():
        grid = search_points(entry.search, cfg.search.trials, cfg.search.sample_seed)
        trials = sorted(((r.trial, r) for r in results.values() if r.trial.pipeline == name
                         and r.trial.seed == cfg.search.seed and r.trial.bug is None
                         and not r.trial.handicap and r.trial.point in grid),
                        key=lambda tr: grid.index(tr[0].point))
        scored = [_score(r, cfg.stop_point(name), cfg.search.metric) for _, r in trials]
        curve_means = [_curve_mean(r, cfg.search.metric) for _, r in trials]
        best = max(range(len(trials)), key=lambda i: (scored[i], curve_means[i], -i))
        chosen[name] = {"point": trials[best][0].point,
                        "trials": [{"point": t.point, cfg.search.metric: s,
                                    "id_accuracy": r.final.get("id_accuracy"),
                                    "id_gain": r.final["id_accuracy"] - r.start["id_accuracy"]}
                                   for (t, r), s in zip(trials, scored, strict=True)]}
    return chosen


def final_jobs(comparison: Comparison, chosen: dict[str, dict],
               handicap: dict[str, dict[str, Any]]) -> tuple[list[Job], list[Job]]:
    """The chosen settings on every seed (clean), and under every bug."""
    cfg = comparison.config
    seeds = [_trial_job(comparison, name, seed, chosen[name]["point"], None, handicap.get(name))
             for name in cfg.pipelines for seed in cfg.seeds
             if seed != cfg.search.seed or handicap.get(name)]
    bugs = [_trial_job(comparison, name, seed, chosen[name]["point"], bug, handicap.get(name))
            for bug in cfg.bugs for name in comparison.bug_pipelines(bug) for seed in cfg.seeds]
    return seeds, bugs


def _by_seed(results: dict[str, TrialResult], pipeline: str, point: dict, bug: str | None,
             handicap: dict) -> dict[int, TrialResult]:
    return {r.trial.seed: r for r in results.values() if r.trial.pipeline == pipeline
            and r.trial.point == point and r.trial.bug == bug and r.trial.handicap == handicap}


def verdicts(comparison: Comparison, chosen: dict[str, dict], results: dict[str, TrialResult],
             handicap: dict[str, dict]) -> dict:
    """Curves, learning, claims (clean and per bug) and bug-on gaps, as plain data."""
    cfg = comparison.config
    clean = {n: _by_seed(results, n, chosen[n]["point"], None, handicap.get(n, {}))
             for n in cfg.pipelines}
    points = cfg.budget.points
    curves = {n: {m: [asdict(p) for p in curve(list(r.values()), points, m)]
                  for m in CURVE_METRICS} for n, r in clean.items()}
    learns = {n: learning(n, list(r.values()), cfg.min_gain) for n, r in clean.items()}
    judged: list[JudgedClaim] = [judge(cfg, c, clean[c.a], clean[c.b]) for c in cfg.claims]
    bugs = []
    for bug in cfg.bugs:
        hit = comparison.bug_pipelines(bug)
        on = {n: (_by_seed(results, n, chosen[n]["point"], bug.name, handicap.get(n, {}))
                  if n in hit else clean[n]) for n in cfg.pipelines}
        claims = [judge(cfg, c, on[c.a], on[c.b], bug=bug.name) for c in cfg.claims
                  if c.a in hit or c.b in hit]
        flips = []
        for c in claims:
            before = next(j for j in judged if j.claim.name == c.claim.name)
            flips.append({"claim": c.claim.name, "clean": str(before.result.verdict),
                          "bug_on": str(c.result.verdict),
                          "clean_mean": before.result.mean, "bug_on_mean": c.result.mean,
                          "flipped": str(before.result.verdict) != str(c.result.verdict)})
        accumulation = {n: [s.batch_size // bug.micro_batch_size for s in
                            comparison.base_configs[n].stages if s.kind == "sft"] for n in hit}
        bugs.append({"name": bug.name, "plant": bug.plant, "pipelines": hit,
                     "what": (PLANTS[bug.plant].__doc__ or "").strip().splitlines()[0],
                     "accumulation": accumulation,
                     "micro_batch_size": bug.micro_batch_size, "settings": bug.settings,
                     "curves": {n: {m: [asdict(p) for p in curve(list(on[n].values()), points, m)]
                                    for m in CURVE_METRICS} for n in hit},
                     "claims": [_claim_json(c) for c in claims], "ranking": flips})
    per_seed = {n: {m: {repr(p): {s: r.at(p)[m] for s, r in by_seed.items()
                                  if r.at(p) is not None and m in r.at(p)} for p in points}
                    for m in CURVE_METRICS} for n, by_seed in clean.items()}
    return {"curves": curves, "per_seed": per_seed,
            "learning": {n: {"learns": v.learns, "gains": v.gains, "explain": v.explain()}
                         for n, v in learns.items()},
            "claims": [_claim_json(c) for c in judged], "bugs": bugs}


def _claim_json(c: JudgedClaim) -> dict:
    r = c.result
    return {"name": c.claim.name, "kind": c.claim.kind, "a": c.claim.a, "b": c.claim.b,
            "metric": c.claim.metric, "delta": c.claim.delta, "expect": c.claim.expect,
            "verdict": str(r.verdict), "as_expected": c.as_expected, "bug": c.bug, "mean": r.mean,
            "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.n, "seeds": c.seeds,
            "differences": c.differences, "where": c.detail, "explain": c.explain()}


def run_comparison(comparison: Comparison, out: str | Path, *, workers: int = 1,
                   handicap: dict[str, dict[str, Any]] | None = None, skip_bugs: bool = False,
                   cache: str | None = None, say: Callable[[str], None] = print,
                   summary_name: str = "comparison") -> dict:
    """Run (or resume) every phase; returns and writes the summary (`OUT/<summary_name>.json`
    and `.md`: a handicapped re-run shares the trials, not the summary)."""
    out, handicap = Path(out), handicap or {}
    cfg = comparison.config
    trials_dir = out / "trials"
    summary: dict[str, Any] = {"name": cfg.name, "budget": asdict(cfg.budget),
                               "seeds": cfg.seeds, "search": asdict(cfg.search),
                               "handicap": handicap, "source": str(comparison.source),
                               "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "workers": workers}
    started = time.monotonic()
    unit = cfg.budget.unit
    jobs = search_jobs(comparison)
    say(f"{cfg.name}: phase 1/3, search: {len(jobs)} trial(s) on seed {cfg.search.seed}")
    results = run_trials(jobs, trials_dir, unit, workers=workers,
                         cache=cache, say=say)
    chosen = choose(comparison, results)
    summary["chosen"] = chosen
    write_json_atomic(out / f"{summary_name}.json", summary)
    seeds, bug_jobs = final_jobs(comparison, chosen, handicap)
    say(f"{cfg.name}: phase 2/3, seeds: {len(seeds)} trial(s)")
    results |= run_trials(seeds, trials_dir, unit, workers=workers,
                          cache=cache, say=say)
    if skip_bugs:
        bug_jobs, comparison = [], replace(comparison, config=replace(cfg, bugs=[]))
    say(f"{cfg.name}: phase 3/3, bugs: {len(bug_jobs)} trial(s)")
    results |= run_trials(bug_jobs, trials_dir, unit, workers=workers,
                          cache=cache, say=say)
    summary.update(verdicts(comparison, chosen, results, handicap))
    summary["wall_s"] = time.monotonic() - started
    summary["trials"] = {key: {"wall_s": r.wall_s, "flops": r.flops, "steps": r.steps}
                         for key, r in results.items()}
    write_json_atomic(out / f"{summary_name}.json", summary)
    from ptbench.comparison.summary import markdown

    write_atomic(out / f"{summary_name}.md", lambda f: f.write(markdown(summary)))
    return summary
