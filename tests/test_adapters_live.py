"""Every real-framework adapter passes on the installed release and fails with a planted bug.

An adapter that passed without ever being seen to fail could be probing nothing; so each one is
run twice: as installed (must pass, several seeds) and with a monkeypatch that puts a known
accumulation or normalization bug back into the framework (must fail).
"""

from __future__ import annotations

import importlib.util

import pytest

from ptbench.fixtures.probes import check_update_equivalence
from ptbench.fixtures.probes.adapters import registry
from ptbench.fixtures.probes.launch import run_distributed
from ptbench.fixtures.probes.plant import plant

# (adapter, objective, loss_agg, planted bug that must make it fail)
LIVE = [
    *[("ptbench-native", obj, agg, "native-local-normalizers")
      for obj in ("ce", "pg") for agg in ("token-mean", "seq-mean-token-sum-norm")],
    ("hf-trainer", "ce", "token-mean", "trainer-drops-num-items"),
    # TRL through the pipelines' whole-stage driver: framework bugs, and bugs planted in
    # ptbench's own driver (what users' TRL runs go through), plain and under ZeRO-2 offload
    *[(f"trl-sft{z}", "ce", "token-mean", bug) for z in ("", "-z2-offload")
      for bug in ("trainer-drops-num-items", "trl-stage-stale-batches")],
    ("trl-sft-z2-offload", "ce", "token-mean", "deepspeed-offload-drops-middle"),
    *[(f"trl-grpo-{t}{z}", "pg", agg, bug)
      for t, agg in (("dapo", "token-mean"), ("grpo", "seq-mean-token-mean"),
                     ("dr_grpo", "seq-mean-token-sum-norm"))
      for z in ("", "-z2-offload") for bug in ("grpo-double-ga-scaling", "trl-stage-stale-batches")],
    *[("trl-grpo-dapo" + z, "pg", "token-mean", "trl-stage-local-num-items")
      for z in ("", "-z2-offload")],
    ("trl-grpo-dapo-z2-offload", "pg", "token-mean", "deepspeed-offload-drops-middle"),
    *[(f"deepspeed-z{s}{'-offload' if o else ''}-ws1", obj, "token-mean", "deepspeed-no-gas-scaling")
      for s, o in registry.DEEPSPEED_ZERO for obj in ("ce", "pg")],
    # DeepSpeed's bf16 mode: the planted bugs still fail at bf16's tolerance (0.031)
    *[(f"deepspeed-z{z}-ws1-bf16", obj, "token-mean", "deepspeed-step-local-normalizer")
      for z in ("1", "2", "2-offload") for obj in ("ce", "pg")],
    *[("deepspeed-z2-offload-ws1-bf16", obj, "token-mean", "deepspeed-offload-drops-middle")
      for obj in ("ce", "pg")],
    ("deepspeed-z2-offload-ws1", "pg", "token-mean", "deepspeed-step-local-normalizer"),
    ("openrlhf-z2-ws1", "ce", "token-mean", "openrlhf-per-micro-batch-normalizer"),
    ("openrlhf-z2-ws1", "pg", "token-mean", "openrlhf-per-micro-batch-normalizer"),
]


def _skip_if_missing(config):
    if config.missing():
        pytest.skip(f"not installed: {config.missing()}")
    if config.name.startswith("openrlhf") and importlib.util.find_spec("openrlhf") is None:
        pytest.skip("openrlhf not installed (pip install --no-deps openrlhf)")


ADAPTERS = sorted({(name, objective, loss_agg) for name, objective, loss_agg, _ in LIVE})


@pytest.mark.parametrize(("name", "objective", "loss_agg"), ADAPTERS,
                         ids=[f"{n}-{o}" for n, o, _ in ADAPTERS])
def test_adapter_passes_as_installed(name, objective, loss_agg):
    config = registry.get(name)
    _skip_if_missing(config)
    declared = [(seed, optimizer) for seed, optimizer in ((0, "sgd"), (1, "sgd"), (2, "adamw"))
                if (objective, loss_agg, optimizer) in config.declares]
    assert declared, f"{name} declares no optimizer for {objective} {loss_agg}"
    for seed, optimizer in declared:
        report = check_update_equivalence(config.make_step(), loss_agg=loss_agg, objective=objective,
                                          optimizer=optimizer, seed=seed, framework=name,
                                          precision=config.precision)
        assert report.passed, str(report)


