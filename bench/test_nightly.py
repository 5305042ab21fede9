"""Part 2 of the CPU default: one shortened tiny pipeline and a handful of timings, all recorded
in the results store, so the nightly report has training curves and a pipeline or speed
regression shows up in it.

The pipeline is `configs/tiny/sft_then_rl-arithmetic.yaml` cut to 300 SFT and 30 RL steps (about
1.5 minutes on 2 cores): SFT lifts ID accuracy from about 0.02 to about 0.9 there, so a change
that costs SFT its learning fails here and shows in the report. Timings use pytest-benchmark's
pedantic mode (a few rounds each) and go to the store as `timing` measurements, judged by
`ptbench report` against the history's own spread.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ptbench.fixtures.probes import check_update_equivalence
from ptbench.fixtures.probes.adapters.torch_plain import TorchStep
from ptbench.pipelines.config import load_config
from ptbench.pipelines.run import run_pipeline
from ptbench.pipelines.tracking import Tracker

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny" / "sft_then_rl-arithmetic.yaml"
SHORTENED = ("stages.0.steps=300", "stages.1.steps=30", "eval.every=50", "eval.n_id=100",
             "eval.n_ood=50", "eval.n_reward=64")


def test_sft_then_rl_arithmetic_shortened(ptbench_recorder, tmp_path):
    config = load_config(CONFIG, overrides=SHORTENED)
    path = run_pipeline(config, tmp_path / "run")
    ptbench_recorder.add_pipeline_metrics(path, config)
    rows = Tracker.read(path)
    accuracy = [r.value for r in rows if r.stage == "0:sft" and r.metric == "eval/id_accuracy"]
    assert accuracy[-1] >= accuracy[0] + 0.3, f"SFT did not learn: ID accuracy {accuracy}"


@pytest.fixture(autouse=True)
def one_thread():
    """Timings on one torch thread, as the pipelines run on a CPU (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _timed(benchmark, recorder, metric: str, fn, rounds: int) -> None:
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    recorder.add_timing(metric, benchmark)


def test_timing_probe(benchmark, ptbench_recorder):
    """One update-equivalence probe of the plain PyTorch adapter (model, data, reference, check)."""
    _timed(benchmark, ptbench_recorder, "timing/probe",
           lambda: check_update_equivalence(TorchStep, seed=0), rounds=5)


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    """The untrained 0.6M-parameter policy of the arithmetic task, its tokenizer, the task."""
    from ptbench.fixtures.models import tiny_base_model
    from ptbench.fixtures.tasks import get_task

    task = get_task("arithmetic")
    model, tokenizer = tiny_base_model("qwen2-0.6m", lambda: task.corpus(500, seed=0), seed=0,
                                       key=["timing"], cache=tmp_path_factory.mktemp("base"))
    return model, tokenizer, task


def test_timing_training_step(benchmark, ptbench_recorder, tiny_policy):
    """One native SFT step (64 demonstrations, 4 micro-batches) of the 0.6M-parameter model."""
    from ptbench.pipelines.backends.native import NativeTrainStep
    from ptbench.pipelines.data import demonstration_batch, split_micro_batches

    model, tokenizer, task = tiny_policy
    examples = task.examples("train", 64, seed=0)
    batch = demonstration_batch(tokenizer, [e.prompt for e in examples],
                                [e.demonstration for e in examples])
    step = NativeTrainStep(model, torch.optim.AdamW(model.parameters(), lr=1e-4), across_ranks=False)
    _timed(benchmark, ptbench_recorder, "timing/training_step",
           lambda: step(split_micro_batches(batch, 16)), rounds=10)


def test_timing_generation(benchmark, ptbench_recorder, tiny_policy):
    """Sampling 8 completions of 5 tokens for each of 16 prompts (one RL step's rollouts)."""
    from ptbench.pipelines.rollout import generate

    model, tokenizer, task = tiny_policy
    prompts = [e.prompt for e in task.examples("train", 16, seed=1)]
    _timed(benchmark, ptbench_recorder, "timing/generation",
           lambda: generate(model, tokenizer, prompts, max_new_tokens=5, num_return=8), rounds=5)
