"""Eval-point measurements: accuracy, reward, SFT cross-entropy, KL and parameter distance."""

from __future__ import annotations

import torch

from ptbench.pipelines import losses
from ptbench.pipelines.backends.native import token_logprobs
from ptbench.pipelines.data import on_device
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
    return float(losses.aggregate(per_token, batch["labels"][:, 1:] != -100))


@torch.no_grad()
def parameter_distance(model, reference_params: dict[str, torch.Tensor]) -> float:
    """||theta - theta_ref||_2 over all parameters."""
    total = torch.zeros((), dtype=torch.float64)
    for name, p in model.named_parameters():
        total += (p.detach().double().cpu() - reference_params[name]).pow(2).sum()
    return float(total.sqrt())
