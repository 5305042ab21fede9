"""Mixed-policy stages: LUFFY (off-policy demonstrations inside RL groups) and SRFT.

LUFFY (arXiv 2504.14945), as implemented here:
    group     = (group_size - k) on-policy rollouts + k demonstrations (7 + 1 in the paper)
    A_i       = r_i - mean(r over the mixed group)          (advantage_scale 'none': no std)
    on-policy tokens   l = max(-A ratio, -A clip(ratio))     (one update per batch: ratio 1)
    off-policy tokens  l = -A * pi / (pi + gamma), gamma = shaping_gamma (0.1), grad through pi
    loss      = loss_agg over ALL tokens of the batch, on- and off-policy together

SRFT (arXiv 2506.19767), as implemented here (one stage, both signals each step):
    L = L_RL(rollouts)  +  0.5 * stopgrad(exp(-H)) * L_SFT(demonstrations)
    with L_RL the GRPO loss of `RLStage`, L_SFT the token-mean NLL of the batch's demonstrations,
    H the policy's mean per-token entropy on those demonstration tokens (nats).
The SRFT paper also reweights on-policy samples by sign and entropy; that part is not
implemented (say so in reports).
"""

from __future__ import annotations

import torch

from ptbench.pipelines import distributed
from ptbench.pipelines.config import StageConfig
from ptbench.pipelines.data import IGNORE_INDEX, demonstration_batch, on_device, split_micro_batches
from ptbench.pipelines.stages import register
from ptbench.pipelines.stages.rl import RLStage


@register
class LuffyStage(RLStage):
    kind = "luffy"

    def __init__(self, config: StageConfig, index: int) -> None:
        super().__init__(config, index)
        self.off_policy_per_group = config.off_policy_per_group


@register
class SRFTStage(RLStage):
    kind = "srft"

    SFT_WEIGHT = 0.5

    def step(self, ctx, step: int) -> dict[str, float]:
        batch, rewards, examples = self.scored_batch(ctx)
        rl_batches = self.micro_batches(ctx, batch)
        demos = demonstration_batch(ctx.tokenizer, [e.prompt for e in examples],
                                    [e.demonstration for e in examples])
        entropy = self.demonstration_entropy(ctx, demos)
        weight = self.SFT_WEIGHT * float(torch.exp(-entropy))  # a number: stop-gradient
        demo_batches = split_micro_batches(demos, self.config.micro_batch_size)
        ctx.model.train()
        rl_loss = self.train.backward(rl_batches)
        sft_loss = self.train.backward(demo_batches, objective="ce", loss_agg="token-mean",
                                       weight=weight)
        grad_norm = self.train.update()
        ctx.counters.add_train(rl_batches + demo_batches)
        return {**self.reward_metrics(rewards), "train/clip_fraction": self.train.pop_clip_fraction(),
                "train/loss": rl_loss + weight * sft_loss,
                "train/rl_loss": rl_loss, "train/sft_loss": sft_loss, "train/sft_weight": weight,
                "train/demo_entropy": float(entropy), "train/grad_norm": grad_norm}

    @torch.no_grad()
    def demonstration_entropy(self, ctx, demos: dict) -> torch.Tensor:
        """Mean per-token entropy (nats) of the policy on the demonstration tokens of the whole
        step (all ranks)."""
        demos = on_device(demos, ctx.model)
        logits = ctx.model(input_ids=demos["input_ids"], attention_mask=demos["attention_mask"]).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        per_token = -(logp.exp() * logp).sum(-1)
        ctx.counters.add_forward(demos)
        mask = demos["labels"][:, 1:] != IGNORE_INDEX
        total, count = distributed.sum_over_ranks([float(per_token[mask].sum()), float(mask.sum())])
        return torch.tensor(total / count)
