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


def ds_config(zero_stage: int, offload_optimizer: bool = False, *,
              micro_batch_size: int | str = "auto", grad_accum: int | str = "auto",
              train_batch_size: int | str = "auto", clipping: float | str = "auto",
              bf16: bool | str = "auto", managed_accumulation: bool = True,
              optimizer: dict | None = None) -> dict:
    """A DeepSpeed config: ZeRO `zero_stage`, the optimizer states on the CPU or not.

    "auto" values are filled in by transformers / accelerate from a trainer's own arguments (the
    TRL backend); the native backend and the probes give numbers. `managed_accumulation=False`
    makes the caller's `engine.step()` the accumulation boundary (the native backend).
    `optimizer`: DeepSpeed's own optimizer section (else the client optimizer is used, also under
    offload). Which stages a caller accepts is checked at its edge (`config.DeepSpeedConfig`,
    the probe adapter)."""
    zero: dict = {"stage": zero_stage}
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    config = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": train_batch_size,
        "gradient_clipping": clipping,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,  # a torch optimizer under offload too
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if not managed_accumulation:
        config["managed_gradient_accumulation"] = False
    if optimizer is not None:
        config["optimizer"] = optimizer
    return config


def engine_config(zero_stage: int, *, offload_optimizer: bool = False,
                  max_grad_norm: float | None = None, bf16: bool = False) -> dict:
    """The native backend's config of one training stage: caller-owned accumulation boundary,
    nominal sizes (ptbench decides what a step holds; DeepSpeed only checks the product)."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    return ds_config(zero_stage, offload_optimizer, micro_batch_size=1, grad_accum=1,
                     train_batch_size=world, clipping=max_grad_norm or 0.0, bf16=bf16,
                     managed_accumulation=False)


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
