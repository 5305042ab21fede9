"""The coupling diagnostics: the REINFORCE estimate against the exact gradient of the expected
reward, and a run with diagnostics on trains exactly as with them off."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import pytest
import torch

from ptbench.fixtures.models.tiny import TINY_PRESETS, TinyModelSpec, build_tiny_model
from ptbench.fixtures.models.tokenizer import train_tokenizer
from ptbench.fixtures.tasks import get_task
from ptbench.fixtures.tasks.base import Example
from ptbench.pipelines.config import ConfigError, DiagnosticsConfig, PipelineConfig, from_dict
from ptbench.pipelines.diagnostics import reinforce_rollouts
from ptbench.pipelines.misalignment import rl_gradient
from ptbench.pipelines.run import run_pipeline
from ptbench.pipelines.tracking import Tracker
from tests.test_pipeline_run import TINY


class FirstDigit:
    """Reward 1 when the completion starts with `digit`: J = pi(digit | prompt), exactly."""

    def __init__(self, digit: str) -> None:
        self.digit = digit

    def reward(self, example, completion: str) -> float:
        return float(completion.startswith(self.digit))


@pytest.fixture(scope="module")
def policy():
    tokenizer = train_tokenizer(get_task("arithmetic").corpus(200, seed=0))
    spec = TinyModelSpec(**{**asdict(TINY_PRESETS["probe-qwen2"]), "vocab_size": len(tokenizer)})
    return build_tiny_model(spec, seed=1), tokenizer


def exact_gradient(model, tokenizer, prompt: str, digit: str) -> torch.Tensor:
    """grad pi(digit | prompt) by autograd through the softmax (no sampling)."""
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    target = tokenizer(digit, add_special_tokens=False)["input_ids"][0]
    prob = torch.softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)[target]
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(prob, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).double()
                      for g, p in zip(grads, params, strict=True)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reinforce_estimate_matches_the_exact_reward_gradient(policy, seed):
    """Averaged over many rollouts, -grad(policy loss) with leave-one-out advantages is grad J.
    Groups of 2 make a wrong baseline scale visible (mean-centring alone halves it)."""
    model, tokenizer = policy
    prompt, digit = "12+34=", "6"
    exact = exact_gradient(model, tokenizer, prompt, digit)
    torch.manual_seed(seed)
    example = Example(prompt=prompt, demonstration="64.", answer="64")
    batch, rewards = reinforce_rollouts(model, tokenizer, FirstDigit(digit), [example] * 1500,
                                        group_size=2, max_new_tokens=1, temperature=1.0)
    assert 0 < float(rewards.mean()) < 1
    estimate = -rl_gradient(model, batch, loss_agg="seq-mean-token-sum")
    cosine = float(estimate @ exact / (estimate.norm() * exact.norm()))
    assert cosine > 0.9, cosine
    assert float(estimate.norm() / exact.norm()) == pytest.approx(1.0, abs=0.2)


def test_leave_one_out_advantages_by_hand(policy):
    model, tokenizer = policy
    torch.manual_seed(0)
    example = Example(prompt="12+34=", demonstration="64.", answer="64")
    batch, rewards = reinforce_rollouts(model, tokenizer, FirstDigit("6"), [example] * 4,
                                        group_size=4, max_new_tokens=1, temperature=1.0)
    r = rewards.tolist()
    expected = [r[i] - sum(r[j] for j in range(4) if j != i) / 3 for i in range(4)]
    assert batch["advantages"][:4].tolist() == pytest.approx(expected)


def _tiny(**changes) -> PipelineConfig:
    return from_dict(PipelineConfig, {**TINY, **changes})


def test_diagnostics_do_not_change_training(tmp_path):
    """Same rows with diagnostics on as off (forked RNG), plus every diagnostic at every eval
    point after the first (the first has no previous point for the secant estimates)."""
    off = Tracker.read(run_pipeline(_tiny(), tmp_path / "off"))
    on = Tracker.read(run_pipeline(_tiny(diagnostics={"n_prompts": 2, "group_size": 3}), tmp_path / "on"))
    measured = [(r.global_step, r.metric, r.value) for r in on if not r.metric.startswith("diag/")]
    assert measured == [(r.global_step, r.metric, r.value) for r in off]
    evals = sorted({r.global_step for r in on if r.metric == "eval/sft_ce"})
    diag = {(r.global_step, r.metric): r.value for r in on if r.metric.startswith("diag/")}
    for step in evals:
        assert math.isfinite(diag[(step, "diag/sft_grad_norm")]) and diag[(step, "diag/sft_grad_norm")] > 0
        assert (step, "diag/rl_grad_sq") in diag and (step, "diag/probe_reward") in diag
    for step in evals[1:]:
        assert diag[(step, "diag/step_length")] >= 0
    sft_evals = sorted({r.global_step for r in on if r.metric == "eval/sft_ce" and r.stage == "0:sft"})
    for step in sft_evals[1:]:  # SFT moves the weights; the tiny RL stage has no reward signal
        assert diag[(step, "diag/step_length")] > 0 and diag[(step, "diag/sft_smoothness")] > 0


def test_diagnostics_config_is_checked():
    with pytest.raises(ConfigError, match=r"group_size: expected an integer >= 2"):
        DiagnosticsConfig(group_size=1)
    with pytest.raises(ConfigError, match=r"diagnostics: expected none under deepspeed"):
        _tiny(diagnostics={}, deepspeed={"zero_stage": 2})
    assert replace(DiagnosticsConfig(), n_prompts=3).n_prompts == 3
