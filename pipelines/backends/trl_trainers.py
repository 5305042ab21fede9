"""TRL's trainers driving a whole stage: what the TRL backend runs and the TRL probes check.

What runs is the trainer's own accumulation, normalization (`num_items_in_batch`), loss and
optimizer step:

    SFT  `trl.SFTTrainer`, loss_type 'nll': a token mean over the whole accumulated batch.
    RL   `trl.GRPOTrainer`, loss_type from loss_agg (token-mean: dapo, seq-mean-token-mean:
         grpo, seq-mean-token-sum-norm: dr_grpo). Rollouts come from ptbench (the same sampler
         as the native backend) and are served as the trainer's inputs; each micro-batch must be
         one prompt's group.

One driver: a whole stage runs in ONE `train()` call (`sft_stage`, `grpo_stage`, through
`trl_stage.StageTrainer`), plain or under DeepSpeed. The pipelines' TRL backend and the probe's
`trl-*` adapters both run it, so what the probe proves is what users run.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

from ptbench.pipelines.backends.deepspeed import ds_config
from ptbench.pipelines.backends.trl_stage import StageTrainer
from ptbench.pipelines.data import IGNORE_INDEX, on_device
from ptbench.pipelines.distributed import sum_over_ranks, world_size

HF_KEYS = ("input_ids", "attention_mask", "labels")


class UnsupportedByTRL(ValueError):
    """TRL cannot express this combination."""


def trainer_args(lr: float, rows: int, grad_accum: int, max_grad_norm: float | None,
                 bf16: bool = False) -> dict[str, Any]:
    """TrainingArguments of a plain trainer: constant lr, no weight decay, nothing saved."""
    return dict(
        output_dir=tempfile.mkdtemp(prefix="ptbench-trainer-"),
        per_device_train_batch_size=rows,
        gradient_accumulation_steps=grad_accum,
        max_steps=1,
        max_grad_norm=max_grad_norm or 0.0,  # 0 turns clipping off; the norm is still logged
        learning_rate=lr,
        lr_scheduler_type="constant",  # ptbench's runner sets the lr of every step
        weight_decay=0.0,
        remove_unused_columns=False,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=False,
        bf16=bf16,
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


def to_grpo_inputs(mb: dict) -> dict:
    """Split an HF-style micro-batch at its shared prompt into TRL's prompt/completion tensors."""
    trained = mb["labels"] != IGNORE_INDEX
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


def grpo_inputs(trainer, micro_batches: list[dict]) -> list[dict]:
    """TRL's model inputs for one step's groups, as `_generate_and_score_completions` leaves
    them: on the model's device, with the loss tokens of the whole batch over all ranks; sets
    the trainer's `max_completion_length` (dr_grpo's normalizer) to the step's."""
    inputs = [on_device(to_grpo_inputs(mb), trainer.model) for mb in micro_batches]
    local = float(sum(int(x["completion_mask"].sum()) for x in inputs))
    total = torch.tensor(sum_over_ranks([local])[0], device=inputs[0]["prompt_ids"].device)
    for x in inputs:
        x["num_items_in_batch"] = total
    trainer.max_completion_length = max(mb["input_ids"].shape[1] - 1 for mb in micro_batches)
    return inputs


def step_metrics(logs: list[dict]) -> dict[str, float | None]:
    """The last step's loss, gradient norm and (GRPO) clipped share, from the trainer's logs."""
    def last(key: str):
        values = [h[key] for h in logs if key in h]
        return float(values[-1]) if values else None

    loss = last("loss")
    return {"grad_norm": last("grad_norm"), "loss": float("nan") if loss is None else loss,
            "clip_fraction": last("clip_ratio/region_mean") or 0.0, "reward": last("reward"),
            "frac_reward_zero_std": last("frac_reward_zero_std")}


# ------------------------------------------------------------------ whole-stage drivers
def deepspeed_args(zero_stage: int, offload_optimizer: bool = False) -> dict:
    """`TrainingArguments(deepspeed=...)`: the ZeRO stage; every size, clipping and precision
    'auto' (filled in from the trainer's own arguments by transformers / accelerate)."""
    return ds_config(zero_stage, offload_optimizer)