@pytest.mark.parametrize(("name", "objective", "loss_agg", "bug"), LIVE,
                         ids=[f"{n}-{o}-{bug}" for n, o, _, bug in LIVE])
def test_adapter_fails_with_planted_bug(name, objective, loss_agg, bug):
    """Without the bug the same adapter passes (`test_adapter_passes_as_installed`)."""
    config = registry.get(name)
    _skip_if_missing(config)
    with plant(bug):
        report = check_update_equivalence(config.make_step(), loss_agg=loss_agg, objective=objective,
                                          optimizer="sgd", seed=0, framework=name,
                                          precision=config.precision)
    assert not report.passed, f"{name} still passes with {bug} planted: the adapter is not live"


@pytest.mark.parametrize("objective", ["ce", "pg"])
def test_deepspeed_offload_bug_is_caught_where_it_lives(objective):
    """The real 0.15.2-0.18.9 bug, replanted: ZeRO-2 offload drops the middle micro-batches;
    ZeRO-1 offload and ZeRO-3 offload do not take that code path and stay correct."""
    _skip_if_missing(registry.get("deepspeed-z2-offload-ws1"))
    with plant("deepspeed-offload-drops-middle"):
        reports = {name: check_update_equivalence(registry.get(name).make_step(), objective=objective,
                                                  seed=0, framework=name)
                   for name in ("deepspeed-z1-offload-ws1", "deepspeed-z2-offload-ws1",
                                "deepspeed-z3-offload-ws1", "deepspeed-z2-ws1")}
    bad = reports.pop("deepspeed-z2-offload-ws1")
    assert not bad.passed
    assert "micro-batches 2-5 of 6 look dropped" in str(bad), str(bad)
    assert bad.steps[0].grad_norm_rel_error > 0.05, "DeepSpeed's own grad norm shows it too"
    for name, report in reports.items():
        assert report.passed, f"{name}: {report}"


@pytest.fixture(scope="module")
def world_size_2():
    """All world-size-2 DeepSpeed configurations in one launch, then one with the bug planted."""
    if registry.get("deepspeed-z2-offload-ws2").missing():
        pytest.skip("deepspeed not installed")
    clean = run_distributed(2, configs=[c.name for c in registry.CONFIGS if c.world_size == 2])
    planted = run_distributed(2, configs=["deepspeed-z2-offload-ws2", "deepspeed-z1-offload-ws2"],
                              plant="deepspeed-offload-drops-middle")
    native = run_distributed(2, configs=["ptbench-native-ws2"], plant="native-local-normalizers")
    return clean, planted + native


def test_world_size_2_passes_on_installed_deepspeed(world_size_2):
    clean, _ = world_size_2
    ran = [r for r in clean if r["status"] != "unsupported"]
    assert {r["framework"] for r in ran} == {c.name for c in registry.CONFIGS if c.world_size == 2}
    for r in ran:
        assert r["status"] == "pass", r.get("text") or r.get("reason")


def test_world_size_2_catches_offload_bug_per_rank(world_size_2):
    _, planted = world_size_2
    by_config = {}
    for r in planted:
        if r["status"] != "unsupported":
            by_config.setdefault(r["framework"], []).append(r)
    assert all(r["status"] == "fail" for r in by_config["deepspeed-z2-offload-ws2"])
    assert all(r["status"] == "pass" for r in by_config["deepspeed-z1-offload-ws2"])
    sgd = next(r for r in by_config["deepspeed-z2-offload-ws2"] if r["optimizer"] == "sgd")
    # ranks hold micro-batches (1, 3, 5) and (2, 4, 6): each drops its middle one
    assert "micro-batches 3-4 of 6 look dropped" in sgd["text"], sgd["text"]
    # ptbench's native backend at world size 2 passes clean and fails with local normalizers
    assert any(r["status"] == "fail" for r in by_config["ptbench-native-ws2"])
