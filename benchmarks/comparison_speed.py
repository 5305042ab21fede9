"""Trials of a comparison in parallel: the same small comparison run with 1 and with N workers.

    python benchmarks/comparison_speed.py [--jobs 2]

A 6-trial comparison on the 0.6M arithmetic model (two pipelines, three seeds, 60 SFT steps
each); the base models are built once beforehand so both runs only train. Prints each wall time
and the speed-up (on 2 idle cores the ideal is 2.0; each trial runs torch on one thread).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from ptbench.comparison.config import load_comparison
from ptbench.comparison.runner import run_comparison

PIPELINE = {"model": "tiny:qwen2-0.6m", "task": {"name": "arithmetic"},
            "stages": [{"kind": "sft", "steps": 1000, "batch_size": 64}]}
COMPARISON = {
    "name": "speed", "task": {"name": "arithmetic", "options": {"ood": "tens-carry"}},
    "base": {"steps": 20}, "seeds": [0, 1, 2], "search": {"trials": 1},
    "eval": {"every": 100000, "n_id": 50, "n_ood": 50, "n_val": 50, "n_demos": 16,
             "n_reward": 16, "max_new_tokens": 5},
    "budget": {"points": [1.4e11]},
    "pipelines": {"a": {"config": "a.yaml"}, "b": {"config": "b.yaml",
                                                  "settings": {"stages.0.lr": 3e-4}}},
}


def timed(folder: Path, workers: int, cache: str) -> float:
    comparison = load_comparison(folder / "comparison.yaml")
    start = time.perf_counter()
    run_comparison(comparison, folder / f"out-{workers}", workers=workers, cache=cache,
                   say=lambda _: None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in ("a", "b"):
            (folder / f"{name}.yaml").write_text(yaml.safe_dump({**PIPELINE, "name": name}))
        (folder / "comparison.yaml").write_text(yaml.safe_dump(COMPARISON))
        cache = str(folder / "cache")
        warm = yaml.safe_load((folder / "comparison.yaml").read_text())
        warm["budget"]["points"] = [1.0e9]
        (folder / "warm.yaml").write_text(yaml.safe_dump({**warm, "name": "warm"}))
        run_comparison(load_comparison(folder / "warm.yaml"), folder / "warm", workers=args.jobs,
                       cache=cache, say=lambda _: None)  # builds the three base models
        one = timed(folder, 1, cache)
        many = timed(folder, args.jobs, cache)
    print(f"6 trials: 1 worker {one:.1f} s, {args.jobs} workers {many:.1f} s: "
          f"speed-up {one / many:.2f}x")


if __name__ == "__main__":
    main()
