"""Part 1 of `pytest bench/`: the update-equivalence probes over the installed frameworks.

Each configuration of the adapter registry is probed for exactly the combinations (objective,
loss_agg, optimizer) it declares. A declared combination must pass: one the adapter answers
`Unsupported` fails with the adapter's reason. A skip means only that the configuration's
packages are missing (with what to install) or that it needs a GPU. Multi-process configurations
(world size 2, gloo on CPU) all run inside one torchrun launch per session. The plugin prints a
summary table (framework x objective/loss_agg) at the end of the session.
"""

from __future__ import annotations

import pytest

from ptbench.fixtures.probes.adapters.registry import CONFIGS
from ptbench.fixtures.probes.launch import run_distributed


def _cases(world_size: int):
    return [pytest.param(c, d.loss_agg, d.objective, d.optimizer,
                         id=f"{c.name}-{d.objective}-{d.loss_agg}-{d.optimizer}",
                         marks=[pytest.mark.ptbench_probe(framework=c.name, objective=d.objective,
                                                          loss_agg=d.loss_agg, optimizer=d.optimizer),
                                *([pytest.mark.gpu] if c.gpu_only else [])])
            for c in CONFIGS if c.world_size == world_size for d in c.declares]


def _skip_if_missing(config) -> None:
    why = config.unavailable()
    if why:
        pytest.skip(f"{config.name}: {why}")


@pytest.mark.parametrize(("config", "loss_agg", "objective", "optimizer"), _cases(1))
def test_update_equivalence(probe, ptbench_seeds, config, loss_agg, objective, optimizer):
    _skip_if_missing(config)
    for seed in ptbench_seeds:
        report = probe(config.make_step(), framework=config.name, declared=True,
                       loss_agg=loss_agg, objective=objective, optimizer=optimizer, seed=seed,
                       precision=config.precision)
        assert report.passed, str(report)


@pytest.fixture(scope="session")
def world_size_2_records(request) -> dict:
    """Every world-size-2 configuration whose packages are installed, in ONE torchrun launch."""
    names = [c.name for c in CONFIGS if c.world_size == 2 and not c.unavailable()]
    if not names:
        return {}
    seeds = request.config.getoption("--ptbench-seeds")
    records = run_distributed(2, configs=names, seeds=seeds)
    keyed: dict = {}
    for r in records:
        keyed.setdefault((r["framework"], r["loss_agg"], r["objective"], r["optimizer"]), []).append(r)
    return keyed


@pytest.mark.parametrize(("config", "loss_agg", "objective", "optimizer"), _cases(2))
def test_update_equivalence_world_size_2(request, world_size_2_records, ptbench_results,
                                         ptbench_recorder, config, loss_agg, objective, optimizer):
    _skip_if_missing(config)
    records = world_size_2_records.get((config.name, loss_agg, objective, optimizer))
    if not records:
        pytest.fail(f"{config.name}: the torchrun launch wrote no record for this declared "
                    "combination", pytrace=False)
    for r in records:
        if ptbench_results is not None:
            ptbench_results.add(r)
        ptbench_recorder.add_probe_record(r, test_id=request.node.nodeid)
    for r in records:
        if r["status"] == "unsupported":
            pytest.fail(f"declared but unsupported: {r['reason']}", pytrace=False)
        if r["status"] == "error":
            raise RuntimeError(f"{config.name} raised (seed {r['seed']}):\n{r['reason']}")
        assert r["status"] == "pass", r.get("text") or r.get("reason")
