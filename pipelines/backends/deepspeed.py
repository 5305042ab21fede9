"""DeepSpeed ZeRO under the native backend: the engine owns gradient reduction and the update.

`NativeTrainStep(engine=...)` computes every micro-batch's loss exactly as without DeepSpeed
(ptbench.pipelines.losses, global normalizers) and hands the rest to the engine:

    for each micro-batch:  engine.backward(loss x W)     (W = world size: DeepSpeed averages
                                                            gradients over ranks, ptbench's losses
                                                            are already global shares: sum them)
    once per step:         engine.step()                  (reduce / partition, clip, update, zero)

The engine runs with `managed_gradient_accumulation: false`: the caller's `step()` is the
accumulation boundary, so a step may hold any number of micro-batches and several backward
calls (SRFT adds its SFT term to the RL loss before one update). ZeRO stages 0, 1 and 2 keep a
whole copy of the weights in the module on every rank, which the runner evaluates, generates
with and saves as HF directories directly. The optimizer is ptbench's own torch AdamW, handed
to DeepSpeed as the client optimizer, so setting its param groups' lr sets the engine's.
Checkpoints go through `engine.save_checkpoint` / `load_checkpoint` (every rank writes its
optimizer partition), never through a gather on rank 0.
"""

from __future__ import annotations

import logging
import os
import socket

import torch
import torch.distributed as dist

CHECKPOINT_TAG = "state"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_deepspeed() -> None:
    """Import DeepSpeed for this machine's accelerator and join its process group: the one a
    launcher (torchrun, accelerate, deepspeed) described, or a group of one process."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if torch.cuda.is_available() else "cpu")
    import deepspeed
    from deepspeed.utils import logger

    logger.setLevel(logging.ERROR)  # "untested optimizer" and per-engine banners: noise here
    if dist.is_available() and dist.is_initialized():
        return
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(_free_port()))):
        os.environ.setdefault(key, value)
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo",
                               verbose=False)


def zero_section(zero_stage: int, offload_optimizer: bool = False) -> dict:
    """DeepSpeed's `zero_optimization` section: the stage, the optimizer on the CPU or not."""
    zero: dict = {"stage": zero_stage}
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    return zero


def engine_config(zero_stage: int, *, offload_optimizer: bool = False,
                  max_grad_norm: float | None = None, bf16: bool = False) -> dict:
    """The DeepSpeed config of one training stage (caller-owned accumulation boundary); the
    stage and offload come validated from `config.DeepSpeedConfig`."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    return {
        # Nominal sizes: ptbench decides what a step holds; DeepSpeed only checks the product.
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "train_batch_size": world,
        "managed_gradient_accumulation": False,
        "gradient_clipping": max_grad_norm or 0.0,
        "zero_optimization": zero_section(zero_stage, offload_optimizer),
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,  # ptbench's torch AdamW under offload too
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def wrap(model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: dict):
    """A DeepSpeed engine training `model` (in place) with the client `optimizer`."""
    import deepspeed

    init_deepspeed()
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine


def save(engine, directory: str | os.PathLike) -> None:
    """Every rank writes its share of the engine's state (optimizer partitions) under
    `directory`; a collective: all ranks call it."""
    engine.save_checkpoint(str(directory), tag=CHECKPOINT_TAG, save_latest=False)


def load(engine, directory: str | os.PathLike) -> None:
    """Restore what `save` wrote (weights and optimizer state); all ranks call it."""
    path, _ = engine.load_checkpoint(str(directory), tag=CHECKPOINT_TAG, load_optimizer_states=True,
                                     load_lr_scheduler_states=False)
    if path is None:
        raise FileNotFoundError(f"--resume: no DeepSpeed state under {directory}")
