"""CI's share of the slow benchmark: one seed of the arithmetic SFT-then-RL claim, RL shortened.

The full check (3 seeds, both tasks, both orders) is `pytest bench/test_pipelines.py
--ptbench-slow --ptbench-seeds 3`; this runs the shipped config with the RL stage cut to 20 steps.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ptbench.pipelines.config import load_config
from ptbench.pipelines.run import run_pipeline
from ptbench.pipelines.tracking import Tracker

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny" / "sft_then_rl-arithmetic.yaml"


def test_sft_raises_id_accuracy_well_above_the_base_and_rl_follows(tmp_path):
    config = load_config(CONFIG)
    sft, rl = config.stages
    config = replace(config, stages=[sft, replace(rl, steps=20)],
                     eval=replace(config.eval, every=300, n_ood=50))
    rows = Tracker.read(run_pipeline(config, tmp_path / "run", cache=tmp_path / "cache"))

    def at(stage: str, metric: str) -> list[float]:
        return [r.value for r in rows if r.stage == stage and r.metric == metric]

    base, after_sft = at("0:sft", "eval/id_accuracy")[0], at("0:sft", "eval/id_accuracy")[-1]
    assert base < 0.2, f"the base model should leave SFT work to do, got {base}"
    assert after_sft >= base + 0.3, (base, after_sft)
    assert len(at("1:rl", "train/reward")) == 20
    assert at("1:rl", "eval/id_accuracy")[-1] >= after_sft - 0.1, "20 RL steps lost what SFT learned"
