"""TRL backend: every optimizer step runs TRL's (and transformers') own trainer loop and loss.

`trainer.train()` is called once per step with `max_steps=1` and
`gradient_accumulation_steps` = the step's micro-batches, which are served in order by an index
dataset; the optimizer is passed in (`optimizers=`), so its state carries across calls and
ptbench's runner can checkpoint it. What runs is the trainer's own accumulation, normalization
(`num_items_in_batch`), loss and optimizer step:

    SFT  `trl.SFTTrainer`, loss_type 'nll': a token mean over the whole accumulated batch.
    RL   `trl.GRPOTrainer`, loss_type from loss_agg (token-mean: dapo, seq-mean-token-mean:
         grpo, seq-mean-token-sum-norm: dr_grpo). Rollouts come from ptbench (the same sampler
         as the native backend): `_prepare_inputs` (generation, scoring, shuffling) is replaced on
         the instance by a function serving them; each micro-batch must be one prompt's group.

Calling `train()` per step costs trainer set-up time each step; `benchmarks/backend_throughput.py`
compares the backends with TRL running a whole stage in one `train()` call instead.
"""

from __future__ import annotations

import tempfile
import types
from typing import Any

import torch

from ptbench.pipelines.distributed import sum_over_ranks, world_size

HF_KEYS = ("input_ids", "attention_mask", "labels")
GRPO_LOSS_TYPE = {"token-mean": "dapo", "seq-mean-token-mean": "grpo",
                  "seq-mean-token-sum-norm": "dr_grpo"}


class UnsupportedByTRL(ValueError):
    """TRL cannot express this combination."""


def trainer_args(lr: float, rows: int, grad_accum: int, max_grad_norm: float | None) -> dict[str, Any]:
    """TrainingArguments for one plain step: constant lr, no weight decay, nothing saved."""
    return dict(
        output_dir=tempfile.mkdtemp(prefix="ptbench-trainer-"),
        per_device_train_batch_size=rows,
        gradient_accumulation_steps=grad_accum,
        max_steps=1,
        max_grad_norm=max_grad_norm or 0.0,  # 0 turns clipping off; the norm is still logged
        learning_rate=lr,
        weight_decay=0.0,
        remove_unused_columns=False,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=False,
        bf16=False,
        fp16=False,
    )


def constant_schedule(optimizer: torch.optim.Optimizer):
    """(optimizer, scheduler) for `optimizers=`: the trainer's scheduler never changes the lr."""
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def quiet(trainer):
    """Drop the callback that prints every log line to stdout."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer over raw ids, for trainers that insist on a processing class."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<bos>", unk_token="<pad>")


def _last_grad_norm(trainer) -> float | None:
    norms = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
    return float(norms[-1]) if norms else None


class TrainerStep:
    """`step(micro_batches)`: one `trainer.train()` over the micro-batches, served in order."""

    def __init__(self, trainer=None) -> None:
        self.trainer = trainer
        self.micro_batches: list[dict] = []

    def collate(self, features: list[dict]) -> dict:
        # Distributed, accelerate deals batch i of the index dataset to rank i % W: this rank's
        # k-th micro-batch is dataset index k * W + rank.
        return {k: self.micro_batches[features[0]["mb_idx"] // world_size()][k] for k in HF_KEYS}

    def __call__(self, micro_batches: list[dict]) -> dict[str, float | None]:
        from datasets import Dataset

        self.micro_batches = micro_batches
        self.trainer.train_dataset = Dataset.from_dict(
            {"mb_idx": list(range(len(micro_batches) * world_size()))})
        self.trainer.args.gradient_accumulation_steps = len(micro_batches)
        self.trainer.train()
        losses = [h["loss"] for h in self.trainer.state.log_history if "loss" in h]
        return {"grad_norm": _last_grad_norm(self.trainer),
                "loss": float(losses[-1]) if losses else float("nan")}


def sft_step(model, optimizer, *, lr: float, max_grad_norm: float | None = None,
             tokenizer=None) -> TrainerStep:
    """TRL SFTTrainer (loss_type 'nll') stepping `model` with `optimizer`."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    step = TrainerStep()
    args = SFTConfig(**trainer_args(lr, 1, 1, max_grad_norm), train_sampling_strategy="sequential",
                     loss_type="nll", dataset_kwargs={"skip_prepare_dataset": True})
    step.trainer = quiet(SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict({"mb_idx": [0]}),
        processing_class=tokenizer or word_tokenizer(model.config.vocab_size),
        data_collator=step.collate, optimizers=constant_schedule(optimizer)))
    return step


