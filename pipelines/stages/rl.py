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

from ptbench.pipelines import distributed, losses
from ptbench.pipelines.backends import trl
from ptbench.pipelines.backends.native import token_logprobs
from ptbench.pipelines.config import ConfigError, StageConfig
from ptbench.pipelines.data import encode, pad_rows, split_micro_batches
from ptbench.pipelines.rollout import generate, stop_token_ids
from ptbench.pipelines.stages import register


@register
class RLStage:
    kind = "rl"

    def __init__(self, config: StageConfig, index: int) -> None:
        self.config, self.index = config, index

    def setup(self, ctx) -> None:
        c = self.config
        self.reference = ctx.stage_start if c.kl_coef > 0 else None
        self.scored: list[tuple[int, str, float]] = []
        """(train example index, completion, reward) of TRL's own rollouts, as scored."""
        if c.generation != "ptbench" and ctx.config.backend != "trl":
            raise ConfigError(f"stages[{self.index}].generation: {c.generation!r} is TRL's "
                              "generation; expected backend: trl, or generation: ptbench")
        if ctx.config.backend == "trl":
            self.train = self.trl_step(ctx)
            return
        self.train = ctx.native_step(c, objective="pg", loss_agg=c.loss_agg, clip_eps=c.clip_eps,
                                     clip_eps_high=c.clip_eps_high, kl_coef=c.kl_coef,
                                     shaping_gamma=c.shaping_gamma)

    def trl_step(self, ctx):
        """GRPOTrainer with the loss_type that declares this stage's loss_agg."""
        c = self.config
        where = f"stages[{self.index}]"
        if self.kind != "rl":
            raise ConfigError(f"{where}.kind: the TRL backend has no {self.kind!r} stage; "
                              "use backend: native")
        for name in ("num_iterations", "mini_batches"):
            if getattr(c, name) != 1:
                raise ConfigError(f"{where}.{name}: the TRL backend takes one update per rollout "
                                  f"batch (1), got {getattr(c, name)}")
        if c.loss_agg not in trl.GRPO_LOSS_TYPE:
            raise ConfigError(f"{where}.loss_agg: the TRL backend supports "
                              f"{sorted(trl.GRPO_LOSS_TYPE)}, got {c.loss_agg!r}")
        if c.kl_coef:
            raise ConfigError(f"{where}.kl_coef: the TRL backend runs GRPO without a reference "
                              f"model (0), got {c.kl_coef}")
        generation = None
        if c.generation != "ptbench":
            ctx.model.generation_config.eos_token_id = stop_token_ids(ctx.tokenizer)
            generation = {"prompts": [e.prompt for e in ctx.train_pool],
                          "reward": lambda completions, index, **_: self.score(ctx, index, completions),
                          "tokenizer": ctx.tokenizer, "max_new_tokens": c.max_new_tokens,
                          "temperature": c.temperature, "seed": ctx.config.seed,
                          "use_vllm": c.generation == "vllm"}
        try:
            return ctx.trl_trainer(c, lambda optimizer, ds: trl.grpo_stage(
                ctx.model, optimizer, lr=c.lr, loss_type=trl.GRPO_LOSS_TYPE[c.loss_agg],
                rows=c.group_size, grad_accum=c.batch_size // distributed.world_size(),
                steps=c.steps, max_grad_norm=c.max_grad_norm, clip_eps=c.clip_eps,
                clip_eps_high=c.clip_eps_high, bf16=ctx.bf16, deepspeed=ds, generation=generation))
        except ImportError as exc:  # generation: vllm without vLLM installed
            raise ConfigError(f"{where}.generation: {exc}") from None

    def score(self, ctx, index: list[int], completions: list[str]) -> list[float]:
        """The task's verifier on TRL's own completions (called in TRL's trainer thread)."""
        rewards = [ctx.task.reward(ctx.train_pool[i], text) for i, text in zip(index, completions, strict=True)]
        self.scored += list(zip(index, completions, rewards, strict=True))
        return rewards

    def trl_generated_step(self, ctx) -> dict[str, float]:
        """One step of GRPOTrainer generating its own rollouts; the runner sees them as scored
        and counts their FLOPs from their token lengths."""
        c = self.config
        out = self.train(None)
        scored, self.scored = self.scored, []
        examples = [ctx.train_pool[i] for i, *_ in scored[::c.group_size]]
        ctx.account_generation(examples, c.group_size, c.max_new_tokens)
        prompts = [encode(ctx.tokenizer, ctx.train_pool[i].prompt) for i, *_ in scored]
        rows = [p + encode(ctx.tokenizer, text) for p, (_, text, _) in zip(prompts, scored, strict=True)]
        batch = pad_rows(rows, [len(p) for p in prompts], ctx.tokenizer.pad_token_id)
        ctx.account_train(split_micro_batches(batch, c.group_size))
        rewards = torch.tensor([r for *_, r in scored])
        return {**self.reward_metrics(rewards), "train/clip_fraction": out["clip_fraction"],
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
        ctx.account_generation(examples, c.group_size - k, c.max_new_tokens)
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
            ctx.account_forward(batch)
        if c.num_iterations * c.mini_batches > 1:  # later updates see a changed policy
            with torch.no_grad():
                batch["old_logprobs"] = token_logprobs(ctx.model, batch)[0]
            ctx.account_forward(batch)
        return batch, rewards, examples

    def micro_batches(self, ctx, batch: dict) -> list[dict]:
        """One update's rows as micro-batches (TRL's GRPOTrainer: one prompt's group each)."""
        size = self.config.group_size if ctx.config.backend == "trl" else self.config.micro_batch_size
        return split_micro_batches(batch, size)

    def step(self, ctx, step: int) -> dict[str, float]:
        c = self.config
        if c.generation != "ptbench":
            return self.trl_generated_step(ctx)
        batch, rewards, _ = self.scored_batch(ctx)
        rows = batch["input_ids"].shape[0] // c.mini_batches  # whole groups: batch_size divides
        outs = []
        for _ in range(c.num_iterations):
            for mini_batch in split_micro_batches(batch, rows):
                micro_batches = self.micro_batches(ctx, mini_batch)
                outs.append(self.train(micro_batches))
                ctx.account_train(micro_batches)
        return {**self.reward_metrics(rewards), "train/clip_fraction": self.clip_fraction(outs),
                "train/loss": sum(o["loss"] for o in outs) / len(outs),
                "train/grad_norm": _mean([o["grad_norm"] for o in outs]),
                "train/updates": float(len(outs))}

    def clip_fraction(self, outs: list[dict]) -> float:
        """Share of on-policy loss tokens whose ratio was clipped, over this step's updates."""
        if hasattr(self.train, "pop_clip_fraction"):
            return self.train.pop_clip_fraction()
        return sum(o.get("clip_fraction", 0.0) for o in outs) / len(outs)  # as TRL logs it

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
