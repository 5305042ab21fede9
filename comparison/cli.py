"""Compare pipelines at equal compute: tune each with the same trial budget, run the chosen
settings over seeds, judge the ordering claims, and re-run with each framework bug switched on.

    ptbench compare configs/comparisons/tiny-arithmetic.yaml --out runs/compare
    ptbench compare CONFIG --out DIR --dry-run          the plan and FLOPs, nothing trained
    ptbench compare CONFIG --out DIR --handicap sft_then_rl:stages.0.lr=1e-7
    ptbench compare CONFIG --out DIR --set seeds=[0] --set search.trials=1

Resumable: run the same command again after an interruption and finished trials are read back,
not rerun (a killed run resumes from its last checkpoint). Writes DIR/comparison.json and
DIR/comparison.md (with --handicap: DIR/handicap-PIPELINE.json and .md, sharing the trials);
each trial's run folder is under DIR/trials/.

Exit status: 0 when every claim got the verdict the comparison file expects, 1 when one
differs (a change to report), 2 for a comparison that cannot run (named field).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ptbench.fixtures.cli_help import HelpFormatter

PROG = "ptbench compare"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("config", help="comparison file, e.g. configs/comparisons/*.yaml")
    parser.add_argument("--out", required=True, metavar="DIR", help="comparison folder")
    parser.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                        help="trials run in parallel, one torch thread each (default: the "
                             "cores, at most 4)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (trials per phase) and FLOPs; train nothing")
    parser.add_argument("--handicap", action="append", default=[],
                        metavar="PIPELINE:KEY.PATH=VALUE",
                        help="handicap a pipeline on purpose at its chosen settings (the "
                             "planted reversal of a claim test); repeatable")
    parser.add_argument("--no-bugs", action="store_true", help="skip the bug-on phase")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        dest="overrides",
                        help="override a comparison field (repeatable; YAML value), e.g. "
                             "seeds=[0] or budget.points=[1e11]")
    parser.add_argument("--store", metavar="URL", default=None,
                        help="results store the verdicts and curves also go to, for `ptbench "
                             "report` ('none': not stored; default: $PTBENCH_STORE or "
                             "ptbench-results/results.sqlite)")
    return parser


def store_run(found: list, kind: str, url: str | None, command: str) -> str:
    """Add measurements to the results store as one finished run of `kind`; where it went."""
    from ptbench.reports.db import default_store_url
    from ptbench.reports.recorder import Recorder

    url = url or default_store_url()
    recorder = Recorder(url, kind=kind, command=command)
    recorder.add(found)
    return f"run {recorder.finish()} of {url}"


def store_comparison(summary: dict, url: str | None, command: str) -> str:
    """Add a finished comparison to the results store as a 'comparison' run; where it went."""
    from ptbench.reports.comparisons import measurements_from_comparison

    return store_run(measurements_from_comparison(summary), "comparison", url, command)


def parse_handicaps(items: Sequence[str]) -> dict[str, dict]:
    import yaml

    from ptbench.pipelines.config import ConfigError

    out: dict[str, dict] = {}
    for item in items:
        pipeline, sep, setting = item.partition(":")
        key, eq, value = setting.partition("=")
        if not sep or not eq or not pipeline or not key:
            raise ConfigError(f"--handicap: expected PIPELINE:KEY.PATH=VALUE, got {item!r}")
        out.setdefault(pipeline, {})[key] = yaml.safe_load(value)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ptbench.comparison.config import load_comparison
    from ptbench.comparison.plan import print_plan
    from ptbench.comparison.runner import run_comparison
    from ptbench.pipelines.config import ConfigError

    try:
        comparison = load_comparison(args.config, args.overrides)
        handicap = parse_handicaps(args.handicap)
        for name in handicap:
            if name not in comparison.config.pipelines:
                raise ConfigError(f"--handicap: expected one of the pipelines "
                                  f"{sorted(comparison.config.pipelines)}, got {name!r}")
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print_plan(comparison)
        return 0
    name = "comparison" if not handicap else "handicap-" + "-".join(sorted(handicap))
    summary = run_comparison(comparison, args.out, workers=args.jobs, handicap=handicap,
                             skip_bugs=args.no_bugs, summary_name=name)
    for claim in summary["claims"]:
        print(claim["explain"])
    print(f"summary: {args.out}/{name}.json, {args.out}/{name}.md")
    from ptbench.comparison.reproduction import write_reproduction

    reproduction = write_reproduction(args.out)
    if reproduction:
        print(f"paper reproduction table: {reproduction}")
    if args.store != "none":
        command = " ".join(["ptbench compare", *(argv if argv is not None else sys.argv[2:])])
        print(f"stored: {store_comparison(summary, args.store, command)}")
    return 0 if all(c["as_expected"] for c in summary["claims"]) else 1
