"""Pipelines run end to end on a tiny model, write structured rows, and resume identically."""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import replace

import pytest
import torch

from ptbench.pipelines.config import ConfigError, PipelineConfig, from_dict, load_config
from ptbench.pipelines.run import run_pipeline
from ptbench.pipelines.tracking import Tracker

TINY = {
    "name": "t", "model": "tiny:probe-qwen2", "task": {"name": "arithmetic"},
    "base": {"steps": 3, "batch_size": 8},
    "eval": {"every": 2, "n_id": 4, "n_ood": 4, "n_demos": 4, "n_reward": 4},
    "checkpoint_every": 2,
    "stages": [
        {"kind": "sft", "steps": 3, "batch_size": 8, "micro_batch_size": 3},
        {"kind": "rl", "steps": 3, "lr": 1e-4, "batch_size": 2, "group_size": 3,
         "max_new_tokens": 4, "kl_coef": 0.01, "micro_batch_size": 4},
    ],
}


def _config(**changes) -> PipelineConfig:
    return from_dict(PipelineConfig, {**TINY, **changes})


def test_pipeline_runs_end_to_end_and_writes_rows(tmp_path):
    path = run_pipeline(_config(), tmp_path / "run", cache=tmp_path / "cache")
    rows = Tracker.read(path)
    metrics = {r.metric for r in rows}
    for m in ("eval/id_accuracy", "eval/ood_accuracy", "eval/sft_ce", "eval/sampled_reward",
              "eval/kl_to_base", "eval/param_dist_stage_start", "train/reward",
              "train/nonzero_adv_groups", "flops/train", "flops/generation", "flops/extra_forward"):
        assert m in metrics, m
    assert {r.stage for r in rows} == {"0:sft", "1:rl"}
    flops = [r.flops for r in rows]
    assert flops == sorted(flops) and flops[-1] > 0, "FLOPs only accumulate"
    ends = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*"))
    assert ends == ["step-000002", "step-000003", "step-000005", "step-000006"]
    assert (tmp_path / "run" / "checkpoints" / "step-000003" / "config.json").exists()


@pytest.mark.parametrize("killed_at", [4, 5], ids=["after-stage-boundary", "mid-stage"])
def test_killed_run_resumes_with_identical_results(tmp_path, killed_at):
    full = run_pipeline(_config(), tmp_path / "full", cache=tmp_path / "cache")
    run_pipeline(_config(), tmp_path / "cut", cache=tmp_path / "cache", stop_after=killed_at)
    resumed = run_pipeline(_config(), tmp_path / "cut", cache=tmp_path / "cache", resume=True)

    def values(path):
        return [(r.stage, r.step, r.metric, r.value) for r in Tracker.read(path)
                if not r.metric.startswith("wall")]

    assert values(resumed) == values(full)
    a = torch.load(tmp_path / "full" / "checkpoints" / "step-000006" / "trainer_state.pt",
                   weights_only=False)
    b = torch.load(tmp_path / "cut" / "checkpoints" / "step-000006" / "trainer_state.pt",
                   weights_only=False)
    assert a["ledger"] == b["ledger"] and a["tokens"] == b["tokens"]


@pytest.mark.parametrize(("change", "message"), [
    ({"stagez": []}, "config: unknown key(s) stagez"),
    ({"seed": "zero"}, "config.seed: expected int"),
    ({"stages": [{"kind": "rl", "steps": 5, "group_size": 1}]}, "stages[0].group_size: expected an integer >= 2"),
    ({"stages": [{"kind": "rl", "steps": 5, "budget_steps": 50}]}, "stages[0].budget_steps: expected an integer between 1 and the stage's steps (5)"),
    ({"stages": [{"kind": "sft", "steps": 5, "loss_agg": "mean"}]}, "stages[0].loss_agg: expected one of"),
    ({"stages": [{"kind": "sft", "stepz": 5}]}, "stages[0]: unknown key(s) stepz"),
    ({"stages": []}, "stages: expected at least one stage"),
    ({"stages": [{"kind": "rl", "steps": 5, "batch_size": 4, "mini_batches": 3}]},
     "stages[0].mini_batches: expected an integer >= 1 dividing batch_size (4)"),
    ({"stages": [{"kind": "srft", "steps": 5, "num_iterations": 2}]},
     "stages[0].num_iterations: expected 1 (a 'srft' stage takes one update per batch)"),
])
def test_config_errors_name_the_field(change, message):
    with pytest.raises(ConfigError) as err:
        _config(**change)
    assert message in str(err.value)


