"""Part 2 of `pytest bench/`: the tiny CPU pipelines, over seeds (slow: `--ptbench-slow`).

    pytest bench/test_pipelines.py --ptbench-slow --ptbench-seeds 3 --ptbench-results out/

Runs sft_then_rl and rl_then_sft on arithmetic for each seed and checks what a correct pipeline
must show on this task: SFT raises ID accuracy well above the base model, and RL after SFT does
not lose it. The non-decoupling signals (SFT cross-entropy during RL after SFT; reward during
SFT after RL) are measured and recorded, not asserted: they are findings to report, whichever
way they go.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ptbench.pipelines.config import load_config
from ptbench.pipelines.run import run_pipeline
from ptbench.pipelines.tracking import Tracker

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tiny"


def _value(rows, stage: str, metric: str, at: str) -> float:
    picked = [r for r in rows if r.stage == stage and r.metric == metric]
    return (picked[0] if at == "start" else picked[-1]).value


def _run(name: str, seed: int, tmp_path_factory) -> list:
    config = load_config(CONFIGS / f"{name}.yaml")
    config = type(config)(**{**config.__dict__, "seed": seed})
    out = tmp_path_factory.mktemp(f"{name}-{seed}")
    return Tracker.read(run_pipeline(config, out))


@pytest.mark.slow
def test_sft_then_rl_arithmetic(ptbench_seeds, ptbench_results, tmp_path_factory):
    for seed in ptbench_seeds:
        rows = _run("sft_then_rl-arithmetic", seed, tmp_path_factory)
        base = _value(rows, "0:sft", "eval/id_accuracy", "start")
        after_sft = _value(rows, "0:sft", "eval/id_accuracy", "end")
        after_rl = _value(rows, "1:rl", "eval/id_accuracy", "end")
        record = {
            "pipeline": "sft_then_rl-arithmetic", "seed": seed, "base_id_accuracy": base,
            "sft_id_accuracy": after_sft, "rl_id_accuracy": after_rl,
            "rl_reward_start": _value(rows, "1:rl", "eval/sampled_reward", "start"),
            "rl_reward_end": _value(rows, "1:rl", "eval/sampled_reward", "end"),
            "rl_sft_ce_start": _value(rows, "1:rl", "eval/sft_ce", "start"),
            "rl_sft_ce_end": _value(rows, "1:rl", "eval/sft_ce", "end"),
            "ood_accuracy_end": _value(rows, "1:rl", "eval/ood_accuracy", "end"),
        }
        if ptbench_results is not None:
            ptbench_results.add(record)
        assert after_sft >= base + 0.3, record
        assert after_rl >= after_sft - 0.05, record


@pytest.mark.slow
def test_rl_then_sft_arithmetic(ptbench_seeds, ptbench_results, tmp_path_factory):
    for seed in ptbench_seeds:
        rows = _run("rl_then_sft-arithmetic", seed, tmp_path_factory)
        record = {
            "pipeline": "rl_then_sft-arithmetic", "seed": seed,
            "rl_reward_start": _value(rows, "0:rl", "eval/sampled_reward", "start"),
            "rl_reward_end": _value(rows, "0:rl", "eval/sampled_reward", "end"),
            "sft_reward_start": _value(rows, "1:sft", "eval/sampled_reward", "start"),
            "sft_reward_end": _value(rows, "1:sft", "eval/sampled_reward", "end"),
            "sft_id_accuracy": _value(rows, "1:sft", "eval/id_accuracy", "end"),
        }
        if ptbench_results is not None:
            ptbench_results.add(record)
        assert record["sft_id_accuracy"] >= 0.3, record
