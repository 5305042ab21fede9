"""Both backends under DeepSpeed ZeRO (gloo on CPU): a step under the engine is the plain step,
at world size 1 and 2, with and without optimizer offload; a killed run resumes from the
engine's checkpoint with identical results; the comparison catches a dropped micro-batch (the
DeepSpeed offload bug class).

Native: ptbench's own engine (ZeRO 0-2). TRL: the trainer's engine, built by transformers and
accelerate from `TrainingArguments(deepspeed=...)`, over a whole stage in one `train()`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ptbench.pipelines.backends import native
from ptbench.pipelines.config import ConfigError, PipelineConfig, from_dict
from ptbench.pipelines.run import run_pipeline
from ptbench.pipelines.tracking import Tracker
from tests.test_pipeline_distributed import SFT_THEN_RL, TWO_RANKS, final_weights, torchrun

ZERO = {"zero0": {"zero_stage": 0}, "zero1": {"zero_stage": 1}, "zero2": {"zero_stage": 2},
        "zero2-offload": {"zero_stage": 2, "offload_optimizer": True}}


def _config(deepspeed: dict | None, **changes) -> PipelineConfig:
    """float32 everywhere, so that the comparison is element-wise on a GPU too."""
    return from_dict(PipelineConfig, {**SFT_THEN_RL, "deepspeed": deepspeed, "dtype": "float32",
                                      **changes})


def assert_same_weights(got: dict, want: dict) -> None:
    """Element-wise, as at world size 2 without DeepSpeed: only the order of float sums differs."""
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6,
                                   msg=lambda m, _n=name: f"{_n}: {m}")


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """sft + rl (KL) + luffy + srft without DeepSpeed, world size 1: the weights every run must
    reach."""
    tmp = tmp_path_factory.mktemp("plain")
    run_pipeline(_config(None), tmp / "run", cache=tmp / "cache")
    return final_weights(tmp / "run"), tmp / "cache"


@pytest.mark.parametrize("zero", list(ZERO))
def test_zero_stage_at_world_size_1_matches_the_plain_step(plain, tmp_path, zero):
    weights, cache = plain
    run_pipeline(_config(ZERO[zero]), tmp_path / zero, cache=cache)
    assert_same_weights(final_weights(tmp_path / zero), weights)


@pytest.fixture(scope="module")
def plain_ws2(tmp_path_factory):
    """The same pipeline without DeepSpeed at world size 2. RL stages compare against it, not
    against world size 1: each rank samples its own completions (seed + rank)."""
    tmp = tmp_path_factory.mktemp("plain-ws2")
    # Its own cache: rank 0 builds the base model while rank 1 waits (same seed, same weights).
    done = torchrun({**SFT_THEN_RL, "dtype": "float32"}, tmp / "run", tmp / "cache")
    assert done.returncode == 0, done.stderr[-4000:]
    return final_weights(tmp / "run"), tmp / "cache"


@TWO_RANKS
@pytest.mark.parametrize("zero", ["zero2", "zero2-offload"])
def test_zero_stage_at_world_size_2_matches_the_plain_step(plain_ws2, tmp_path, zero):
    weights, cache = plain_ws2
    done = torchrun({**SFT_THEN_RL, "deepspeed": ZERO[zero], "dtype": "float32"}, tmp_path / zero,
                    cache)
    assert done.returncode == 0, done.stderr[-4000:]
    assert_same_weights(final_weights(tmp_path / zero), weights)


ENDING_RANK = """
import glob, os, sys
import torch
from ptbench.pipelines import distributed
from ptbench.pipelines.backends import deepspeed as ds

def gloo_threads():
    names = []
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/comm"):
        try:
            names.append(open(path).read().strip())
        except OSError:  # a thread that just ended
            pass
    return names.count("pt_gloo_runloop")

def train():  # a stage: its engine is gone when the run ends
    model = torch.nn.Linear(4, 4)
    engine = ds.wrap(model, torch.optim.AdamW(model.parameters()), ds.engine_config(2))
    engine.destroy()

