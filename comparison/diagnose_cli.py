"""Explain why pipelines differ: the coupling and spectral diagnostics over seeds, with the
papers' claims judged only where their premises hold.

    ptbench diagnose configs/diagnostics/tiny-arithmetic.yaml --out runs/diagnose-tiny
    ptbench diagnose configs/diagnostics/tiny-arithmetic-quick.yaml --out runs/diagnose-quick
    ptbench diagnose STUDY --out DIR --set seeds=[0] --set sft.steps=800

Resumable: finished runs are read back, a killed run resumes from its last checkpoint. Writes
DIR/study.json (per seed: premises, PL estimates, predicted and observed best RL duration,
misalignment curves, spectral tables, UV-restore sweep; the claims), DIR/study.md (the same in
tables, `ptbench.comparison.study_summary`) and stores the claims and
figures in the results store for `ptbench report`. For two checkpoints of a real model, see
`ptbench spectral`.

Exit status: 0 when the study ran (whatever the verdicts), 2 for a study that cannot run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ptbench.fixtures.cli_help import HelpFormatter

PROG = "ptbench diagnose"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("config", help="study file, e.g. configs/diagnostics/*.yaml")
    parser.add_argument("--out", required=True, metavar="DIR", help="study folder")
    parser.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                        help="runs in parallel (default: the cores, at most 4)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        dest="overrides", help="override a study field (repeatable; YAML value)")
    parser.add_argument("--store", metavar="URL", default=None,
                        help="results store the claims and figures also go to ('none': not "
                             "stored; default: $PTBENCH_STORE or ptbench-results/results.sqlite)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ptbench.comparison.study import run_study
    from ptbench.comparison.study_config import load_study
    from ptbench.pipelines.config import ConfigError

    try:
        study = load_study(args.config, args.overrides)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    summary = run_study(study, args.out, workers=args.jobs)
    from ptbench.comparison.study_summary import render
    from ptbench.fixtures.atomic import write_text_atomic

    write_text_atomic(Path(args.out) / "study.md", render(summary))
    print(f"summary: {args.out}/study.json, {args.out}/study.md")
    if args.store != "none":
        from ptbench.comparison.cli import store_run
        from ptbench.reports.diagnostics import measurements_from_study

        command = " ".join(["ptbench diagnose", *(argv if argv is not None else sys.argv[2:])])
        print(f"stored: {store_run(measurements_from_study(summary), 'diagnostics', args.store, command)}")
    return 0
