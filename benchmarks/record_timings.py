"""Record the nightly timings of this machine, night after night, for the timing-verdict replay.

    python benchmarks/record_timings.py --nights 12 --out tests/data/clean_timings.json

Runs the timing benchmarks of `pytest bench/` (`bench/test_nightly.py -k timing`) as separate
sessions, one "night" each, into a scratch results store, and writes each night's median per
timing metric (seconds) with the machine and versions. `tests/test_timing_replay.py` replays them:
no clean night may be a regression, and a 30% slowdown must be flagged.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from ptbench.fixtures.atomic import write_json_atomic
from ptbench.reports.db import ResultsStore
from ptbench.reports.environment import run_info

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nights", type=int, default=12)
    p.add_argument("--out", default="tests/data/clean_timings.json")
    args = p.parse_args()
    store = Path(tempfile.mkdtemp(prefix="ptbench-timings-")) / "results.sqlite"
    for night in range(args.nights):
        subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "bench" / "test_nightly.py"),
                        "-k", "timing", "-q", "-p", "no:cacheprovider", f"--ptbench-store={store}",
                        "--ptbench-report-dir=none"], check=True, capture_output=True, cwd=ROOT)
        print(f"night {night + 1}/{args.nights} recorded", flush=True)
    with ResultsStore.open(store) as s:
        nights = [{m.metric: m.value for m in s.measurements(r.id) if m.kind == "timing"}
                  for r in reversed(s.runs())]
    info = run_info("timings")
    write_json_atomic(args.out, {"machine": {"cpu": info.cpu, "host": info.host},
                                 "versions": info.versions, "nights": nights})
    print(f"wrote {args.out}: {len(nights)} nights")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
