"""The probe's public contract: arguments, data, errors, report."""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch

from ptbench.fixtures.models import build_tiny_model
from ptbench.fixtures.probes import (
    LOSS_AGGS,
    ProbeOptimizer,
    Unsupported,
    check_update_equivalence,
    equivalence,
)
from ptbench.fixtures.probes.adapters.torch_plain import make_step
from ptbench.fixtures.probes.data import make_probe_batches, validate_micro_batches
from ptbench.fixtures.probes.diagnose import row_weights
from ptbench.fixtures.probes.equivalence import TOLERANCE, per_row_gradients


def test_contract_call_passes_on_plain_pytorch():
    report = check_update_equivalence(make_step, loss_agg="token-mean", objective="ce",
                                      optimizer="sgd", seed=0)
    assert report.passed, str(report)
    assert report.rel_error < report.tolerance
    assert len(report.steps) >= 2
    assert all(s.grad_norm_rel_error is not None and s.grad_norm_rel_error < 1e-4
               for s in report.steps)
    assert json.loads(json.dumps(report.to_dict()))["passed"] is True
    assert "PASS" in str(report)


def test_probe_data_makes_bugs_visible():
    for seed in range(5):
        mbs = make_probe_batches(seed, vocab_size=64)
        assert len(mbs) >= 3
        widths = [mb["input_ids"].shape[1] for mb in mbs]
        tokens = [int((mb["labels"][:, 1:] != -100).sum()) for mb in mbs]
        assert len(set(widths)) == len(widths)
        assert len(set(tokens)) > 1
        masked = [bool((mb["labels"][:, 0] == -100).all() and mb["attention_mask"][:, 0].all())
                  for mb in mbs]
        assert any(masked) and not all(masked), "rows with and without a masked prompt"
        assert any((mb["attention_mask"] == 0).any() for mb in mbs), "right padding present"
        for mb in mbs:
            pad = mb["attention_mask"] == 0
            assert (mb["labels"][pad] == -100).all()
            # right padding: once a row is padded it stays padded
            assert (mb["attention_mask"].diff(dim=1) <= 0).all()
        assert min(tokens) < 0.5 * sum(tokens) / len(tokens), "a clearly smallest micro-batch"
        validate_micro_batches(mbs, "pg")


def test_reference_updates_of_any_two_loss_aggs_differ_far_beyond_tolerance():
    model = build_tiny_model("probe-qwen2", seed=0).train()
    for seed, objective in itertools.product(range(3), ("ce", "pg")):
        mbs = make_probe_batches(seed, vocab_size=64)
        row_grads = per_row_gradients(model, mbs)
        grads = {agg: row_weights(mbs, agg, objective) @ row_grads for agg in LOSS_AGGS}
        for a, b in itertools.combinations(LOSS_AGGS, 2):
            diff = float((grads[a] - grads[b]).norm() / grads[a].norm())
            assert diff > 100 * TOLERANCE["sgd"], (a, b, seed, objective, diff)
            # token-mean, seq-mean-token-sum and seq-mean-token-sum-norm differ only by a
            # uniform factor (sum n_i, N, N*T): AdamW cannot tell them apart, SGD can.
            cosine = float(grads[a] @ grads[b] / (grads[a].norm() * grads[b].norm()))
            if "seq-mean-token-mean" in (a, b):
                assert cosine < 1 - 1e-4, (a, b, cosine)
            else:
                assert cosine > 1 - 1e-9, (a, b, cosine)


def test_unknown_loss_agg_is_a_clear_error():
    with pytest.raises(ValueError, match="loss_agg: expected one of .*token-mean.*got 'mean'"):
        check_update_equivalence(make_step, loss_agg="mean")
    with pytest.raises(ValueError, match="objective"):
        check_update_equivalence(make_step, objective="dpo")
    with pytest.raises(ValueError, match="optimizer"):
        check_update_equivalence(make_step, optimizer="lion")


def test_micro_batch_without_labels_is_a_clear_error():
    mbs = make_probe_batches(0, vocab_size=64)
    del mbs[2]["labels"]
    with pytest.raises(ValueError, match=r"micro_batches\[2\]: missing field 'labels'"):
        validate_micro_batches(mbs, "ce")
    mbs = make_probe_batches(0, vocab_size=64)
    del mbs[1]["advantages"]
    with pytest.raises(ValueError, match=r"micro_batches\[1\]: missing field 'advantages'"):
        validate_micro_batches(mbs, "pg")