def test_unknown_stage_kind_and_backend_fail_at_load():
    with pytest.raises(ConfigError, match=r"stages\[0\].kind: expected one of .*rl.*sft"):
        _config(stages=[{"kind": "dpo", "steps": 2}])
    with pytest.raises(ConfigError, match=r"backend: expected one of 'native', 'trl'.*got 'jax'"):
        _config(backend="jax")
    with pytest.raises(ConfigError, match=r"task.name: expected one of .*arithmetic"):
        _config(task={"name": "chess"})
    with pytest.raises(ConfigError, match=r"model: expected 'tiny:' \+ one of"):
        _config(model="tiny:gpt5")


def test_load_config_reads_yaml_and_reports_the_file(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text(json.dumps(TINY))
    assert load_config(good).stages[1].group_size == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: tiny:probe-qwen2\ntask: {name: arithmetic}\nstages: [{kind: sft}]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: config.stages\[0\].steps: required"):
        load_config(bad)


@pytest.mark.parametrize("kind", ["luffy", "srft"])
def test_mixed_policy_stages_run(tmp_path, kind):
    stage = {"kind": kind, "steps": 2, "lr": 1e-4, "batch_size": 2, "group_size": 4,
             "max_new_tokens": 4, "advantage_scale": "none"}
    config = _config(stages=[{"kind": "sft", "steps": 1, "batch_size": 4}, stage], checkpoint_every=0)
    rows = Tracker.read(run_pipeline(config, tmp_path / kind, cache=tmp_path / "cache"))
    names = {r.metric for r in rows if r.stage == f"1:{kind}"}
    assert {"train/reward", "eval/sft_ce"} <= names
    if kind == "srft":
        weights = [r.value for r in rows if r.metric == "train/sft_weight"]
        assert weights and all(0 < w <= 0.5 for w in weights)


def test_luffy_shapes_demonstration_rows_only(monkeypatch):
    """Off-policy rows take -A*pi/(pi+gamma); on-policy rows the clipped surrogate against the
    sampler's logprobs; one token mean over the step's global count. Hand values, the model's
    logprobs replaced by chosen ones.

    row 0 (off-policy, A = +2): pi = [0.5, 0.1], gamma = 0.2
        loss  -2 * 0.5/0.7 = -10/7,  -2 * 0.1/0.3 = -2/3
        dloss/dlogp = -A * gamma * pi / (pi + gamma)^2: -2 * 0.1/0.49, -2 * 0.02/0.09
    row 1 (on-policy, A = -1): pi = [0.6, 0.4], sampler's [0.4, 0.8] -> ratios 1.5, 0.5
        loss  max(1.5, 1.2) = 1.5;  max(0.5, 0.8) = 0.8 (clipped)
        dloss/dlogp = -A * r = 1.5 unclipped; 0 clipped
    token-mean over the step's 8 loss tokens (this micro-batch holds 4 of them):
        (-10/7 - 2/3 + 1.5 + 0.8) / 8 = (2.3 - 44/21) / 8 = 0.025595238...
    """
    from ptbench.pipelines.backends import native
    from ptbench.pipelines.backends.native import NativeTrainStep, StepNormalizers

    logp = torch.tensor([[0.5, 0.1], [0.6, 0.4]]).log().requires_grad_()
    mask = torch.ones(2, 2, dtype=torch.bool)
    monkeypatch.setattr(native, "token_logprobs", lambda model, mb: (logp, mask))
    mb = {"advantages": torch.tensor([2.0, -1.0]), "off_policy": torch.tensor([True, False]),
          "old_logprobs": torch.tensor([[0.0, 0.0], [math.log(0.4), math.log(0.8)]])}
    model = torch.nn.Linear(1, 1)
    step = NativeTrainStep(model, torch.optim.SGD(model.parameters(), lr=0.0), objective="pg",
                           shaping_gamma=0.2)
    loss = step.micro_batch_loss(mb, StepNormalizers(num_tokens=8.0, num_seqs=4.0, max_len=2))
    torch.testing.assert_close(loss, torch.tensor((2.3 - 44 / 21) / 8), rtol=0, atol=1e-6)
    (grad,) = torch.autograd.grad(loss, logp)
    expected = torch.tensor([[-2 * 0.1 / 0.49 / 8, -2 * 0.02 / 0.09 / 8], [1.5 / 8, 0.0]])
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-6)
    assert step.pop_clip_fraction() == 0.5, "1 of the 2 on-policy tokens clipped; off-policy rows not counted"


