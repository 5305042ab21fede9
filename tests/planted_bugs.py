"""A library of planted gradient-accumulation bugs, and of correct variants, on plain PyTorch.

Each bug breaks exactly one piece of `TorchStep`; each correct variant changes only float order,
row splitting or accumulation dtype. The probe must fail every bug and pass every variant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ptbench.fixtures.probes.adapters.torch_plain import TorchStep
from ptbench.fixtures.probes.spec import LOSS_AGGS


# --------------------------------------------------------------------------- planted bugs
class LastMicroBatchOnly(TorchStep):
    """Gradients are zeroed before every backward: only the last micro-batch survives."""

    def micro_batch_loss(self, mb, norm):
        self.optimizer.zero_grad(set_to_none=True)
        return super().micro_batch_loss(mb, norm)


class FirstAndLastOnly(TorchStep):
    """DeepSpeed CPU-offload bug (0.15.2-0.18.9): the optimizer gets g0 + g_last."""

    def __call__(self, micro_batches):
        norm = self.normalizers(micro_batches)
        kept = [micro_batches[0], micro_batches[-1]]
        for mb in micro_batches:  # every micro-batch runs, the middle ones are lost
            loss = self.micro_batch_loss(mb, norm)
            if any(mb is k for k in kept):
                loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class MeanOfMicroBatchMeans(TorchStep):
    """OpenRLHF < 0.10.4 / transformers < 4.46: each micro-batch normalized on its own, / GA."""

    def normalizers(self, micro_batches):
        self._k = len(micro_batches)
        return super().normalizers(micro_batches)

    def micro_batch_loss(self, mb, norm):
        return super().micro_batch_loss(mb, self.normalizers_local(mb)) / self._k

    def normalizers_local(self, mb):
        return TorchStep.normalizers(self, [mb])


class MissingGradAccumScale(MeanOfMicroBatchMeans):
    """Each micro-batch normalized on its own and summed: the 1/grad_accum is missing."""

    def micro_batch_loss(self, mb, norm):
        return TorchStep.micro_batch_loss(self, mb, self.normalizers_local(mb))


class ExtraGradAccumScale(TorchStep):
    """The global loss is divided by grad_accum once more (a double 1/GA)."""

    def micro_batch_loss(self, mb, norm):
        return super().micro_batch_loss(mb, norm) / self.opt.grad_accum


class WrongAggregation(TorchStep):
    """Computes another aggregation than the one declared (e.g. per-sequence mean for token-mean)."""

    def __init__(self, model, opt):
        super().__init__(model, opt)
        other = "seq-mean-token-mean" if opt.loss_agg == "token-mean" else "token-mean"
        self.opt = dataclasses.replace(opt, loss_agg=other)


class PaddingCounted(TorchStep):
    """Padding positions count in the normalizers (tokens = B * (T-1) per micro-batch)."""

    def normalizers(self, micro_batches):
        norm = super().normalizers(micro_batches)
        norm["tokens"] = float(sum(mb["input_ids"][:, 1:].numel() for mb in micro_batches))
        return norm


class PromptTokensCounted(TorchStep):
    """The loss mask comes from attention_mask: prompt tokens are trained on and counted."""

    def token_losses(self, mb):
        labels = torch.where(mb["attention_mask"].bool(), mb["input_ids"], -100)
        return super().token_losses({**mb, "labels": labels})

    def normalizers(self, micro_batches):
        return super().normalizers([{**mb, "labels": torch.where(
            mb["attention_mask"].bool(), mb["input_ids"], -100)} for mb in micro_batches])


class SmallestMicroBatchMisweighted(TorchStep):
    """The micro-batch with the fewest loss tokens is weighted 1.1 instead of 1."""

    def __call__(self, micro_batches):
        counts = [int((mb["labels"][:, 1:] != -100).sum()) for mb in micro_batches]
        self._smallest = micro_batches[counts.index(min(counts))]
        return super().__call__(micro_batches)

    def micro_batch_loss(self, mb, norm):
        loss = super().micro_batch_loss(mb, norm)
        return loss * 1.1 if mb is self._smallest else loss


class StepPerMicroBatch(TorchStep):
    """The optimizer steps after every micro-batch, with the global normalizer."""

    def __call__(self, micro_batches):
        norm = self.normalizers(micro_batches)
        for mb in micro_batches:
            self.micro_batch_loss(mb, norm).backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


class AdvantagesIgnored(TorchStep):
    """The policy-gradient loss forgets to multiply by the advantages."""

    def token_losses(self, mb):
        return super().token_losses({**mb, "advantages": torch.ones_like(mb["advantages"])})


class GradsNotZeroed(TorchStep):
    """Gradients are never cleared between optimizer steps."""

    def __call__(self, micro_batches):
        norm = self.normalizers(micro_batches)
        for mb in micro_batches:
            self.micro_batch_loss(mb, norm).backward()
        self.optimizer.step()


class LabelsNotShifted(TorchStep):
    """Logits at position t are scored against label t instead of label t+1."""

    def token_losses(self, mb):
        logits = self.model(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"]).logits
        labels = mb["labels"][:, :-1]
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels.clamp(min=0), reduction="none")
        if self.opt.objective == "pg":
            nll = nll * mb["advantages"][:, None]
        return nll, mb["labels"][:, 1:] != -100


class LocalLongestRow(TorchStep):
    """seq-mean-token-sum-norm with T taken per micro-batch instead of over the whole step."""

    def micro_batch_loss(self, mb, norm):
        return super().micro_batch_loss(mb, {**norm, "longest": float(mb["input_ids"].shape[1] - 1)})


@dataclass(frozen=True)
class Planted:
    bug: type[TorchStep]
    loss_aggs: tuple[str, ...] = LOSS_AGGS
    objectives: tuple[str, ...] = ("ce", "pg")
    uniform_scale: tuple[str, ...] = ()
    """The loss_aggs under which this bug is a uniform scale error: invisible to AdamW by design."""


PLANTED_BUGS = [
    Planted(LastMicroBatchOnly),
    Planted(FirstAndLastOnly),
    Planted(MeanOfMicroBatchMeans, loss_aggs=("token-mean",)),
    Planted(MissingGradAccumScale, loss_aggs=("token-mean", "seq-mean-token-sum"),
            uniform_scale=("seq-mean-token-sum",)),
    Planted(ExtraGradAccumScale, uniform_scale=LOSS_AGGS),
    Planted(WrongAggregation, uniform_scale=("seq-mean-token-sum", "seq-mean-token-sum-norm")),
    Planted(PaddingCounted, loss_aggs=("token-mean",), uniform_scale=("token-mean",)),
    Planted(PromptTokensCounted),
    Planted(SmallestMicroBatchMisweighted),
    Planted(StepPerMicroBatch),
    Planted(AdvantagesIgnored, objectives=("pg",)),
    Planted(GradsNotZeroed),
    Planted(LabelsNotShifted),
    Planted(LocalLongestRow, loss_aggs=("seq-mean-token-sum-norm",)),
]


# ------------------------------------------------------------------------ correct variants
class OneBigBatch(TorchStep):
    """All micro-batches right-padded into one batch: one forward, one backward."""

    def __call__(self, micro_batches):
        norm = self.normalizers(micro_batches)
        width = max(mb["input_ids"].shape[1] for mb in micro_batches)
        pad = {"input_ids": 0, "attention_mask": 0, "labels": -100}
        big = {k: torch.cat([F.pad(mb[k], (0, width - mb[k].shape[1]), value=v)
                             for mb in micro_batches]) for k, v in pad.items()}
        big["advantages"] = torch.cat([mb["advantages"] for mb in micro_batches])
        self.micro_batch_loss(big, norm).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class RowByRow(TorchStep):
    """Every row its own forward and backward (micro-batch size 1)."""

    def __call__(self, micro_batches):
        rows = [{k: v[r:r + 1] for k, v in mb.items()} for mb in micro_batches
                for r in range(mb["input_ids"].shape[0])]
        norm = self.normalizers(micro_batches)
        for row in rows:
            self.micro_batch_loss(row, norm).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class ReversedOrder(TorchStep):
    """Micro-batches accumulated last to first: only float order changes."""

    def __call__(self, micro_batches):
        norm = self.normalizers(micro_batches)
        for mb in reversed(micro_batches):
            self.micro_batch_loss(mb, norm).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class Float64Accumulation(TorchStep):
    """Gradients accumulated in float64 buffers, cast to float32 before the step."""

    def __call__(self, micro_batches):
        norm = self.normalizers(micro_batches)
        params = [p for p in self.model.parameters() if p.requires_grad]
        buffers = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        for mb in micro_batches:
            self.micro_batch_loss(mb, norm).backward()
            for buf, p in zip(buffers, params, strict=True):
                buf += p.grad.double()
                p.grad = None
        for buf, p in zip(buffers, params, strict=True):
            p.grad = buf.float()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


CORRECT_VARIANTS = [TorchStep, OneBigBatch, RowByRow, ReversedOrder, Float64Accumulation]
