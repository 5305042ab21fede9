"""Pipelines at world size 2 (torchrun, gloo on CPU): a step on two ranks is the step on one,
for the native backend and for TRL's trainers (which run their own DDP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from ptbench.pipelines.config import ConfigError, PipelineConfig, from_dict
from ptbench.pipelines.run import check_launch, run_pipeline
from ptbench.pipelines.tracking import Tracker

SFT_THEN_RL = {
    "name": "ws", "model": "tiny:probe-qwen2", "task": {"name": "arithmetic"},
    "base": {"steps": 3, "batch_size": 8},
    "eval": {"every": 3, "n_id": 4, "n_ood": 4, "n_demos": 4, "n_reward": 4},
    "stages": [
        {"kind": "sft", "steps": 3, "batch_size": 8, "micro_batch_size": 3},
        {"kind": "rl", "steps": 2, "lr": 1e-4, "batch_size": 2, "group_size": 3,
         "max_new_tokens": 4, "kl_coef": 0.01},
        # The tiny model's rollouts earn no reward yet, so GRPO's advantages are all zero here;
        # LUFFY's demonstrations (reward 1) give the policy-gradient path a real gradient.
        {"kind": "luffy", "steps": 1, "lr": 1e-4, "batch_size": 2, "group_size": 3,
         "max_new_tokens": 4},
        {"kind": "srft", "steps": 1, "lr": 1e-4, "batch_size": 2, "group_size": 3,
         "max_new_tokens": 4},
    ],
}


TWO_RANKS = pytest.mark.skipif(
    torch.cuda.device_count() == 1,
    reason="world size 2 runs on the CPU (gloo) or two CUDA devices (NCCL); this machine has one")
"""For tests that launch two ranks and compare them with one in-process run on this machine."""


def torchrun(config: dict, out, cache) -> subprocess.CompletedProcess:
    path = out.parent / f"{out.name}.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PTBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "ptbench.cli", "run", str(path), "--out", str(out), "--store", "none"],
        env=env, capture_output=True, text=True, timeout=600)


def final_weights(out) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    latest = (out / "checkpoints" / "latest").read_text().strip()
    return load_file(out / "checkpoints" / latest / "model.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same pipeline at world size 1 (in process) and 2 (torchrun)."""
    tmp = tmp_path_factory.mktemp("ws")
    sft_only = {**SFT_THEN_RL, "stages": SFT_THEN_RL["stages"][:1]}
    run_pipeline(from_dict(PipelineConfig, sft_only), tmp / "sft-ws1", cache=tmp / "cache")
    # Its own cache: rank 0 builds the base model (alone, as at world size 1) while rank 1 waits.
    done = torchrun(sft_only, tmp / "sft-ws2", tmp / "cache-ws2")
    assert done.returncode == 0, done.stderr[-4000:]
    done = torchrun(SFT_THEN_RL, tmp / "all-ws2", tmp / "cache-ws2")
    assert done.returncode == 0, done.stderr[-4000:]
    done = torchrun({**sft_only, "backend": "trl"}, tmp / "trl-sft-ws2", tmp / "cache-ws2")
    assert done.returncode == 0, done.stderr[-4000:]
    trl_rl = {**SFT_THEN_RL, "backend": "trl",
              "stages": [SFT_THEN_RL["stages"][0], {**SFT_THEN_RL["stages"][1], "kl_coef": 0.0}]}
    done = torchrun(trl_rl, tmp / "trl-all-ws2", tmp / "cache-ws2")
    assert done.returncode == 0, done.stderr[-4000:]
    return tmp


@TWO_RANKS
@pytest.mark.parametrize("ws2", ["sft-ws2", "trl-sft-ws2"], ids=["native", "trl"])
def test_sft_at_world_size_2_matches_world_size_1(runs, ws2):
    """Against the native backend at world size 1: the native backend element-wise (only the
    order of float sums differs), TRL within the backends' agreement tolerance (relative weight
    distance < 1e-4, as in test_native_and_trl_backends_agree_on_the_same_sft_run)."""
    one, two = final_weights(runs / "sft-ws1"), final_weights(runs / ws2)
    assert one.keys() == two.keys()
    if ws2 == "sft-ws2":
        for name in one:
            torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6,
                                       msg=lambda m, _n=name: f"{_n}: {m}")
    num = sum(float((one[k] - two[k]).double().pow(2).sum()) for k in one) ** 0.5
    den = sum(float(one[k].double().pow(2).sum()) for k in one) ** 0.5
    assert num / den < 1e-4

    def rows(out):
        return {(r.step, r.metric): r for r in Tracker.read(out / "metrics.jsonl")}

    a, b = rows(runs / "sft-ws1"), rows(runs / ws2)
    assert a.keys() == b.keys()
    for key, row in a.items():
        # Counts are global: the same tokens; FLOPs count padded positions, which depend on how
        # rows fall into micro-batches, so they are close to world size 1's, not half of them.
        assert b[key].tokens == row.tokens, key
        assert 0.8 * row.flops <= b[key].flops <= 1.25 * row.flops, key
        if key[1] in ("train/loss", "train/grad_norm", "eval/sft_ce"):
            assert b[key].value == pytest.approx(row.value, rel=1e-4), key


@TWO_RANKS
@pytest.mark.parametrize(("out", "stages"), [("all-ws2", ["0:sft", "1:rl", "2:luffy", "3:srft"]),
                                             ("trl-all-ws2", ["0:sft", "1:rl"])], ids=["native", "trl"])
def test_every_stage_runs_at_world_size_2(runs, out, stages):
    rows = Tracker.read(runs / out / "metrics.jsonl")
    assert sorted({r.stage for r in rows}) == stages
    per_step = [r for r in rows if r.metric == "train/reward"]
    rl_steps = sum(s["steps"] for s in SFT_THEN_RL["stages"][:len(stages)] if s["kind"] != "sft")
    assert len(per_step) == rl_steps and all(0.0 <= r.value <= 1.0 for r in per_step)
    flops = [r.flops for r in rows]
    assert flops == sorted(flops)
    generation = max(r.value for r in rows if r.metric == "flops/generation")
    assert generation > 0
    last = sum(s["steps"] for s in SFT_THEN_RL["stages"][:len(stages)])
    assert (runs / out / "checkpoints" / "latest").read_text().strip() == f"step-{last:06d}"


def test_world_size_errors_name_the_field():
    config = from_dict(PipelineConfig, {**SFT_THEN_RL, "stages": [
        {"kind": "sft", "steps": 1, "batch_size": 8},
        {"kind": "rl", "steps": 1, "batch_size": 3, "group_size": 2}]})
    with pytest.raises(ConfigError, match=r"stages\[1\].batch_size: expected a multiple of the "
                                          r"world size 2 x mini_batches 1, got 3"):
        check_launch(config, 2)
    check_launch(config, 1)