class StageStep:
    """The runner's step over a `StageTrainer`: micro-batches in, that step's metrics out
    (`step(None)` when the trainer draws its own data)."""

    scorer = None
    """With the trainer's own rollouts: the reward function, whose `pop()` gives what it scored."""

    def __init__(self, stage: StageTrainer, prepare=None) -> None:
        self.stage, self.prepare = stage, prepare
        self.clip_fractions: list[float] = []

    @property
    def optimizer(self):
        return self.stage.optimizer

    @property
    def engine(self):
        return self.stage.engine

    def __call__(self, micro_batches: list[dict] | None) -> dict[str, float | None]:
        batches = self.prepare(micro_batches) if self.prepare and micro_batches else micro_batches
        out = step_metrics([self.stage.step(batches)])
        self.clip_fractions.append(out["clip_fraction"])
        if self.scorer is not None:  # the trainer's own rollouts, as the reward scored them
            out["scored"] = self.scorer.pop()
        return out

    def pop_clip_fraction(self) -> float:
        """Mean clipped share TRL logged over the steps since the last call."""
        fractions, self.clip_fractions = self.clip_fractions, []
        return sum(fractions) / len(fractions) if fractions else 0.0

    def close(self) -> None:
        """End the trainer's `train()` and release its DeepSpeed engine, if any."""
        engine = self.stage.engine
        self.stage.close()
        if engine is not None:
            engine.destroy()


def _optimizers(optimizer) -> dict:
    """`optimizers=` for a trainer: ptbench's optimizer, or none under DeepSpeed (which builds
    its own from the arguments)."""
    return {"optimizers": constant_schedule(optimizer)} if optimizer is not None else {}


def sft_stage(model, optimizer, *, lr: float, grad_accum: int, steps: int,
              max_grad_norm: float | None = None, tokenizer=None, bf16: bool = False,
              deepspeed: dict | None = None, training_args: dict | None = None) -> StageStep:
    """SFTTrainer (loss_type 'nll') over a whole stage: `grad_accum` micro-batches per step.
    `training_args` overrides trainer arguments (the optimizer a DeepSpeed trainer builds)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**{**trainer_args(lr, 1, grad_accum, max_grad_norm, bf16), "max_steps": steps,
                        **(training_args or {})},
                     deepspeed=deepspeed, train_sampling_strategy="sequential", loss_type="nll",
                     dataset_kwargs={"skip_prepare_dataset": True})
    placeholders = Dataset.from_dict({"row": list(range(steps * grad_accum * world_size()))})
    trainer = SFTTrainer(model=model, args=args, train_dataset=placeholders,
                         processing_class=tokenizer or word_tokenizer(model.config.vocab_size),
                         data_collator=lambda _features: {}, **_optimizers(optimizer))
    return StageStep(StageTrainer(quiet(trainer), serve="batches").start())


def grpo_stage(model, optimizer, *, lr: float, loss_type: str, rows: int, grad_accum: int,
               steps: int, max_grad_norm: float | None = None, clip_eps: float = 0.2,
               clip_eps_high: float | None = None, bf16: bool = False,
               deepspeed: dict | None = None, generation: dict | None = None,
               training_args: dict | None = None) -> StageStep:
    """GRPOTrainer with `loss_type` over a whole stage: `grad_accum` groups of `rows`
    completions per step (one group per micro-batch), no reference model.

    Without `generation` the completions are supplied by the runner (`StageStep(batches)`).
    With it, TRL samples prompts and generates and scores completions itself (`StageStep(None)`):
    generation = {"prompts": [...], "reward": fn(prompts, completions, index, ...),
    "tokenizer", "max_new_tokens", "temperature", "seed", "use_vllm"}. `training_args`
    overrides trainer arguments (the optimizer a DeepSpeed trainer builds).
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    own = generation or {}
    args = GRPOConfig(**{**trainer_args(lr, rows, grad_accum, max_grad_norm, bf16), "max_steps": steps,
                         **(training_args or {})},
                      deepspeed=deepspeed, num_generations=rows, steps_per_generation=grad_accum,
                      loss_type=loss_type, beta=0.0, epsilon=clip_eps,
                      epsilon_high=clip_eps if clip_eps_high is None else clip_eps_high,
                      max_completion_length=own.get("max_new_tokens", 16),
                      temperature=own.get("temperature", 1.0), seed=own.get("seed", 42),
                      shuffle_dataset=generation is not None,
                      use_vllm=own.get("use_vllm", False), vllm_mode="colocate")
    if generation is None:
        data = Dataset.from_dict({"prompt": ["w3 w4"] * (rows * grad_accum * world_size())})
        reward, tokenizer = (lambda completions, **_: [0.0] * len(completions)), None
    else:
        prompts = generation["prompts"]
        data = Dataset.from_dict({"prompt": prompts, "index": list(range(len(prompts)))})
        reward, tokenizer = generation["reward"], generation["tokenizer"]
    trainer = GRPOTrainer(
        model=model, reward_funcs=reward, args=args, train_dataset=data,
        processing_class=tokenizer or word_tokenizer(model.config.vocab_size),
        **_optimizers(optimizer))
    if generation is not None:
        return StageStep(StageTrainer(quiet(trainer), serve=None).start())
    stage = StageTrainer(quiet(trainer), serve="inputs").start()
    return StageStep(stage, prepare=lambda mbs: grpo_inputs(trainer, mbs))
