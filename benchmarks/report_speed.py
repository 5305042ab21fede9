"""How long the nightly report takes to build over a long history (target: 30 nights in 10 s).

    python benchmarks/report_speed.py [--nights 30] [--store PATH]

Builds a store of `--nights` nightly runs shaped like the CPU default of `pytest bench/` (130
probe statuses, one pipeline of 40 metrics evaluated 8 times on 1 seed, 3 timings), then times
`build_report` on the last night (verdicts against the history, every section and figure, HTML
and Markdown written). With `--store`, times the report of that store's newest run instead.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from ptbench.reports.build import build_report
from ptbench.reports.db import ResultsStore
from ptbench.reports.records import Measurement, RunInfo

TARGET_S = 10.0


def night(rng: random.Random) -> list[Measurement]:
    ms = [Measurement(metric="probe", value=1.0, kind="status", status="pass", config=f"config-{c}",
                      labels={"objective": o, "loss_agg": "token-mean", "optimizer": p})
          for c in range(33) for o in ("ce", "pg") for p in ("sgd", "adamw")][:130]
    for stage in ("0:sft", "1:rl"):
        for step in range(0, 350, 50):
            for k in range(40):
                ms.append(Measurement(metric=f"eval/metric_{k}" if k > 3 else
                                      ("eval/id_accuracy", "eval/sampled_reward", "eval/sft_ce",
                                       "eval/kl_to_stage_start")[k],
                                      value=rng.random(), pipeline="sft_then_rl-arithmetic",
                                      stage=stage, step=step, seed=0, flops=1e9 * (step + 1)))
    ms += [Measurement(metric=f"timing/{t}", value=0.1 * rng.lognormvariate(0, 0.05),
                       kind="timing", direction="lower", unit="s")
           for t in ("probe", "training_step", "generation")]
    return ms


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nights", type=int, default=30)
    p.add_argument("--store", default=None)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ptbench-report-speed-"))
    store = ResultsStore.open(args.store or work / "results.sqlite")
    if args.store is None:
        rng = random.Random(0)
        for i in range(args.nights):
            run = store.begin_run(RunInfo(kind="bench", started=f"2026-10-{1 + i:02d}T02:17:00+00:00"))
            store.add(run, night(rng))
            store.finish_run(run)
        print(f"{args.nights} nights, {store.count()} measurements")
    start = time.perf_counter()
    built = build_report(store, work / "report", history=args.nights)
    elapsed = time.perf_counter() - start
    print(built.comparison.headline())
    print(f"report built in {elapsed:.2f}s; ratio to the {TARGET_S:.0f}s target: {elapsed / TARGET_S:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
