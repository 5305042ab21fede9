"""Build the report of a run in the results store, with its verdict against the history.

    ptbench report                                  # the newest run in the default store
    ptbench report --store postgresql://host/db --out report/ --history 30
    ptbench report --run 42 --baseline 40
    ptbench report --import runs/x/metrics.jsonl    # add a pipeline run (or a results file) first

Writes report.html (self-contained: opens from a file, no network) and report.md (for a CI job
summary or a PR comment) into --out, and prints the verdict and the paths. The baseline is the
newest finished run of the same kind before it; timings are judged against the --history runs
before it (median and MAD, at least 5 nights). Exit status: 1 on a regression or a new failure,
0 otherwise, 2 on bad input (an unreadable or foreign store, an unknown run, a baseline of
another kind or configuration).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ptbench.fixtures.cli_help import HelpFormatter

PROG = "ptbench report"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--store", metavar="URL", default=None,
                   help="SQLite path or postgresql:// URL (default: $PTBENCH_STORE or "
                        "ptbench-results/results.sqlite)")
    p.add_argument("--out", metavar="DIR", default="ptbench-results",
                   help="folder for report.html and report.md")
    p.add_argument("--run", type=int, default=None, metavar="ID", help="run to report (default: newest)")
    p.add_argument("--baseline", type=int, default=None, metavar="ID",
                   help="run to compare with (default: the newest earlier finished run of its kind)")
    p.add_argument("--history", type=int, default=14, metavar="N", help="earlier runs used for timings and charts")
    p.add_argument("--min-effect", type=float, default=0.05,
                   help="smallest relative change of a value called a regression or an improvement")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the seed tests")
    p.add_argument("--import", dest="imports", nargs="+", default=[], metavar="PATH",
                   help="first import metrics.jsonl files, run folders or probe results files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ptbench.reports.build import build_report
    from ptbench.reports.db import ResultsStore, StoreError, default_store_url
    from ptbench.reports.importers import import_path

    if args.history < 0:
        print(f"{PROG}: error: --history: expected an integer >= 0, got {args.history}", file=sys.stderr)
        return 2
    try:
        with ResultsStore.open(args.store or default_store_url()) as store:
            for path in args.imports:
                print(f"imported {path} as run {import_path(store, path)}")
            built = build_report(store, args.out, run_id=args.run, baseline=args.baseline,
                                 history=args.history, min_effect=args.min_effect, alpha=args.alpha)
    except (StoreError, ValueError, FileNotFoundError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(built.comparison.headline())
    print(f"report: {built.html}\nsummary: {built.markdown}")
    return 1 if built.comparison.failed else 0
