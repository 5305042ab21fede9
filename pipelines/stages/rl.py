"""RL stage (GRPO): group sampling, group-normalized advantages, clipped ratio, optional KL.

Each step: draw `batch_size` prompts, sample `group_size` completions of each with the current
policy, score them with the task's verifier, turn rewards into advantages within each group
(mean-centred, divided by the group std unless advantage_scale='none' as in Dr. GRPO), and take
`num_iterations` x `mini_batches` optimizer updates on the clipped surrogate, each aggregated by
`loss_agg` over its share of the batch (the global normalizers of `NativeTrainStep`). With one
update the batch is on-policy (ratio 1, nothing clipped); with more, the sampling policy's
logprobs are kept (one extra forward pass) and the ratio pi/pi_old is clipped to
[1 - clip_eps, 1 + clip_eps_high]. With kl_coef > 0 a frozen copy of the policy at the start of
the stage is the reference (k3 estimator).
"""

from __future__ import annotations

import torch

from ptbench.pipelines import losses
from ptbench.pipelines.data import encode, pad_rows, split_micro_batches
from ptbench.pipelines.logprobs import token_logprobs
from ptbench.pipelines.rollout import generate
from ptbench.pipelines.stages import StageBase, register


@register
class RLStage(StageBase):
    kind = "rl"

    def setup(self, ctx) -> None:
        self.reference = ctx.stage_start if self.config.kl_coef > 0 else None
        self.train = ctx.backend.rl_step(ctx, self.config)

    def own_rollouts_step(self, ctx) -> dict[str, float]:
        """One step of a trainer that samples prompts and generates and scores its own
        rollouts (`generation` other than 'ptbench'); the runner sees them as scored and counts
        their FLOPs from their token lengths."""
        c = self.config
        out = self.train(None)
        scored = out["scored"]
        examples = [ctx.train_pool[i] for i, *_ in scored[::c.group_size]]
        ctx.counters.add_generation(examples, c.group_size, c.max_new_tokens)
        prompts = [encode(ctx.tokenizer, ctx.train_pool[i].prompt) for i, *_ in scored]
        rows = [p + encode(ctx.tokenizer, text) for p, (_, text, _) in zip(prompts, scored, strict=True)]
        batch = pad_rows(rows, [len(p) for p in prompts], ctx.tokenizer.pad_token_id)
        ctx.counters.add_train(split_micro_batches(batch, c.group_size))
        rewards = torch.tensor([r for *_, r in scored])
        return {**self.reward_metrics(rewards), "train/clip_fraction": self.train.pop_clip_fraction(),
                "train/loss": out["loss"], "train/grad_norm": out["grad_norm"],
                "train/updates": 1.0, "train/trl_reward": out["reward"],
                "train/trl_frac_reward_zero_std": out["frac_reward_zero_std"]}

    off_policy_per_group = 0
    """Demonstrations mixed into each group (LUFFY overrides this)."""

    def rollouts(self, ctx) -> tuple[dict[str, torch.Tensor], torch.Tensor, list]:
        """One batch of scored groups as training rows (prompt masked), and the rewards.

        Each group holds group_size - k sampled completions and k demonstrations (k = 0 for
        plain GRPO); an `off_policy` row flag marks the demonstrations.
        """
        c = self.config
        k = self.off_policy_per_group
        examples = ctx.sample_train(c.batch_size)
        groups = generate(ctx.model, ctx.tokenizer, [e.prompt for e in examples],
                          max_new_tokens=c.max_new_tokens, num_return=c.group_size - k,
                          temperature=c.temperature)
        ctx.counters.add_generation(examples, c.group_size - k, c.max_new_tokens)
        rows, starts, rewards, off = [], [], [], []
        for example, completions in zip(examples, groups, strict=True):
            prompt = encode(ctx.tokenizer, example.prompt)
            demo = encode(ctx.tokenizer, example.demonstration)
            for completion, is_demo in [(c_, False) for c_ in completions] + [(demo, True)] * k:
                rows.append(prompt + (completion or [ctx.tokenizer.eos_token_id]))
                starts.append(len(prompt))
                rewards.append(ctx.task.reward(example, ctx.tokenizer.decode(completion)))
                off.append(is_demo)
        batch = pad_rows(rows, starts, ctx.tokenizer.pad_token_id)
        if k:
            batch["off_policy"] = torch.tensor(off)
        return batch, torch.tensor(rewards), examples

    def scored_batch(self, ctx) -> tuple[dict[str, torch.Tensor], torch.Tensor, list]:
        """Rollouts with advantages, and the logprobs later updates need (reference, sampler)."""
        c = self.config
        batch, rewards, examples = self.rollouts(ctx)
        batch["advantages"] = losses.group_advantages(rewards, c.group_size, scale=c.advantage_scale)
        if self.reference is not None:
            with torch.no_grad():
                batch["ref_logprobs"] = token_logprobs(self.reference, batch)[0]
            ctx.counters.add_forward(batch)
        if c.num_iterations * c.mini_batches > 1:  # later updates see a changed policy
            with torch.no_grad():
                batch["old_logprobs"] = token_logprobs(ctx.model, batch)[0]
            ctx.counters.add_forward(batch)
        return batch, rewards, examples

    def micro_batches(self, ctx, batch: dict) -> list[dict]:
        """One update's rows as micro-batches of the backend's size."""
        return split_micro_batches(batch, ctx.backend.rl_micro_batch_size(self.config))

    def step(self, ctx, step: int) -> dict[str, float]:
        c = self.config
        if c.generation != "ptbench":
            return self.own_rollouts_step(ctx)
        batch, rewards, _ = self.scored_batch(ctx)
        rows = batch["input_ids"].shape[0] // c.mini_batches  # whole groups: batch_size divides
        outs = []
        for _ in range(c.num_iterations):
            for mini_batch in split_micro_batches(batch, rows):
                micro_batches = self.micro_batches(ctx, mini_batch)
                outs.append(self.train(micro_batches))
                ctx.counters.add_train(micro_batches)
        return {**self.reward_metrics(rewards), "train/clip_fraction": self.train.pop_clip_fraction(),
                "train/loss": sum(o["loss"] for o in outs) / len(outs),
                "train/grad_norm": _mean([o["grad_norm"] for o in outs]),
                "train/updates": float(len(outs))}

    def reward_metrics(self, rewards: torch.Tensor) -> dict[str, float]:
        grouped = rewards.view(-1, self.config.group_size)
        return {
            "train/reward": float(rewards.mean()),
            # An RL run that learns nothing shows it: groups whose rewards are all equal carry
            # zero advantage and zero gradient.
            "train/nonzero_adv_groups": float((grouped.std(dim=1) > 0).float().mean()),
        }


def _mean(values: list[float | None]) -> float | None:
    """Mean of the values a backend reported (None when it reported none)."""
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None
