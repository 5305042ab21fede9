"""Run a pipeline config end to end: base model, stages in order, eval points, checkpoints.

    ptbench run configs/tiny/sft_then_rl-arithmetic.yaml --out runs/x
    ptbench run configs/tiny/sft_then_rl-arithmetic.yaml --out runs/short \\
        --set stages.0.steps=100 --set stages.1.steps=20 --set eval.every=10
    ptbench run configs/tiny/sft_then_rl-arithmetic.yaml --out runs/x --resume
    torchrun --standalone --nproc-per-node 2 -m ptbench.cli run CONFIG --out DIR

Writes DIR/metrics.jsonl (one row per measurement) and checkpoints under DIR/checkpoints/ at
every stage boundary and every `checkpoint_every` steps; --resume continues a killed run from its
last checkpoint. `--set key.path=value` changes one config field before validation (repeatable,
a later one wins): the path walks fields, list indices and option keys (`base.steps=0`,
`stages.1.lr=1e-4`, `task.options.id_digits=3`, `deepspeed.zero_stage=2`) and the value is YAML
(`20`, `true`, `null`, `[1, 2]`).

The metrics also go to the results store (`--store`), as a 'pipeline' run that `ptbench report`
judges against the earlier runs of the same config.

Exit status: 0 when the run finished, 2 for a config (or --set) that cannot run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ptbench.cli import HelpFormatter

PROG = "ptbench run"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("config", help="pipeline config file (YAML or JSON), e.g. configs/tiny/*.yaml")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="run folder: metrics.jsonl and checkpoints/")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in --out")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        dest="overrides",
                        help="override a config field (repeatable; YAML value), e.g. stages.1.steps=20")
    parser.add_argument("--store", metavar="URL", default=None,
                        help="results store the run's metrics also go to, for `ptbench report` "
                             "('none': not stored; default: $PTBENCH_STORE or "
                             "ptbench-results/results.sqlite)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported after parsing, so that --help does not wait for torch.
    from ptbench.pipelines import distributed
    from ptbench.pipelines.config import ConfigError, load_config
    from ptbench.pipelines.run import run_pipeline

    try:
        try:
            config = load_config(args.config, overrides=args.overrides)
            path = run_pipeline(config, args.out, resume=args.resume)
        except ConfigError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        if distributed.is_main():
            print(f"metrics: {path}")
            if args.store != "none":
                print(f"stored: {store_run(path, config, args.store)}")
    finally:
        distributed.shutdown()
    return 0


def store_run(metrics, config, url: str | None) -> str:
    """Add a finished run's metrics to the results store as a 'pipeline' run; where it went."""
    from ptbench.reports.db import default_store_url
    from ptbench.reports.recorder import Recorder

    url = url or default_store_url()
    recorder = Recorder(url, kind="pipeline", command=" ".join(["ptbench run", *sys.argv[1:]]))
    recorder.add_pipeline_metrics(metrics, config)
    return f"run {recorder.finish()} of {url}"