def test_native_and_trl_backends_agree_on_the_same_sft_run(tmp_path):
    """Same data, same optimizer, same clipping: TRL's SFTTrainer and the native step agree.

    Tolerance: 1e-4 relative on every tracked SFT loss and eval cross-entropy, and on the final
    weights (float order differs between the two loops; AdamW amplifies it only slowly).
    """
    sft = {"kind": "sft", "steps": 6, "batch_size": 8, "micro_batch_size": 3, "lr": 3e-3}
    runs = {}
    for backend in ("native", "trl"):
        config = _config(stages=[sft], backend=backend, checkpoint_every=0)
        rows = Tracker.read(run_pipeline(config, tmp_path / backend, cache=tmp_path / "cache"))
        runs[backend] = {(r.step, r.metric): r.value for r in rows
                         if r.metric in ("train/loss", "eval/sft_ce", "train/grad_norm")}
    assert runs["native"].keys() == runs["trl"].keys() and len(runs["native"]) > 10
    for key, value in runs["native"].items():
        assert runs["trl"][key] == pytest.approx(value, rel=1e-4), key
    from safetensors.torch import load_file

    wa = load_file(tmp_path / "native" / "checkpoints" / "step-000006" / "model.safetensors")
    wb = load_file(tmp_path / "trl" / "checkpoints" / "step-000006" / "model.safetensors")
    num = sum(float((wa[k] - wb[k]).double().pow(2).sum()) for k in wa) ** 0.5
    den = sum(float(wa[k].double().pow(2).sum()) for k in wa) ** 0.5
    assert num / den < 1e-4


def test_trl_backend_rl_stage_runs(tmp_path):
    rl = {"kind": "rl", "steps": 3, "lr": 1e-4, "batch_size": 2, "group_size": 3,
          "max_new_tokens": 4}
    rows = Tracker.read(run_pipeline(_config(stages=[rl], backend="trl", checkpoint_every=0),
                                     tmp_path / "trl-rl", cache=tmp_path / "cache"))
    assert len([r for r in rows if r.metric == "train/reward"]) == 3


