"""Eval points: ID/OOD accuracy, sampled reward, SFT cross-entropy, KL and parameter distance,
measured on held-out data drawn once per run."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ptbench.pipelines import losses
from ptbench.pipelines.config import EvalConfig
from ptbench.pipelines.data import IGNORE_INDEX, demonstration_batch, on_device
from ptbench.pipelines.logprobs import token_logprobs
from ptbench.pipelines.rollout import generate


def _rewards(task, examples, tokenizer, completions) -> list[float]:
    return [task.reward(ex, tokenizer.decode(c[0])) for ex, c in zip(examples, completions, strict=True)]


def greedy_accuracy(model, tokenizer, task, examples, max_new_tokens: int) -> float:
    """Mean verifier reward of greedy completions (exact-match accuracy for 0/1 rewards)."""
    completions = generate(model, tokenizer, [e.prompt for e in examples],
                           max_new_tokens=max_new_tokens, greedy=True)
    return sum(_rewards(task, examples, tokenizer, completions)) / len(examples)


def sampled_reward(model, tokenizer, task, examples, max_new_tokens: int, temperature: float) -> float:
    """Mean verifier reward of one sampled completion per prompt."""
    completions = generate(model, tokenizer, [e.prompt for e in examples],
                           max_new_tokens=max_new_tokens, temperature=temperature)
    return sum(_rewards(task, examples, tokenizer, completions)) / len(examples)


@torch.no_grad()
def demo_cross_entropy(model, batch: dict) -> float:
    """Token-mean SFT cross-entropy on held-out demonstrations (the completion tokens)."""
    logp, mask = token_logprobs(model, batch)
    return float(losses.sft_loss(logp, mask))


@torch.no_grad()
def demo_kl(model, reference, batch: dict) -> float:
    """Mean over demonstration tokens of KL(pi_model || pi_reference), exact over the vocabulary."""
    batch = on_device(batch, model)
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logp = torch.log_softmax(model(**kwargs).logits[:, :-1].float(), dim=-1)
    logq = torch.log_softmax(reference(**kwargs).logits[:, :-1].float(), dim=-1)
    per_token = (logp.exp() * (logp - logq)).sum(-1)
    return float(losses.aggregate(per_token, batch["labels"][:, 1:] != IGNORE_INDEX))


@torch.no_grad()
def parameter_distance(model, reference_params: dict[str, torch.Tensor]) -> float:
    """||theta - theta_ref||_2 over all parameters."""
    total = torch.zeros((), dtype=torch.float64)
    for name, p in model.named_parameters():
        total += (p.detach().double().cpu() - reference_params[name]).pow(2).sum()
    return float(total.sqrt())


@dataclass(frozen=True)
class HeldOut:
    """The fixed held-out data every eval point measures on (drawn from the run's seed)."""

    id: list
    ood: list
    val: list
    """Validation problems (choosing hyperparameters); empty unless `EvalConfig.n_val`."""
    reward: list
    """Prompts whose sampled reward is tracked (during SFT too)."""
    demos: dict
    """Demonstrations as one batch: their SFT cross-entropy is tracked (during RL too)."""

    @classmethod
    def draw(cls, task, tokenizer, config: EvalConfig, seed: int) -> HeldOut:
        demos = task.examples("id", config.n_demos, seed=seed + 2)
        return cls(id=task.examples("id", config.n_id, seed=seed),
                   ood=task.examples("ood", config.n_ood, seed=seed),
                   val=task.examples("val", config.n_val, seed=seed) if config.n_val else [],
                   reward=task.examples("id", config.n_reward, seed=seed + 1),
                   demos=demonstration_batch(tokenizer, [d.prompt for d in demos],
                                             [d.demonstration for d in demos]))


@dataclass(frozen=True)
class Anchor:
    """A frozen copy of the policy at some point (the base model, a stage's start), and its
    weights in float64 on the CPU: what KL and parameter distances are measured against."""

    model: torch.nn.Module
    params: dict[str, torch.Tensor]

    @classmethod
    def of(cls, model: torch.nn.Module, state_dict: dict | None = None) -> Anchor:
        """A copy of `model` (with `state_dict` loaded into the copy, when given)."""
        frozen = copy.deepcopy(model).eval()
        if state_dict is not None:
            frozen.load_state_dict(state_dict)
        return cls(frozen, {n: p.detach().double().cpu().clone() for n, p in frozen.named_parameters()})


def eval_max_new_tokens(config) -> int:
    """Tokens generated per eval completion: `eval.max_new_tokens`, else the stages' largest."""
    return config.eval.max_new_tokens or max(s.max_new_tokens for s in config.stages)


def evaluate(ctx, held_out: HeldOut, base: Anchor, stage_start: Anchor) -> dict[str, float]:
    """Every eval-point measurement, ID and OOD, and the non-decoupling signals."""
    max_new = eval_max_new_tokens(ctx.config)
    m, tok, task = ctx.model, ctx.tokenizer, ctx.task
    val = {"eval/val_accuracy": greedy_accuracy(m, tok, task, held_out.val, max_new)
           } if held_out.val else {}
    return {**val,
        "eval/id_accuracy": greedy_accuracy(m, tok, task, held_out.id, max_new),
        "eval/ood_accuracy": greedy_accuracy(m, tok, task, held_out.ood, max_new),
        "eval/sampled_reward": sampled_reward(m, tok, task, held_out.reward, max_new, temperature=1.0),
        "eval/sft_ce": demo_cross_entropy(m, held_out.demos),
        "eval/kl_to_stage_start": demo_kl(m, stage_start.model, held_out.demos),
        "eval/kl_to_base": demo_kl(m, base.model, held_out.demos),
        "eval/param_dist_stage_start": parameter_distance(m, stage_start.params),
        "eval/param_dist_base": parameter_distance(m, base.params),
    }
