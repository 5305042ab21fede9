"""The GPU path in one command: tiny pipelines on the default device (CUDA, bf16 where supported).

    python benchmarks/gpu_smoke.py --out gpu-smoke [--config configs/tiny/sft_then_rl-arithmetic.yaml]
                                   [--quick] [--timeout 150]

Runs the config several ways, each in its own process with a time limit: the native and the TRL
backend, each plain and under DeepSpeed ZeRO-2 (`--variants` picks; a float32 ZeRO-2 run too). Prints, per variant, the device,
wall time and the eval figures at every stage's end, and writes them to `<out>/summary.json`
(metrics rows in `<out>/<variant>/metrics.jsonl`). `--quick` cuts every stage to a few steps (a
dry run of this script on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

VARIANTS = {
    "native": {},
    "native-zero2": {"deepspeed": {"zero_stage": 2}},
    "native-zero2-fp32": {"deepspeed": {"zero_stage": 2}, "dtype": "float32"},
    "trl": {"backend": "trl"},
    "trl-zero2": {"backend": "trl", "deepspeed": {"zero_stage": 2}},
}
DEFAULT = ("native", "native-zero2", "trl", "trl-zero2")
SHOWN = ("eval/id_accuracy", "eval/ood_accuracy", "eval/sampled_reward", "eval/sft_ce")


def stage_ends(metrics: Path) -> list[dict]:
    """The eval figures at the last evaluated step of every stage, and its last trained step."""
    from ptbench.pipelines.tracking import Tracker

    everything = Tracker.read(metrics)
    rows = [r for r in everything if r.metric in SHOWN]
    ends: dict[str, dict] = {}
    for r in rows:
        end = ends.setdefault(r.stage, {"stage": r.stage, "step": -1})
        if r.step > end["step"]:
            end.clear()
            end.update(stage=r.stage, step=r.step)
        if r.step == end["step"]:
            end[r.metric.removeprefix("eval/")] = round(r.value, 4)
    for r in everything:  # how far training got, evaluated or not (a run cut by --timeout)
        if r.metric == "train/loss" and r.stage in ends:
            ends[r.stage]["trained_to"] = max(r.step, ends[r.stage].get("trained_to", 0))
    return list(ends.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--config", default="configs/tiny/sft_then_rl-arithmetic.yaml")
    p.add_argument("--quick", action="store_true", help="a few steps per stage (dry run)")
    p.add_argument("--timeout", type=float, default=150.0, help="seconds per variant")
    p.add_argument("--variants", nargs="*", default=list(DEFAULT), choices=list(VARIANTS))
    args = p.parse_args(argv)

    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(Path(args.config).read_text())
    if args.quick:
        base["stages"] = [{**s, "steps": 4} for s in base["stages"]]
        base["eval"] = {**base.get("eval", {}), "every": 2, "n_id": 8, "n_ood": 8, "n_reward": 8}
        base["base"] = {**base.get("base", {}), "steps": 5}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    summary = {"device": device, "torch": torch.__version__, "config": args.config, "runs": {}}
    for name in args.variants:
        config = {**base, **VARIANTS[name], "name": f"{base['name']}-{name}"}
        path = out / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        start = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "ptbench.cli", "run", str(path),
                                   "--out", str(out / name)], capture_output=True, text=True,
                                  timeout=args.timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-1500:]}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {args.timeout:.0f}s"
        metrics = out / name / "metrics.jsonl"
        run = {"status": status, "wall_s": round(time.perf_counter() - start, 1),
               "stage_ends": stage_ends(metrics) if metrics.exists() else []}
        summary["runs"][name] = run
        print(f"== {name} on {device}: {run['status'][:300]} ({run['wall_s']} s)", flush=True)
        for end in run["stage_ends"]:
            print("  ", end, flush=True)
        tmp = out / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, out / "summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
