"""Wall time of all CPU probes together (target: under 120 s on 2 cores once ops are built).

    python benchmarks/probe_speed.py               # every installed configuration, 1 seed
    python benchmarks/probe_speed.py --cold-build  # first, time DeepSpeed's one-time op build

Runs the probe command line over every configuration (world size 1 in-process, world size 2 in
one torchrun launch) and prints the seconds and the ratio to the target. With --cold-build it
first builds DeepSpeed's CPU ops into an empty TORCH_EXTENSIONS_DIR and reports that separately.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

TARGET_S = 120.0
BUILD = ("from ptbench.fixtures.probes.adapters.deepspeed_engine import ensure_distributed;"
         "ensure_distributed();"
         "from deepspeed.ops.op_builder import CPUAdamBuilder; CPUAdamBuilder().load()")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--cold-build", action="store_true")
    args = p.parse_args()
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    if args.cold_build:
        env["TORCH_EXTENSIONS_DIR"] = tempfile.mkdtemp(prefix="ptbench-ext-")
        t = time.time()
        subprocess.run([sys.executable, "-c", BUILD], env=env, check=True, capture_output=True)
        print(f"one-time DeepSpeed op build (shm_comm + cpu_adam): {time.time() - t:.0f}s")
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "ptbench.cli", "probe"], env=env,
                          capture_output=True, text=True)
    elapsed = time.time() - t
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:])
    print(f"all CPU probes: {elapsed:.1f}s; ratio to the {TARGET_S:.0f}s target: {elapsed / TARGET_S:.2f}")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
