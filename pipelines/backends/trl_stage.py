"""TRL's trainer running a whole stage in ONE `train()` call, one optimizer step per runner step.

The runner keeps its loop (eval points, budgets, checkpoints, lr) and TRL keeps its own: the
trainer runs on a background thread and the two hand over at step boundaries.

    runner thread                          trainer thread (inside trainer.train())
    -------------                          --------------------------------------
    start(): launch, wait for "ready"  <-  on_train_begin: model wrapped (DDP / DeepSpeed engine),
                                           optimizer built; post "ready", wait for a command
    step(batches): post batches       ->   get_batch_samples: serve them as this step's
                                           micro-batches; TRL's accumulation, loss, update
               wait for the step's logs <- on_log: post the logs, wait for the next command
    (evaluate, checkpoint: the trainer
     is parked inside on_log)
    close(): post "stop"              ->   should_training_stop; train() returns

Only one thread runs at a time, so collectives (gloo / NCCL / DeepSpeed) never interleave and
the global RNG is consumed in a fixed order. Autocast is per thread: the trainer gets `bf16`
through its own arguments. Under DeepSpeed the trainer builds the engine and its optimizer
once, from `TrainingArguments(deepspeed=...)` through accelerate, as TRL users run it.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import types

import torch
from transformers import TrainerCallback

STOP = object()


class _Stopped(Exception):
    """Raised inside the trainer thread when the runner stops before a step."""


class _Handoff(TrainerCallback):
    def __init__(self, owner: StageTrainer) -> None:
        self.owner = owner

    def on_train_begin(self, args, state, control, **kwargs):
        self.owner._post(("ready", None))
        self.owner._wait(control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:  # train()'s closing summary, not a step
            return
        self.owner._post(("logs", dict(logs)))
        self.owner._wait(control)


class StageTrainer:
    """`step(micro_batches)` -> that step's logs; the trainer serves exactly these micro-batches
    (len = the trainer's gradient_accumulation_steps) as one optimizer step.

    serve: 'batches' (the micro-batches go through the trainer's `_prepare_inputs`), 'inputs'
    (they are the model inputs already: GRPO with ptbench's rollouts), or None (the trainer draws
    its own data: GRPO generating its own completions; `step(None)`).
    """

    def __init__(self, trainer, serve: str | None = "batches") -> None:
        self.trainer = trainer
        self.pending: list | None = None
        self._commands: queue.Queue = queue.Queue(maxsize=1)
        self._results: queue.Queue = queue.Queue()
        trainer.add_callback(_Handoff(self))
        if serve is not None:
            trainer.get_batch_samples = self._serve
        if serve == "inputs":
            trainer._prepare_inputs = types.MethodType(lambda tr, inputs: inputs, trainer)
        # The CUDA current device is per thread: the trainer's is the launching rank's.
        self._cuda_device = torch.cuda.current_device() if torch.cuda.is_available() else None
        self._thread = threading.Thread(target=self._train, name="ptbench-trl-stage", daemon=True)

    # ---------------------------------------------------------------- runner thread
    def start(self) -> StageTrainer:
        """Launch `train()` and return once the trainer is built and waits for its first step."""
        self._thread.start()
        self._receive("ready")
        return self

    def step(self, micro_batches: list | None) -> dict:
        self._commands.put(micro_batches)
        return self._receive("logs")

    def close(self) -> None:
        """End `train()` (no further step), wait for the thread, and clear what accelerate and
        transformers keep process-wide (a DeepSpeed trainer's state would otherwise configure
        the next trainer in this process)."""
        if self._thread.is_alive():
            self._commands.put(STOP)
            self._thread.join()
        from accelerate.state import AcceleratorState
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        AcceleratorState._reset_state(reset_partial_state=True)
        unset_hf_deepspeed_config()
        if self.trainer.args.deepspeed:  # transformers set it for accelerate; it outlives the run
            os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
        while not self._results.empty():
            kind, value = self._results.get()
            if kind == "error":
                raise value

    @property
    def optimizer(self):
        """The optimizer the trainer steps (DeepSpeed's wrapper under DeepSpeed)."""
        return self.trainer.optimizer

    @property
    def engine(self):
        """The DeepSpeed engine, when the trainer runs under DeepSpeed; else None."""
        wrapped = self.trainer.model_wrapped
        return wrapped if type(wrapped).__name__ == "DeepSpeedEngine" else None

    def _receive(self, expected: str):
        kind, value = self._results.get()
        if kind == "error":
            raise value
        if kind != expected:
            raise RuntimeError(f"TRL trainer thread: expected {expected!r}, got {kind!r}")
        return value

    # --------------------------------------------------------------- trainer thread
    def _train(self) -> None:
        if self._cuda_device is not None:
            torch.cuda.set_device(self._cuda_device)
        try:
            self.trainer.train()
            self._post(("done", None))
        except _Stopped:
            self._post(("done", None))
        except BaseException as exc:  # handed to the runner thread, raised there
            self._post(("error", exc))

    def _post(self, message: tuple) -> None:
        self._results.put(message)

    def _wait(self, control) -> None:
        command = self._commands.get()
        if command is STOP:
            control.should_training_stop = True
        else:
            self.pending = command

    def _serve(self, epoch_iterator, num_batches: int, device):
        """Trainer.get_batch_samples: advance past the placeholder rows, serve the step's
        micro-batches (the trainer's own count of loss tokens, gathered over ranks)."""
        list(itertools.islice(epoch_iterator, num_batches))
        batches, self.pending = self.pending, None
        if batches is None:
            raise _Stopped
        if len(batches) != num_batches:
            raise ValueError(f"a step of {len(batches)} micro-batches; the trainer accumulates "
                             f"{num_batches}")
        return batches, self.trainer._get_num_items_in_batch(batches, device)
