"""Part 1 of `pytest bench/`: the update-equivalence probes over the installed frameworks.

Each configuration of the adapter registry is probed for every loss aggregation, objective and
optimizer; a combination the framework cannot express is skipped as unsupported, a
configuration whose packages are missing is skipped with what to install. Multi-process
configurations (world size 2, gloo on CPU) all run inside one torchrun launch per session.
"""

from __future__ import annotations

import itertools

import pytest

from ptbench.fixtures.probes import LOSS_AGGS, OBJECTIVES, OPTIMIZERS
from ptbench.fixtures.probes.adapters.registry import CONFIGS
from ptbench.fixtures.probes.launch import run_distributed

COMBOS = list(itertools.product(LOSS_AGGS, OBJECTIVES, OPTIMIZERS))


def _cases(world_size: int):
    return [pytest.param(c, agg, obj, opt, id=f"{c.name}-{obj}-{agg}-{opt}",
                         marks=[pytest.mark.gpu] if c.gpu_only else [])
            for c in CONFIGS if c.world_size == world_size for agg, obj, opt in COMBOS]


def _skip_if_missing(config) -> None:
    missing = config.missing()
    if missing:
        pytest.skip(f"{config.name}: not installed: {', '.join(missing)}")


@pytest.mark.parametrize(("config", "loss_agg", "objective", "optimizer"), _cases(1))
def test_update_equivalence(probe, ptbench_seeds, config, loss_agg, objective, optimizer):
    _skip_if_missing(config)
    for seed in ptbench_seeds:
        report = probe(config.make_step(), framework=config.name, loss_agg=loss_agg,
                       objective=objective, optimizer=optimizer, seed=seed)
        assert report.passed, str(report)


@pytest.fixture(scope="session")
def world_size_2_records(request) -> dict:
    """Every world-size-2 configuration whose packages are installed, in ONE torchrun launch."""
    names = [c.name for c in CONFIGS if c.world_size == 2 and not c.missing()]
    if not names:
        return {}
    seeds = request.config.getoption("--ptbench-seeds")
    records = run_distributed(2, configs=names, seeds=seeds)
    keyed: dict = {}
    for r in records:
        keyed.setdefault((r["framework"], r["loss_agg"], r["objective"], r["optimizer"]), []).append(r)
    return keyed


@pytest.mark.parametrize(("config", "loss_agg", "objective", "optimizer"), _cases(2))
def test_update_equivalence_world_size_2(world_size_2_records, ptbench_results, config, loss_agg,
                                         objective, optimizer):
    _skip_if_missing(config)
    records = world_size_2_records[(config.name, loss_agg, objective, optimizer)]
    for r in records:
        if ptbench_results is not None:
            ptbench_results.add(r)
    statuses = {r["status"] for r in records}
    if statuses == {"unsupported"}:
        pytest.skip(f"unsupported: {records[0]['reason']}")
    for r in records:
        assert r["status"] == "pass", r.get("text") or r.get("reason")
