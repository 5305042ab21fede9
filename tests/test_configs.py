"""Every shipped config validates (tiny ones run in the slow benchmark; paper ones only on GPUs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptbench.pipelines.config import load_config
from ptbench.pipelines.run import lr_factor
from ptbench.pipelines.stages import build_stage

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*/*.yaml"))
PIPELINES = ("sft", "rl", "sft_then_rl", "rl_then_sft", "truncated_sft_then_rl",
             "mixed_policy_luffy", "mixed_policy_srft")


def test_every_pipeline_has_tiny_configs_for_both_cpu_tasks():
    names = {p.stem for p in CONFIGS if p.parent.name == "tiny"}
    assert names == {f"{p}-{t}" for p in PIPELINES for t in ("arithmetic", "generalpoints")}
    assert len([p for p in CONFIGS if p.parent.name == "paper"]) == 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_validates(path):
    config = load_config(path)
    assert config.name == path.stem
    for i, stage in enumerate(config.stages):
        build_stage(stage, i)  # every kind is a registered stage
    if path.parent.name == "paper":
        assert not config.model.startswith("tiny:") and config.hardware["gpus"] == 8
    truncated = [s for s in config.stages if s.budget_steps]
    assert bool(truncated) == path.stem.startswith("truncated"), "only truncated pipelines cut RL"
    if path.stem.startswith("truncated"):
        assert truncated[0].kind == "rl" and truncated[0].budget_steps == 50


def test_lr_schedule():
    from ptbench.pipelines.config import StageConfig

    cosine = StageConfig(kind="sft", steps=10, warmup_steps=2, lr_schedule="cosine")
    assert [round(lr_factor(cosine, s), 3) for s in (1, 2, 3, 10)] == [0.333, 0.667, 0.962, 0.0]
    assert lr_factor(StageConfig(kind="sft", steps=10), 7) == 1.0