def test_make_step_returning_no_callable_is_a_clear_error():
    with pytest.raises(TypeError, match="make_step: expected to return a callable"):
        check_update_equivalence(lambda model, opt: None)


def test_unsupported_propagates_and_is_never_a_pass_or_fail():
    def make(model, opt):
        raise Unsupported("this framework has no seq-mean-token-sum")
    with pytest.raises(Unsupported, match="no seq-mean-token-sum"):
        check_update_equivalence(make, loss_agg="seq-mean-token-sum")


def test_step_gets_fresh_copies_and_opt_describes_the_step(monkeypatch):
    made: list[list[dict]] = []  # the probe's own micro-batches, as make_probe_batches built them
    pristine: list[list[dict]] = []  # and a copy of them, to see that no step changed them

    def recording_make_probe_batches(*args, **kwargs):
        mbs = make_probe_batches(*args, **kwargs)
        made.append(mbs)
        pristine.append(copy.deepcopy(mbs))
        return mbs

    monkeypatch.setattr(equivalence, "make_probe_batches", recording_make_probe_batches)
    seen: list[list[dict]] = []

    def make(model, opt):
        assert isinstance(opt, ProbeOptimizer)
        assert (opt.name, opt.loss_agg, opt.objective, opt.grad_accum) == ("sgd", "token-mean", "pg", 6)
        assert opt.weight_decay == 0.0 and opt.lr > 0
        inner = make_step(model, opt)

        def step(mbs):
            seen.append(mbs)
            out = inner(mbs)
            for mb in mbs:  # a step may mutate its input
                mb["labels"].fill_(-100)
                mb["advantages"].zero_()
            return out
        return step

    report = check_update_equivalence(make, objective="pg")
    assert report.passed, str(report)
    assert len(seen) == len(made) == 2
    for step_mbs, probe_mbs, before in zip(seen, made, pristine, strict=True):
        for got, own, kept in zip(step_mbs, probe_mbs, before, strict=True):
            assert got["labels"] is not own["labels"], "the step got the probe's own tensors"
            for key in kept:  # the step's mutation did not reach the probe's data
                assert torch.equal(own[key], kept[key]), key


def test_wrong_reported_grad_norm_fails():
    def make(model, opt):
        inner = make_step(model, opt)
        return lambda mbs: {"grad_norm": inner(mbs)["grad_norm"] * 1.01}
    report = check_update_equivalence(make)
    assert not report.passed
    assert "grad norm" in report.diagnosis


@pytest.fixture
def three_threads():
    """torch at 3 threads: neither the probe's own 1 nor what an earlier test may have left
    (the pipeline runner sets 1 and keeps it), so a missing restore shows."""
    original = torch.get_num_threads()
    torch.set_num_threads(3)
    assert torch.get_num_threads() == 3
    yield
    torch.set_num_threads(original)


def test_probe_steps_on_one_thread_and_restores_the_thread_count(three_threads):
    during: list[int] = []

    def make(model, opt):
        inner = make_step(model, opt)

        def step(mbs):
            during.append(torch.get_num_threads())
            return inner(mbs)
        return step

    assert check_update_equivalence(make).passed
    assert during == [1, 1], "the probe runs torch single-threaded"
    assert torch.get_num_threads() == 3


def test_probe_restores_the_thread_count_when_the_step_raises(three_threads):
    def make(model, opt):
        raise Unsupported("no such mode here")

    with pytest.raises(Unsupported):
        check_update_equivalence(make)
    assert torch.get_num_threads() == 3


def test_deepspeed_config_that_cannot_run_is_a_clear_error():
    from ptbench.fixtures.probes.adapters.deepspeed_engine import deepspeed_config

    opt = ProbeOptimizer("sgd", 0.1, "token-mean", "ce", 6)
    with pytest.raises(ValueError, match="offload: ZeRO stage 0 cannot offload the optimizer"):
        deepspeed_config(0, True, opt, rows=2, grad_accum=6, world=1)
    with pytest.raises(ValueError, match=r"stage: expected one of \(0, 1, 2, 3\), got 4"):
        deepspeed_config(4, False, opt, rows=2, grad_accum=6, world=1)
    config = deepspeed_config(2, True, opt, rows=2, grad_accum=3, world=2)
    assert config["train_batch_size"] == 12 and config["zero_optimization"]["offload_optimizer"]
