"""Training throughput of the native backend vs TRL's SFTTrainer on the same tiny SFT config.

    python benchmarks/backend_throughput.py [--steps 100] [--batch-size 64]

Both train the same fresh tiny model (qwen2-0.6m, arithmetic demonstrations) on the SAME
pre-built batches, single-threaded: the native loop calls `NativeTrainStep` per batch; TRL runs
`SFTTrainer.train()` ONCE over all of them (its normal use, no per-step set-up). Prints tokens/s
of each and the ratio native / TRL (target: >= 0.9). Float32 on the default device (CUDA when
present, timed after a synchronize).
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    torch.set_num_threads(1)
    from ptbench.fixtures.models.devices import default_device

    device = default_device()

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from ptbench.fixtures.models import TINY_PRESETS, build_tiny_model, train_tokenizer
    from ptbench.fixtures.tasks import get_task
    from ptbench.pipelines.backends.native import NativeTrainStep
    from ptbench.pipelines.backends.trl_trainers import constant_schedule, quiet, trainer_args
    from ptbench.pipelines.data import demonstration_batch

    task = get_task("arithmetic")
    tokenizer = train_tokenizer(task.corpus(4000), vocab_size=64)
    spec = TINY_PRESETS["qwen2-0.6m"]
    spec = type(spec)(**{**spec.__dict__, "vocab_size": len(tokenizer)})
    pool = task.examples("train", 4000)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(args.steps):
        ex = [pool[int(i)] for i in torch.randint(len(pool), (args.batch_size,), generator=g)]
        batches.append(demonstration_batch(tokenizer, [e.prompt for e in ex],
                                           [e.demonstration for e in ex]))
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)

    model = build_tiny_model(spec, seed=0).to(device).train()
    native = NativeTrainStep(model, torch.optim.AdamW(model.parameters(), lr=1e-3), max_grad_norm=1.0)
    native([batches[0]])  # warm-up
    synchronize()
    start = time.perf_counter()
    for b in batches:
        native([b])
    synchronize()
    native_s = time.perf_counter() - start

    model = build_tiny_model(spec, seed=0).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    kwargs = {**trainer_args(1e-3, 1, 1, 1.0), "max_steps": args.steps, "logging_steps": 10**6}
    config = SFTConfig(**kwargs, train_sampling_strategy="sequential", loss_type="nll",
                       dataset_kwargs={"skip_prepare_dataset": True})
    trainer = quiet(SFTTrainer(
        model=model, args=config, train_dataset=Dataset.from_dict({"i": list(range(args.steps))}),
        processing_class=tokenizer, data_collator=lambda f: batches[f[0]["i"]],
        optimizers=constant_schedule(optimizer)))
    start = time.perf_counter()
    trainer.train()
    synchronize()
    trl_s = time.perf_counter() - start

    native_tps, trl_tps = tokens / native_s, tokens / trl_s
    print(f"{args.steps} steps x {args.batch_size} rows, {tokens} tokens, 1 thread, {device}")
    print(f"native: {native_s:.1f}s, {native_tps:,.0f} tokens/s")
    print(f"trl SFTTrainer: {trl_s:.1f}s, {trl_tps:,.0f} tokens/s")
    print(f"native / TRL throughput: {native_tps / trl_tps:.2f} (target >= 0.9)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