def to_grpo_inputs(mb: dict) -> dict:
    """Split an HF-style micro-batch at its shared prompt into TRL's prompt/completion tensors."""
    trained = mb["labels"] != -100
    first = trained.int().argmax(dim=1)  # first loss position of each row
    prompt_len = max(int(first.max()), 1)  # position 0 is never a loss token after the shift
    if int(first.min()) != int(first.max()) and int(first.max()) > 1:
        raise UnsupportedByTRL("GRPO needs one prompt length per micro-batch (a group shares its prompt)")
    return {
        "prompt_ids": mb["input_ids"][:, :prompt_len],
        "prompt_mask": mb["attention_mask"][:, :prompt_len],
        "completion_ids": mb["input_ids"][:, prompt_len:],
        "completion_mask": trained[:, prompt_len:].long(),
        "advantages": mb["advantages"].float(),
    }


class GRPOStep:
    """One `trainer.train()` per step; `_prepare_inputs` serves the given rollouts in order."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self.inputs: list[dict] = []
        trainer._prepare_inputs = types.MethodType(
            lambda tr, _batch: self.inputs[tr._step % len(self.inputs)], trainer)

    def __call__(self, micro_batches: list[dict]) -> dict[str, float | None]:
        inputs = [to_grpo_inputs(mb) for mb in micro_batches]
        # What _generate_and_score_completions reports: the loss tokens of the whole batch,
        # gathered over ranks.
        local = float(sum(int(x["completion_mask"].sum()) for x in inputs))
        total = torch.tensor(sum_over_ranks([local])[0])
        for x in inputs:
            x["num_items_in_batch"] = total
        self.inputs = inputs
        tr = self.trainer
        tr._step = 0
        tr.args.gradient_accumulation_steps = len(inputs)
        tr.args.steps_per_generation = len(inputs)
        tr.max_completion_length = max(mb["input_ids"].shape[1] - 1 for mb in micro_batches)
        tr.train()
        losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
        clipped = [h["clip_ratio/region_mean"] for h in tr.state.log_history
                   if "clip_ratio/region_mean" in h]
        return {"grad_norm": _last_grad_norm(tr), "loss": float(losses[-1]) if losses else float("nan"),
                "clip_fraction": float(clipped[-1]) if clipped else 0.0}


def grpo_step(model, optimizer, *, lr: float, loss_type: str, rows: int, grad_accum: int,
              max_grad_norm: float | None = None, clip_eps: float = 0.2,
              clip_eps_high: float | None = None, kl_coef: float = 0.0) -> GRPOStep:
    """TRL GRPOTrainer with `loss_type`, groups of `rows` completions, rollouts supplied."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    if kl_coef:
        raise UnsupportedByTRL("kl_coef: the TRL backend runs GRPO without a reference model (beta=0)")
    args = GRPOConfig(**trainer_args(lr, rows, grad_accum, max_grad_norm), num_generations=rows,
                      loss_type=loss_type, beta=0.0, max_completion_length=16, temperature=1.0,
                      shuffle_dataset=False, epsilon=clip_eps,
                      epsilon_high=clip_eps if clip_eps_high is None else clip_eps_high)
    trainer = GRPOTrainer(
        model=model, reward_funcs=lambda completions, **_: [0.0] * len(completions), args=args,
        train_dataset=Dataset.from_dict({"prompt": ["w3 w4"] * (rows * grad_accum)}),
        processing_class=word_tokenizer(model.config.vocab_size),
        optimizers=constant_schedule(optimizer))
    return GRPOStep(quiet(trainer))
