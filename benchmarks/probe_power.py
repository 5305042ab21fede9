"""How sharp is the probe? Planted bugs caught, and false alarms on correct variants.

    python benchmarks/probe_power.py [--seeds 3] [--clean-seeds 20]

Every planted bug of `ptbench.fixtures.probes.planted` under every (loss_agg, objective) it
applies to, with SGD and (where the bug is not a uniform scale) AdamW, over --seeds seeds; every
correct variant under all 16 (loss_agg, objective, optimizer) combinations over --clean-seeds
seeds. Prints the counts and any miss or false alarm.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

from tqdm import tqdm

from ptbench.fixtures.probes import LOSS_AGGS, OBJECTIVES, OPTIMIZERS, check_update_equivalence
from ptbench.fixtures.probes.planted import CORRECT_VARIANTS, PLANTED_BUGS


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--clean-seeds", type=int, default=20)
    args = p.parse_args()
    start = time.time()
    bug_runs = [(b, agg, obj, opt, seed) for b in PLANTED_BUGS for agg in b.loss_aggs
                for obj in b.objectives for opt in OPTIMIZERS for seed in range(args.seeds)
                if not (opt == "adamw" and agg in b.uniform_scale)]
    caught, misses = 0, []
    for b, agg, obj, opt, seed in tqdm(bug_runs, desc="planted bugs", file=sys.stderr):
        r = check_update_equivalence(b.bug, loss_agg=agg, objective=obj, optimizer=opt, seed=seed)
        caught += not r.passed
        if r.passed:
            misses.append(f"{b.bug.__name__} {agg} {obj} {opt} seed {seed}")
    clean_runs = list(itertools.product(CORRECT_VARIANTS, LOSS_AGGS, OBJECTIVES, OPTIMIZERS,
                                        range(args.clean_seeds)))
    alarms, worst = [], 0.0
    for v, agg, obj, opt, seed in tqdm(clean_runs, desc="correct variants", file=sys.stderr):
        r = check_update_equivalence(v, loss_agg=agg, objective=obj, optimizer=opt, seed=seed)
        worst = max(worst, r.rel_error / r.tolerance)
        if not r.passed:
            alarms.append(f"{v.__name__} {agg} {obj} {opt} seed {seed}: {r.rel_error:.1e}")
    print(f"planted bugs caught: {caught} / {len(bug_runs)} "
          f"({len(PLANTED_BUGS)} bug kinds, {args.seeds} seeds)")
    print(f"false alarms: {len(alarms)} / {len(clean_runs)} "
          f"({len(CORRECT_VARIANTS)} correct variants x 16 combinations x {args.clean_seeds} seeds)")
    print(f"largest clean error / tolerance: {worst:.2e}")
    for line in misses + alarms:
        print("  ", line)
    print(f"wall time {time.time() - start:.0f}s")
    return 1 if misses or alarms else 0


if __name__ == "__main__":
    raise SystemExit(main())
