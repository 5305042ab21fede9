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
            def prober(v, first=first, releases=releases):
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


def render(result: dict) -> str:
    """Markdown of the figures (what the README shows, from the stored JSON)."""
    lines = ["| releases in range | max probes | mean probes | 2 + ceil(log2(n-1)) | linear scan |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['releases']} | {r['max_probes']} | {r['mean_probes']} | {r['bound']} "
              f"| {r['linear_scan']} |" for r in result["probes"]]
    t = result.get("timing")
    if t:
        lines += ["", f"One release ({t['release']}, {t['config']} {t['objective']}, 2 cores): cold "
                  f"{t['cold']['seconds']:.0f} s (environment built, wheel built, probe), warm "
                  f"{t['warm']['seconds']:.0f} s (environment reused, probe run), cached "
                  f"{t['cached']['seconds']:.1f} s (result read back); cold/warm "
                  f"{t['cold_over_warm']}x."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timing", metavar="PACKAGE==VERSION", default=None)
    p.add_argument("--config", default="deepspeed-z2-offload-ws1")
    p.add_argument("--objective", default="pg")
    p.add_argument("--root", default=".matrix")
    p.add_argument("--out", default=None, help="write the figures to this JSON file")
    p.add_argument("--show", default=None, metavar="JSON", help="print stored figures and exit")
    args = p.parse_args()
    if args.show:
        print(render(json.loads(Path(args.show).read_text())), end="")
        return 0
    result: dict = {"probes": probes_per_bisection()}
    if args.timing:
        result["timing"] = timing(args.timing, Path(args.root), args.config, args.objective)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(render(result), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
