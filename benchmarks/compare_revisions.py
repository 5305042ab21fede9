"""Wall time of the same workload under two installs of ptbench (e.g. before and after a change).

    python benchmarks/compare_revisions.py --before /path/to/old-venv/bin/python \\
        --after .venv/bin/python [--runs 3] [--config configs/tiny/sft_then_rl-arithmetic.yaml]

The workload, run as whole processes by each interpreter: every CPU probe of the adapter
configurations both installs have (world size 1 in process, world size 2 in one torchrun launch;
`--probe-args` narrows the combinations), then one tiny pipeline run of `--config` shortened to
`--sft-steps` / `--rl-steps` (a YAML copy, so an install without `--set` runs it too). Runs
alternate, before then after, `--runs` times; prints each run's two parts, the medians and the
ratios after / before (> 1: slower). The base model cache is warmed once first, so neither side
pays for building it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

LIST = "from ptbench.fixtures.probes.adapters.registry import CONFIGS; print(' '.join(c.name for c in CONFIGS))"


def adapters(python: str) -> set[str]:
    out = subprocess.run([python, "-c", LIST], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def commands(python: str) -> tuple[list[str], list[str]]:
    """How this install spells the probe and the pipeline commands (`ptbench probe|run`, or the
    module entry points of installs from before the one command)."""
    has_cli = subprocess.run([python, "-c", "import ptbench.cli"], capture_output=True).returncode == 0
    if has_cli:
        return [python, "-m", "ptbench.cli", "probe"], [python, "-m", "ptbench.cli", "run"]
    return [python, "-m", "ptbench.fixtures.probes"], [python, "-m", "ptbench.pipelines.run"]


def workload(python: str, names: list[str], config: Path, work: Path, env: dict,
             probe_args: list[str]) -> tuple[float, float]:
    """Seconds of the probes and of the pipeline run, separate processes, back to back."""
    probe, run = commands(python)
    start = time.perf_counter()
    subprocess.run([*probe, "--adapter", *names, *probe_args, "--out", str(work / "probes.json")],
                   env=env, check=True, capture_output=True)
    middle = time.perf_counter()
    subprocess.run([*run, str(config), "--out", str(work / "run")], env=env, check=True,
                   capture_output=True)
    return middle - start, time.perf_counter() - middle


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="python of the baseline install")
    p.add_argument("--after", default=sys.executable, help="python of the changed install")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--config", default="configs/tiny/sft_then_rl-arithmetic.yaml")
    p.add_argument("--sft-steps", type=int, default=200)
    p.add_argument("--rl-steps", type=int, default=20)
    p.add_argument("--probe-args", default="",
                   help="extra probe options, e.g. '--loss-agg token-mean --optimizer sgd' "
                        "(the same combinations under both installs)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ptbench-compare-"))
    data = yaml.safe_load(Path(args.config).read_text())
    for stage, steps in zip(data["stages"], (args.sft_steps, args.rl_steps), strict=False):
        stage["steps"] = steps
        stage.pop("budget_steps", None)
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    names = sorted(adapters(args.before) & adapters(args.after))
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "PTBENCH_CACHE": str(work / "cache")}
    print(f"{len(names)} probe configurations in both; pipeline {data['name']} "
          f"({args.sft_steps} SFT + {args.rl_steps} RL steps)", flush=True)
    probe_args = args.probe_args.split() if args.probe_args else []
    workload(args.after, names, config, work / "warm", env, probe_args)  # builds the base model
    times: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    for i in range(args.runs):
        for side in ("before", "after"):
            python = getattr(args, side)
            times[side].append(workload(python, names, config, work / f"{side}-{i}", env, probe_args))
            probes, pipeline = times[side][-1]
            print(f"run {i + 1} {side}: probes {probes:.1f}s, pipeline {pipeline:.1f}s", flush=True)
    print(json.dumps(times))
    for part, index in (("probes", 0), ("pipeline", 1), ("both", None)):
        b, a = ([statistics.median(sum(t) if index is None else t[index] for t in times[side])
                 for side in ("before", "after")])
        print(f"{part}: median before {b:.1f}s, after {a:.1f}s; ratio after/before {a / b:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
