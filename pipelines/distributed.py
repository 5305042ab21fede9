"""Data parallelism for the runner, started by an existing launcher (torchrun, accelerate launch).

    torchrun --standalone --nproc-per-node 2 -m ptbench.cli run CONFIG --out DIR

Every rank holds the whole model and draws the same global batch from the same seeded
generator, then trains on its contiguous shard of the rows (RL: of the prompts, so a group never
straddles ranks). The native backend normalizes each rank's loss by the step's global counts and
sums gradients over ranks, so a step at world size 2 is the step at world size 1. Rank 0
evaluates, writes metric rows and checkpoints; the other ranks wait at a barrier.
Gloo on CPU, NCCL on CUDA (one device per rank, `LOCAL_RANK`).
"""

from __future__ import annotations

import gc
import os
import sys
import types
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


_joined = False
"""Whether `init_from_env` created this process's group (then `shutdown` ends it)."""


def init_from_env() -> None:
    """Join the process group a launcher described in the environment (no-op at world size 1)."""
    global _joined
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
        if torch.cuda.device_count() < local:
            raise RuntimeError(f"{local} ranks on this node but {torch.cuda.device_count()} CUDA "
                               "device(s): NCCL needs one device per rank. Launch fewer ranks, or "
                               "set CUDA_VISIBLE_DEVICES= to run on the CPU (gloo).")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    _joined = True


def shutdown() -> None:
    """Leave the process group `init_from_env` joined, and end its gloo worker threads before
    the interpreter finalizes; a group someone else created (DeepSpeed's in this process, a
    caller's) is theirs to end."""
    global _joined
    if _joined and dist.is_available() and dist.is_initialized():
        # A gloo worker thread frees a finished collective's tensors after the caller has
        # resumed, taking the GIL when such a tensor's Python object is gone. If the interpreter
        # is finalizing by then, that thread is ended by pthread_exit inside a noexcept C++
        # destructor: SIGABRT, "terminate called without an active exception", at the exit of
        # a rank that finished its work. Gloo has no shutdown: its threads are joined only when
        # the last reference to the group goes, so destroy_process_group() alone leaves them
        # running into finalization whenever something else still holds a group: DeepSpeed's
        # group registry, and default arguments evaluated at import (`group=GroupMember.WORLD`
        # in DeepSpeed's TorchBackend and torch.distributed.nn) of a module imported after the
        # group was joined (DeepSpeed is: under DeepSpeed, TRL, and transformers on rank 0).
        world = dist.GroupMember.WORLD
        comm = sys.modules.get("deepspeed.comm")
        if comm is not None and comm.is_initialized():
            comm.destroy_process_group()  # torch's destroy, then DeepSpeed's own references
        else:
            dist.destroy_process_group()
        _drop_from_default_arguments(world)
        del world
        gc.collect()  # the last references may sit in cycles (engines, trainers)
    _joined = False


def _drop_from_default_arguments(group) -> None:
    """Replace the (destroyed) `group` where functions hold it as a default argument by None,
    which torch.distributed and DeepSpeed read as the default group."""
    for function in gc.get_objects():
        if not isinstance(function, types.FunctionType):
            continue
        defaults, kwdefaults = function.__defaults__, function.__kwdefaults__
        if defaults and any(d is group for d in defaults):
            function.__defaults__ = tuple(None if d is group else d for d in defaults)
        if kwdefaults and any(d is group for d in kwdefaults.values()):
            function.__kwdefaults__ = {k: None if d is group else d for k, d in kwdefaults.items()}


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process evaluates, logs and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shard(items: list[T]) -> list[T]:
    """This rank's contiguous share of `items` (its length must divide by the world size)."""
    n, w = len(items), world_size()
    if n % w:
        raise ValueError(f"batch of {n} rows cannot be split evenly over {w} ranks")
    return items[rank() * n // w:(rank() + 1) * n // w]


def sum_over_ranks(values: list, dtype: torch.dtype = torch.float64) -> list:
    """Element-wise sums over ranks (int64 keeps FLOP counters of large models exact)."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=dtype)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: object) -> list[object]:
    """Every rank's `obj`, in rank order (a list of one at world size 1)."""
    if world_size() == 1:
        return [obj]
    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