distributed.init_from_env()
train()
distributed.sum_over_ranks([1.0])
before = gloo_threads()
distributed.shutdown()
print("gloo threads", before, gloo_threads(), file=sys.stderr)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_shutdown_under_deepspeed_ends_the_gloo_threads(tmp_path):
    """DeepSpeed, imported after torchrun's group is joined, holds that group (and its own
    world group); gloo's worker threads end only with the last reference. Left running into
    interpreter finalization, one that frees a collective's tensors there aborts the rank at
    exit ("terminate called without an active exception"), intermittently. Deterministic
    here: after `shutdown()` no gloo worker thread is left."""
    script = tmp_path / "ending_rank.py"
    script.write_text(ENDING_RANK)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    counts = [line.split()[2:] for line in done.stderr.splitlines()
              if line.startswith("gloo threads")]
    assert len(counts) == 2, done.stderr[-4000:]
    for before, after in counts:
        assert int(before) > 0, "no thread named pt_gloo_runloop: has torch renamed them?"
        assert int(after) == 0, f"{after} gloo worker thread(s) outlived shutdown()"


def test_dropped_micro_batch_under_the_engine_is_caught(plain, tmp_path, monkeypatch):
    """Planted: the engine sees only the last micro-batch of each backward call (what
    DeepSpeed's CPU-offloaded ZeRO-2 did to intermediate micro-batches)."""
    weights, cache = plain
    original = native.NativeTrainStep.backward

    def last_only(self, micro_batches, **kwargs):
        return original(self, micro_batches[-1:], **kwargs)

    monkeypatch.setattr(native.NativeTrainStep, "backward", last_only)
    run_pipeline(_config(ZERO["zero2-offload"]), tmp_path / "bug", cache=cache)
    with pytest.raises(AssertionError):
        assert_same_weights(final_weights(tmp_path / "bug"), weights)


@pytest.mark.parametrize("killed_at", [2, 4], ids=["mid-sft", "mid-srft"])
def test_killed_zero2_run_resumes_with_identical_results(plain, tmp_path, killed_at):
    """Killed inside a stage whose every step moves the weights (the tiny RL stage's rewards are
    mostly all-equal, so its steps can be no-ops, which would hide a lost optimizer state)."""
    _, cache = plain
    sft, *_, srft = SFT_THEN_RL["stages"]
    config = _config(ZERO["zero2"], checkpoint_every=1, stages=[sft, {**srft, "steps": 3}])
    full = run_pipeline(config, tmp_path / "full", cache=cache)
    run_pipeline(config, tmp_path / "cut", cache=cache, stop_after=killed_at)
    resumed = run_pipeline(config, tmp_path / "cut", cache=cache, resume=True)

    def values(path):
        return [(r.stage, r.step, r.metric, r.value) for r in Tracker.read(path)
                if not r.metric.startswith("wall")]

    assert values(resumed) == values(full)
    assert (tmp_path / "cut" / "checkpoints" / f"step-{killed_at:06d}" / "deepspeed").is_dir()
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("section, changes, message", [
    ({"zero_stage": 3}, {}, "deepspeed.zero_stage: expected 0, 1 or 2"),
    ({"zero_stage": 0, "offload_optimizer": True}, {}, "deepspeed.offload_optimizer"),
    ({"zero_stage": 2, "offload": True}, {}, "deepspeed: unknown key(s) offload"),
])
def test_deepspeed_config_errors_name_the_field(section, changes, message):
    with pytest.raises(ConfigError) as err:
        _config(section, **changes)
    assert message in str(err.value)


TRL = {**SFT_THEN_RL, "backend": "trl",
       "stages": [SFT_THEN_RL["stages"][0], {**SFT_THEN_RL["stages"][1], "kl_coef": 0.0}]}


def relative_distance(a: dict, b: dict) -> float:
    num = sum(float((a[k] - b[k]).double().pow(2).sum()) for k in a) ** 0.5
    return num / sum(float(a[k].double().pow(2).sum()) for k in a) ** 0.5


