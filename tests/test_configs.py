"""Every shipped pipeline config validates (tiny ones run in the slow benchmark; paper ones only
on GPUs). Comparison files: tests/test_comparison.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ptbench.pipelines.config import ConfigError, load_config
from ptbench.pipelines.run import run_pipeline
from ptbench.pipelines.schedule import lr_factor
from ptbench.pipelines.tracking import Tracker

CONFIGS = sorted(p for folder in ("tiny", "paper")
                 for p in (Path(__file__).resolve().parents[1] / "configs" / folder).glob("*.yaml"))
PIPELINES = ("sft", "rl", "sft_then_rl", "rl_then_sft", "truncated_sft_then_rl",
             "mixed_policy_luffy", "mixed_policy_srft")


def test_every_pipeline_has_tiny_configs_for_both_cpu_tasks():
    names = {p.stem for p in CONFIGS if p.parent.name == "tiny"}
    assert names == ({f"{p}-{t}" for p in PIPELINES for t in ("arithmetic", "generalpoints")}
                     | {"sft_then_rl-cola", "rl_then_sft-cola"})  # the CoLA diagnostics study
    assert len([p for p in CONFIGS if p.parent.name == "paper"]) == 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_validates(path):
    config = load_config(path)
    assert config.name == path.stem
    if path.parent.name == "paper":
        assert not config.model.startswith("tiny:") and config.hardware["gpus"] == 8
        assert config.deepspeed is not None and config.deepspeed.zero_stage == 2
        rl = [s for s in config.stages if s.kind == "rl"]
        assert all(s.generation == ("vllm" if config.backend == "trl" else "ptbench") for s in rl)
    truncated = [s for s in config.stages if s.budget_steps]
    assert bool(truncated) == path.stem.startswith("truncated"), "only truncated pipelines cut RL"
    if path.stem.startswith("truncated"):
        assert truncated[0].kind == "rl" and truncated[0].budget_steps == 50


def shrunk(config, backend: str):
    """The same pipeline, stages and options, two steps a stage on a smaller batch."""
    stages = [replace(s, steps=2, batch_size=4, group_size=min(s.group_size, 4),
                      budget_steps=1 if s.budget_steps else None,
                      off_policy_per_group=min(s.off_policy_per_group, 1))
              for s in config.stages]
    return replace(config, backend=backend, stages=stages,
                   base=replace(config.base, steps=2, batch_size=8),
                   eval=replace(config.eval, every=1, n_id=4, n_ood=4, n_demos=4, n_reward=4))


TINY = [p for p in CONFIGS if p.parent.name == "tiny"]


@pytest.mark.parametrize("backend", ["native", "trl"])
@pytest.mark.parametrize("path", TINY, ids=lambda p: p.stem)
def test_tiny_pipeline_runs_end_to_end(path, backend, tmp_path_factory):
    """Every tiny pipeline runs with both backends where the backend supports its stages (and
    is refused when the config is made, naming the field, where it does not: the mixed-policy
    stages on TRL); it writes rows for every stage."""
    out, cache = tmp_path_factory.mktemp(path.stem), tmp_path_factory.getbasetemp() / "cache"
    if backend == "trl" and path.stem.startswith("mixed_policy"):
        with pytest.raises(ConfigError, match=r"stages\[\d\]\.kind: the 'trl' backend has no"):
            shrunk(load_config(path), backend)  # refused at load, before any work
        return
    config = shrunk(load_config(path), backend)
    rows = Tracker.read(run_pipeline(config, out, cache=cache))
    assert {r.stage for r in rows} == {f"{i}:{s.kind}" for i, s in enumerate(config.stages)}
    for i, s in enumerate(config.stages):
        steps = {r.step for r in rows if r.stage == f"{i}:{s.kind}" and r.metric == "train/loss"}
        assert steps == set(range(1, (s.budget_steps or s.steps) + 1)), (i, steps)
    assert {"eval/id_accuracy", "eval/ood_accuracy", "eval/sft_ce"} <= {r.metric for r in rows}


def test_lr_schedule():
    from ptbench.pipelines.config import StageConfig

    cosine = StageConfig(kind="sft", steps=10, warmup_steps=2, lr_schedule="cosine")
    assert [round(lr_factor(cosine, s), 3) for s in (1, 2, 3, 10)] == [0.333, 0.667, 0.962, 0.0]
    assert lr_factor(StageConfig(kind="sft", steps=10), 7) == 1.0