@pytest.mark.parametrize(("stage", "message"), [
    ({"kind": "luffy", "steps": 2}, r"stages\[1\].kind: the 'trl' backend has no 'luffy' stage"),
    ({"kind": "rl", "steps": 2, "loss_agg": "seq-mean-token-sum"},
     r"stages\[1\].loss_agg: the TRL backend supports"),
    ({"kind": "rl", "steps": 2, "kl_coef": 0.1}, r"stages\[1\].kl_coef: .* without a reference model"),
    ({"kind": "sft", "steps": 2, "loss_agg": "seq-mean-token-mean"},
     r"stages\[1\].loss_agg: .*declares token-mean only"),
    ({"kind": "rl", "steps": 2, "num_iterations": 2},
     r"stages\[1\].num_iterations: the TRL backend takes one"),
])
def test_trl_backend_refuses_at_load_what_trl_cannot_express(tmp_path, stage, message):
    """An sft -> X config that TRL cannot run is refused when it is loaded (and when a field is
    replaced), before any training: the SFT stage never starts."""
    sft = {"kind": "sft", "steps": 2, "batch_size": 4}
    with pytest.raises(ConfigError, match=message):
        _config(stages=[sft, stage], backend="trl")
    native = _config(stages=[sft, stage])
    with pytest.raises(ConfigError, match=message):
        replace(native, backend="trl")
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({**TINY, "stages": [sft, stage], "backend": "trl"}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_rl_truncated_by_flops_budget(tmp_path):
    """budget_flops stops the stage once the pipeline's FLOPs reach it, and the next stage runs."""
    rl = {"kind": "rl", "steps": 10, "lr": 1e-4, "batch_size": 2, "group_size": 3,
          "max_new_tokens": 4, "budget_flops": 1.0}
    sft = {"kind": "sft", "steps": 1, "batch_size": 4}
    rows = Tracker.read(run_pipeline(_config(stages=[rl, sft], checkpoint_every=0),
                                     tmp_path / "budget", cache=tmp_path / "cache"))
    rl_steps = {r.step for r in rows if r.stage == "0:rl" and r.metric == "train/reward"}
    assert rl_steps == {1}, "the first step already spends more than 1 FLOP"
    assert any(r.stage == "0:rl" and r.step == 1 and r.metric == "eval/id_accuracy" for r in rows), \
        "a truncated stage ends with an eval point"
    assert any(r.stage == "1:sft" and r.metric == "train/loss" for r in rows)


def test_reused_rollouts_are_clipped_and_counted(tmp_path, monkeypatch):
    """num_iterations x mini_batches updates per rollout batch; from the second update the ratio
    moves, so clipping shows; the sampler's logprobs cost one extra forward pass."""
    from ptbench.fixtures.tasks.arithmetic import ArithmeticTask

    # An untrained model earns no reward; a reward that varies gives the updates advantages.
    monkeypatch.setattr(ArithmeticTask, "reward", lambda self, ex, text: float(sum(map(ord, text)) % 2))
    rl = {"kind": "rl", "steps": 2, "lr": 3e-2, "batch_size": 4, "group_size": 4,
          "max_new_tokens": 4, "num_iterations": 2, "mini_batches": 2, "clip_eps": 0.05}
    rows = Tracker.read(run_pipeline(_config(stages=[rl], checkpoint_every=0),
                                     tmp_path / "ppo", cache=tmp_path / "cache"))
    updates = [r.value for r in rows if r.metric == "train/updates"]
    clipped = [r.value for r in rows if r.metric == "train/clip_fraction"]
    assert updates == [4.0, 4.0]
    assert max(clipped) > 0.0 and all(0.0 <= c <= 1.0 for c in clipped)
    assert max(r.value for r in rows if r.metric == "flops/extra_forward") > 0

    one = {**rl, "num_iterations": 1, "mini_batches": 1}
    rows = Tracker.read(run_pipeline(_config(stages=[one], checkpoint_every=0),
                                     tmp_path / "on-policy", cache=tmp_path / "cache"))
    assert [r.value for r in rows if r.metric == "train/clip_fraction"] == [0.0, 0.0]
    assert max(r.value for r in rows if r.metric == "flops/extra_forward") == 0


def test_trl_backend_generates_and_scores_its_own_rollouts(tmp_path, monkeypatch):
    """generation: trl -> GRPOTrainer samples prompts from the train pool and generates; the
    task's verifier scores each completion, and TRL's logged mean reward is that score's mean.
    (The tiny model earns no arithmetic reward yet: a reward by completion length varies.)"""
    from ptbench.fixtures.tasks.arithmetic import ArithmeticTask

    monkeypatch.setattr(ArithmeticTask, "reward", lambda self, example, text: float(len(text) % 3))
    rl = {"kind": "rl", "steps": 3, "lr": 1e-4, "batch_size": 2, "group_size": 3,
          "max_new_tokens": 4, "generation": "trl"}
    rows = Tracker.read(run_pipeline(_config(stages=[rl], backend="trl", checkpoint_every=0),
                                     tmp_path / "run", cache=tmp_path / "cache"))
    by = {(r.step, r.metric): r.value for r in rows}
    for step in (1, 2, 3):
        assert by[(step, "train/trl_reward")] == pytest.approx(by[(step, "train/reward")], abs=1e-6)
        # groups as TRL formed them: its share of all-equal groups is ours
        assert 1 - by[(step, "train/trl_frac_reward_zero_std")] == pytest.approx(
            by[(step, "train/nonzero_adv_groups")], abs=1e-6)
        assert by[(step, "flops/generation")] > by[(step - 1, "flops/generation")]
        assert by[(step, "flops/train")] > by[(step - 1, "flops/train")]
    assert sum(by[(step, "train/reward")] for step in (1, 2, 3)) > 0
    assert sum(by[(step, "train/grad_norm")] for step in (1, 2, 3)) > 0


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_generation_without_vllm_fails_at_launch_naming_the_field(tmp_path):
    sft = {"kind": "sft", "steps": 2, "batch_size": 4}
    stage = {"kind": "rl", "steps": 1, "batch_size": 2, "group_size": 3, "generation": "vllm"}
    config = _config(stages=[sft, stage], backend="trl")  # loads: vLLM may exist where it runs
    with pytest.raises(ConfigError, match=r"stages\[1\].generation: vLLM is not available"):
        run_pipeline(config, tmp_path / "x", cache=tmp_path / "c")
    assert not (tmp_path / "x" / "metrics.jsonl").exists(), "refused before any work"


@pytest.mark.parametrize(("changes", "stage", "message"), [
    ({}, {"kind": "rl", "steps": 1, "generation": "trl"}, "generation: 'trl' is TRL's generation"),
    ({"backend": "trl"}, {"kind": "sft", "steps": 1, "generation": "trl"},
     "generation: expected 'ptbench' for a 'sft' stage"),
    ({"backend": "trl"}, {"kind": "rl", "steps": 1, "generation": "hf"},
     "generation: expected 'ptbench', 'trl' or 'vllm'"),
])
def test_generation_errors_name_the_field_at_load(changes, stage, message):
    with pytest.raises(ConfigError, match=message):
        _config(stages=[stage], **changes)


def test_a_task_with_fewer_training_rows_than_the_pool_runs(tmp_path):
    """The CoLA fixture has 5 training sentences: the run draws from all of them, and the
    tiny base model's corpus cycles through them."""
    from ptbench.fixtures.tasks import get_task
    from ptbench.pipelines.run import TRAIN_POOL, train_pool

    task = get_task("cola")
    assert len(train_pool(task, 0)) == task.size("train", 0) < TRAIN_POOL
    assert len(task.corpus(40, seed=0)) == 40
    config = _config(task={"name": "cola"}, eval={"every": 2, "n_id": 2, "n_ood": 2, "n_demos": 2,
                                                  "n_reward": 2})
    rows = Tracker.read(run_pipeline(config, tmp_path / "cola"))
    assert {r.stage for r in rows} == {"0:sft", "1:rl"}