@pytest.fixture(scope="module")
def trl_plain(tmp_path_factory):
    """TRL sft + GRPO without DeepSpeed, world size 1."""
    tmp = tmp_path_factory.mktemp("trl-plain")
    run_pipeline(from_dict(PipelineConfig, {**TRL, "dtype": "float32"}), tmp / "run",
                 cache=tmp / "cache")
    return final_weights(tmp / "run"), tmp / "cache"


@pytest.mark.parametrize("zero", ["zero2", "zero2-offload"])
def test_trl_under_zero_at_world_size_1_matches_trl_plain(trl_plain, tmp_path, zero):
    weights, cache = trl_plain
    config = from_dict(PipelineConfig, {**TRL, "dtype": "float32", "deepspeed": ZERO[zero]})
    run_pipeline(config, tmp_path / zero, cache=cache)
    assert_same_weights(final_weights(tmp_path / zero), weights)


@TWO_RANKS
def test_trl_under_zero2_at_world_size_2_matches_world_size_1(trl_plain, tmp_path):
    """Within the backends' agreement tolerance (relative weight distance < 1e-4), as TRL at
    world size 2 without DeepSpeed."""
    weights, _ = trl_plain
    done = torchrun({**TRL, "dtype": "float32", "deepspeed": ZERO["zero2"]}, tmp_path / "ws2",
                    tmp_path / "cache")
    assert done.returncode == 0, done.stderr[-4000:]
    assert relative_distance(final_weights(tmp_path / "ws2"), weights) < 1e-4


def test_killed_trl_zero2_run_resumes_with_identical_results(trl_plain, tmp_path):
    _, cache = trl_plain
    config = from_dict(PipelineConfig, {**TRL, "dtype": "float32", "deepspeed": ZERO["zero2"],
                                        "checkpoint_every": 1, "stages": TRL["stages"][:1]})
    full = run_pipeline(config, tmp_path / "full", cache=cache)
    run_pipeline(config, tmp_path / "cut", cache=cache, stop_after=2)
    resumed = run_pipeline(config, tmp_path / "cut", cache=cache, resume=True)

    def values(path):
        return [(r.stage, r.step, r.metric, r.value) for r in Tracker.read(path)
                if not r.metric.startswith("wall")]

    assert values(resumed) == values(full)
    assert (tmp_path / "cut" / "checkpoints" / "step-000002" / "deepspeed").is_dir()
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_deepspeed_run_leaves_no_state_behind(trl_plain, tmp_path):
    """transformers sets ACCELERATE_USE_DEEPSPEED and a DeepSpeed config, and accelerate keeps a
    process-wide state: after a DeepSpeed TRL run all are cleared, and a plain TRL run in the
    same process is plain. (Same weights alone cannot tell: a ZeRO-2 run reaches the plain run's
    weights by design.)"""
    from accelerate.state import AcceleratorState
    from transformers.integrations.deepspeed import deepspeed_config

    _, cache = trl_plain
    # checkpoint_every=1: a mid-stage checkpoint holds the engine's state when there is one
    sft_only = {**TRL, "dtype": "float32", "stages": TRL["stages"][:1], "checkpoint_every": 1}
    run_pipeline(from_dict(PipelineConfig, {**sft_only, "deepspeed": ZERO["zero2"]}),
                 tmp_path / "ds", cache=cache)
    assert "ACCELERATE_USE_DEEPSPEED" not in os.environ
    assert deepspeed_config() is None, "transformers still holds the run's DeepSpeed config"
    assert not AcceleratorState._shared_state, "accelerate still holds the run's state"
    run_pipeline(from_dict(PipelineConfig, sft_only), tmp_path / "plain", cache=cache)

    def engine_state(out):
        return (out / "checkpoints" / "step-000001" / "deepspeed").exists()

    assert engine_state(tmp_path / "ds"), "a DeepSpeed run checkpoints its engine"
    assert not engine_state(tmp_path / "plain"), "the plain run ran under DeepSpeed"
    assert_same_weights(final_weights(tmp_path / "plain"), final_weights(tmp_path / "ds"))
