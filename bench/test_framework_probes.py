"""Part 1 of `pytest bench/`: the update-equivalence probes over the installed frameworks.

Each configuration of the adapter registry is probed for every loss aggregation, objective and
optimizer it declares; a combination it cannot express is skipped as unsupported, a
configuration whose packages are missing is skipped with the install hint.
"""

from __future__ import annotations

import itertools

import pytest
from ptbench.fixtures.probes import LOSS_AGGS, OBJECTIVES, OPTIMIZERS
from ptbench.fixtures.probes.adapters.registry import CONFIGS

SINGLE_PROCESS = [c for c in CONFIGS if c.world_size == 1]


def _marks(config):
    return [pytest.mark.gpu] if config.gpu_only else []


CASES = [pytest.param(c, agg, obj, opt, id=f"{c.name}-{obj}-{agg}-{opt}", marks=_marks(c))
         for c in SINGLE_PROCESS
         for agg, obj, opt in itertools.product(LOSS_AGGS, OBJECTIVES, OPTIMIZERS)]


@pytest.mark.parametrize(("config", "loss_agg", "objective", "optimizer"), CASES)
def test_update_equivalence(probe, ptbench_seeds, config, loss_agg, objective, optimizer):
    missing = config.missing()
    if missing:
        pytest.skip(f"{config.name}: not installed: {', '.join(missing)}")
    for seed in ptbench_seeds:
        report = probe(config.make_step(), framework=config.name, loss_agg=loss_agg,
                       objective=objective, optimizer=optimizer, seed=seed)
        assert report.passed, str(report)
