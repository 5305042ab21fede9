"""The spectral pass on a 0.5B-parameter model's shapes: wall time and peak memory.

    python benchmarks/spectral_speed.py --work /tmp/spectral-bench --out spectral-speed.json

Writes two checkpoints shaped like Qwen2.5-0.5B (24 layers, hidden 896, MLP 4864, 14 query and
2 key/value heads of 64, vocabulary 151936, tied embeddings: 494M parameters) as bf16
safetensors with random weights (the tuned one = base + 1% noise), then runs
`spectral_pass(base, tuned)` in a child process and reports its wall time and peak resident
memory (the child's ru_maxrss). Target: under 10 minutes and 8 GiB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

SHAPES = {"hidden": 896, "intermediate": 4864, "layers": 24, "heads": 14, "kv_heads": 2,
          "head_dim": 64, "vocab": 151936}


def tensors(seed: int, base: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    s, g = SHAPES, torch.Generator().manual_seed(seed)
    h, kv = s["hidden"], s["kv_heads"] * s["head_dim"]
    shapes = {"model.embed_tokens.weight": (s["vocab"], h)}
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                   p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                   p + "mlp.gate_proj.weight": (s["intermediate"], h),
                   p + "mlp.up_proj.weight": (s["intermediate"], h),
                   p + "mlp.down_proj.weight": (h, s["intermediate"])}
    out = {}
    for name, shape in shapes.items():
        w = torch.randn(shape, generator=g) * 0.02
        if base is not None:
            w = base[name].float() + 0.01 * w
        out[name] = w.to(torch.bfloat16)
    return out


def write_checkpoints(work: Path) -> tuple[Path, Path, int]:
    from safetensors.torch import save_file

    base = tensors(0)
    params = sum(t.numel() for t in base.values())
    (work / "base").mkdir(parents=True, exist_ok=True)
    save_file(base, work / "base" / "model.safetensors")
    tuned = tensors(1, base)
    del base
    (work / "tuned").mkdir(parents=True, exist_ok=True)
    save_file(tuned, work / "tuned" / "model.safetensors")
    return work / "base", work / "tuned", params


def render(result: dict) -> str:
    """The stored figures in one sentence."""
    return (f"Spectral pass, base against one fine-tuned checkpoint of Qwen2.5-0.5B shapes "
            f"({result['parameters'] / 1e6:.0f}M parameters, top {result['k']} directions, 2 "
            f"cores): {result['seconds']:.0f} s wall, peak resident memory "
            f"{result['peak_rss_gib']:.2f} GiB (target: {result['target']}).\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/ptbench-spectral-bench")
    p.add_argument("--out", default=None)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--show", default=None, metavar="JSON", help="print stored figures and exit")
    args = p.parse_args()
    if args.show:
        print(render(json.loads(Path(args.show).read_text())), end="")
        return 0
    work = Path(args.work)
    base, tuned, params = write_checkpoints(work)
    print(f"wrote two {params / 1e6:.0f}M-parameter checkpoints under {work}", file=sys.stderr)
    code = ("from ptbench.pipelines.spectral_pass import spectral_pass; import sys; "
            f"rows = spectral_pass({str(base)!r}, {str(tuned)!r}, k={args.k}); "
            "print(len(rows), file=sys.stderr)")
    started = time.time()
    subprocess.run([sys.executable, "-c", code], check=True)
    seconds = time.time() - started
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    result = {"parameters": params, "seconds": round(seconds, 1), "peak_rss_gib": round(peak_gib, 2),
              "k": args.k, "target": "under 600 s and 8 GiB"}
    print(render(result), end="")
    if args.out:
        from ptbench.fixtures.atomic import write_text_atomic

        write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
