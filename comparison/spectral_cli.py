"""Compare two checkpoints of a model spectrally, against a random perturbation of the same
norm, and write UV-restored copies (optionally evaluated on a task's ID and OOD splits).

    ptbench spectral BASE TUNED --out DIR
    ptbench spectral Qwen/Qwen2.5-0.5B runs/sft/checkpoints/step-002000 --out runs/spectral \\
        --restore 0.2:0.25 --restore 1:1 --task arithmetic --task-option ood=tens-carry

BASE and TUNED are save_pretrained folders with safetensors (a hub id is downloaded first).
One matrix at a time (float64 on the GPU when present; never two whole models in host memory),
with progress bars; passes are cached in DIR/cache, so a rerun is instant. Writes
DIR/spectral.json (rows per matrix for tuned and random, the rotation score) and, per --restore
P:Q, DIR/restore-pP-qQ/ (the tuned model with the base's singular vectors for the top P of
singular values in the first Q of layers), evaluated when --task is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ptbench.fixtures.cli_help import HelpFormatter

PROG = "ptbench spectral"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("base", help="the base checkpoint (folder or hub id)")
    parser.add_argument("tuned", help="the fine-tuned checkpoint (folder or hub id)")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--k", type=int, default=16, help="top singular directions compared")
    parser.add_argument("--restore", action="append", default=[], metavar="P:Q",
                        help="write a UV-restored copy (fractions of singular values and of "
                             "layers); repeatable")
    parser.add_argument("--task", default=None, help="evaluate base, tuned and restored copies "
                        "on this task's ID and OOD splits (greedy accuracy)")
    parser.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a task option (YAML value), e.g. ood=tens-carry")
    parser.add_argument("--n", type=int, default=200, help="problems per split (default 200)")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="the random baseline's and the eval "
                        "problems' seed")
    return parser


def parse_restore(item: str) -> tuple[float, float]:
    p, sep, q = item.partition(":")
    try:
        values = float(p), float(q)
    except ValueError:
        values = None
    if not sep or values is None or not all(0 < v <= 1 for v in values):
        raise ValueError(f"--restore: expected P:Q, two fractions in (0, 1], got {item!r}")
    return values


def local(name: str) -> Path:
    """A folder for a checkpoint name: itself, or the hub snapshot (downloaded once)."""
    if Path(name).exists():
        return Path(name)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import yaml

    from ptbench.comparison.diagnostic_claims import rotation_score
    from ptbench.comparison.spectral_study import pass_with_random_twin
    from ptbench.fixtures.atomic import write_json_atomic
    from ptbench.pipelines.spectral_pass import restore_checkpoint

    try:
        restores = [parse_restore(r) for r in args.restore]
        options = {}
        for item in args.task_option:
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"--task-option: expected KEY=VALUE, got {item!r}")
            options[key] = yaml.safe_load(value)
        task = None
        if args.task is not None:
            from ptbench.fixtures.tasks import get_task

            task = get_task(args.task, **options)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    base, tuned = local(args.base), local(args.tuned)
    cache = out / "cache"
    rows, random_rows = pass_with_random_twin(base, tuned, out / "random", args.k, args.seed, cache,
                                              progress=True)
    result = {"base": str(base), "tuned": str(tuned), "k": args.k, "rows": rows,
              "random_rows": random_rows, "rotation_score": rotation_score(rows, random_rows),
              "restored": []}
    for p, q in restores:
        folder = restore_checkpoint(base, tuned, out / f"restore-p{p:g}-q{q:g}", p, q)
        result["restored"].append({"p": p, "q": q, "path": str(folder)})
    if task is not None:
        from ptbench.comparison.spectral_study import evaluate_checkpoint

        examples = {"id": task.examples("id", args.n, seed=args.seed),
                    "ood": task.examples("ood", args.n, seed=args.seed)}
        result["evaluated"] = {name: evaluate_checkpoint(path, task, examples, args.max_new_tokens)
                               for name, path in [("base", base), ("tuned", tuned)]
                               + [(f"restore-p{r['p']:g}-q{r['q']:g}", Path(r["path"]))
                                  for r in result["restored"]]}
    write_json_atomic(out / "spectral.json", result)
    print(f"rotation score (log angle ratio - log value-change ratio, vs random): "
          f"{result['rotation_score']:+.3f}")
    for name, scores in result.get("evaluated", {}).items():
        print(f"{name}: id {scores['id']:.3f}, ood {scores['ood']:.3f}")
    print(f"written: {out / 'spectral.json'}")
    return 0
