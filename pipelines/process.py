"""Process-wide settings a run changes (seeds, torch threads), restored when it ends."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import torch

from ptbench.pipelines import distributed

THREADS_ENV = "PTBENCH_TORCH_THREADS"


@contextlib.contextmanager
def run_process_state(seed: int) -> Iterator[None]:
    """Seed torch (per rank: ranks sample different completions) and Python's RNG; on a CPU run
    torch on `PTBENCH_TORCH_THREADS` threads (default 1: tiny models run several times faster on
    one thread than on contended many). Thread count and RNG states are restored on exit."""
    threads, torch_rng, python_rng = torch.get_num_threads(), torch.get_rng_state(), random.getstate()
    torch.manual_seed(seed + distributed.rank())
    random.seed(seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(torch_rng)
        random.setstate(python_rng)
