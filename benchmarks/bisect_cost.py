"""What a bisection costs: probes vs releases in range, and time per release cold vs warm.

    python benchmarks/bisect_cost.py                      # probes per bisection (fake prober)
    python benchmarks/bisect_cost.py --timing deepspeed==0.16.0 --root .matrix --out timing.json

Probes: for n releases and every position of the first bad release, the number of releases a
bisection probes (both bounds included), against 2 + ceil(log2(n - 1)).

Timing (`--timing`): one release probed (one configuration, one objective) three ways, in one
run: cold (no environment, no cached wheel: everything built; the shared torch layer is kept,
it is built once per working folder), warm (environment reused, probe run again) and cached
(the probe's results read back, what a second bisection over the same release costs).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

from ptbench.fixtures.probes.bisect import ProbeOutcome, bisect


def probes_per_bisection(sizes=(4, 8, 16, 38, 64, 128, 256, 1024)) -> list[dict]:
    rows = []
    for n in sizes:
        releases = [f"0.{i}.0" for i in range(n)]
        counts = []
        for first in range(1, n):
            def prober(v, first=first):
                bad = releases.index(v) >= first
                return ProbeOutcome("fail", "-> micro-batches 2-5 of 6 look dropped") if bad \
                    else ProbeOutcome("pass")
            counts.append(bisect(releases, prober, "look dropped", releases[0], releases[-1]).probes)
        bound = 2 + math.ceil(math.log2(n - 1))
        rows.append({"releases": n, "max_probes": max(counts),
                     "mean_probes": round(sum(counts) / len(counts), 2), "bound": bound,
                     "linear_scan": n})
    return rows


def timing(requirement: str, root: Path, config: str, objective: str) -> dict:
    from ptbench.fixtures.probes.release_probe import ReleaseProber

    package, version = requirement.split("==")
    tag = f"{package}-{version}"
    for path in (root / "venvs" / tag, root / "wheels" / tag, root / "probes" / tag):
        shutil.rmtree(path, ignore_errors=True)
    out = {}
    for name in ("cold", "warm", "cached"):
        if name == "warm":
            shutil.rmtree(root / "probes" / tag)
        prober = ReleaseProber(root, package, config, objective)
        started = time.time()
        outcome = prober(version)
        out[name] = {"seconds": round(time.time() - started, 1), "status": outcome.status}
        print(f"{tag} {name}: {out[name]['seconds']}s ({outcome.status})", file=sys.stderr)
    out["cold_over_warm"] = round(out["cold"]["seconds"] / out["warm"]["seconds"], 1)
    return {"release": requirement, "config": config, "objective": objective, **out}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timing", metavar="PACKAGE==VERSION", default=None)
    p.add_argument("--config", default="deepspeed-z2-offload-ws1")
    p.add_argument("--objective", default="pg")
    p.add_argument("--root", default=".matrix")
    p.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = p.parse_args()
    result: dict = {"probes": probes_per_bisection()}
    print("| releases | max probes | mean probes | 2 + ceil(log2(n-1)) | linear scan |")
    print("|---|---|---|---|---|")
    for r in result["probes"]:
        print(f"| {r['releases']} | {r['max_probes']} | {r['mean_probes']} | {r['bound']} | {r['linear_scan']} |")
    if args.timing:
        result["timing"] = timing(args.timing, Path(args.root), args.config, args.objective)
        t = result["timing"]
        print(f"\n{t['release']} {t['config']} {t['objective']}: cold {t['cold']['seconds']}s, "
              f"warm {t['warm']['seconds']}s, cached {t['cached']['seconds']}s "
              f"(cold/warm {t['cold_over_warm']}x)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
