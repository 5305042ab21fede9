"""The backend interface: a third backend plugs in with one line and no ptbench module edited,
and a config is checked against its backend when it is loaded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ptbench.pipelines.backends import BACKENDS, register_backend
from ptbench.pipelines.config import ConfigError, PipelineConfig, from_dict
from ptbench.pipelines.run import run_pipeline
from ptbench.pipelines.tracking import Tracker


class SGDStep:
    """Plain SGD on the token-mean cross-entropy, written from the `TrainStep` protocol alone."""

    engine = None

    def __init__(self, model: torch.nn.Module, lr: float) -> None:
        self.model, self.optimizer = model, torch.optim.SGD(model.parameters(), lr=lr)
        self.losses: list[float] = []
        self.closed = False

    def __call__(self, micro_batches):
        self.model.train()
        device = next(self.model.parameters()).device
        tokens = sum(int((mb["labels"][:, 1:] != -100).sum()) for mb in micro_batches)
        total = 0.0
        for mb in micro_batches:
            mb = {k: v.to(device) for k, v in mb.items()}
            logits = self.model(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"]).logits
            loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), mb["labels"][:, 1:],
                                   ignore_index=-100, reduction="sum") / tokens
            loss.backward()
            total += float(loss.detach())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses.append(total)
        return {"loss": total, "grad_norm": None}

    def pop_clip_fraction(self) -> float:
        return 0.0

    def close(self) -> None:
        self.closed = True


class ToyBackend:
    """SFT only, token-mean only, one process."""

    name = "toy"
    stage_kinds = frozenset({"sft"})

    def __init__(self) -> None:
        self.steps: list[SGDStep] = []

    def check(self, config: PipelineConfig) -> None:
        for i, stage in enumerate(config.stages):
            if stage.loss_agg != "token-mean":
                raise ConfigError(f"stages[{i}].loss_agg: the toy backend trains token-mean "
                                  f"only, got {stage.loss_agg!r}")

    def check_launch(self, config: PipelineConfig, world_size: int) -> None:
        if world_size != 1:
            raise ConfigError(f"backend: the toy backend runs one process, got {world_size}")

    def sft_step(self, ctx, stage):
        self.steps.append(SGDStep(ctx.model, stage.lr))
        return self.steps[-1]

    def rl_step(self, ctx, stage):
        raise AssertionError("never called: the toy backend declares no rl stage")

    def rl_micro_batch_size(self, stage):
        return None


TINY = {
    "name": "toy-run", "model": "tiny:probe-qwen2", "task": {"name": "arithmetic"}, "backend": "toy",
    "base": {"steps": 2, "batch_size": 8},
    "eval": {"every": 2, "n_id": 4, "n_ood": 4, "n_demos": 4, "n_reward": 4},
    "stages": [{"kind": "sft", "steps": 3, "batch_size": 8, "micro_batch_size": 3, "lr": 0.1}],
}


@pytest.fixture
def toy():
    backend = register_backend(ToyBackend())  # the one line a new backend needs
    yield backend
    del BACKENDS["toy"]


def test_a_registered_backend_runs_a_tiny_config(toy, tmp_path):
    rows = Tracker.read(run_pipeline(from_dict(PipelineConfig, TINY), tmp_path / "run",
                                     cache=tmp_path / "cache"))
    (step,) = toy.steps
    logged = [r.value for r in rows if r.metric == "train/loss"]
    assert logged == pytest.approx(step.losses) and len(logged) == 3
    assert step.closed, "the runner closes a stage's step when the stage ends"
    ce = [r.value for r in rows if r.metric == "eval/sft_ce"]
    assert len(ce) == 3 and ce[-1] < ce[0], "its SGD steps trained the model"


def test_a_registered_backend_checks_configs_at_load(toy):
    rl = {"kind": "rl", "steps": 2}
    with pytest.raises(ConfigError, match=r"stages\[1\].kind: the 'toy' backend has no 'rl' stage"):
        from_dict(PipelineConfig, {**TINY, "stages": [*TINY["stages"], rl]})
    sum_agg = {**TINY["stages"][0], "loss_agg": "seq-mean-token-sum"}
    with pytest.raises(ConfigError, match=r"stages\[0\].loss_agg: the toy backend trains token-mean"):
        from_dict(PipelineConfig, {**TINY, "stages": [sum_agg]})


def test_an_unregistered_backend_is_a_config_error():
    with pytest.raises(ConfigError, match=r"backend: expected one of 'native', 'trl', got 'toy'"):
        from_dict(PipelineConfig, TINY)
