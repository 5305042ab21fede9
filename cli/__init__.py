"""ptbench: a pytest-style regression benchmark for LLM post-training.

    ptbench run CONFIG --out DIR [--resume] [--set key.path=value ...]
    ptbench probe [--list] [--adapter NAME ...] [--seeds N] [--out FILE]
    ptbench matrix run PACKAGE==VERSION ... | ptbench matrix table
    ptbench report [--store URL] [--out DIR]
    ptbench compare COMPARISON --out DIR [--dry-run]
    ptbench diagnose STUDY --out DIR
    ptbench spectral BASE TUNED --out DIR [--restore P:Q ...] [--task TASK]
    torchrun --standalone --nproc-per-node 2 -m ptbench.cli run CONFIG --out DIR

`ptbench SUBCOMMAND --help` describes each subcommand.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ptbench.fixtures.cli_help import HelpFormatter

__all__ = ["SUBCOMMANDS", "HelpFormatter", "Subcommand", "main"]


@dataclass(frozen=True)
class Subcommand:
    """One `ptbench NAME ...`: the module whose `main(argv) -> int` runs it (its own argparse
    parser, prog `ptbench NAME`) and whose docstring describes it."""

    name: str
    module: str

    def main(self) -> Callable[[list[str] | None], int]:
        return importlib.import_module(self.module).main

    def summary(self) -> str:
        """The first line of the module's docstring, read without importing the module (the
        probes import torch), so that `ptbench --help` is instant."""
        doc = _docstring(self.module)
        return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else ""


# The subcommand table: a new subcommand (report, bisect, ...) is one more entry here.
SUBCOMMANDS: dict[str, Subcommand] = {s.name: s for s in (
    Subcommand("run", "ptbench.cli.run"),
    Subcommand("probe", "ptbench.fixtures.probes.cli"),
    Subcommand("matrix", "ptbench.fixtures.probes.matrix"),
    Subcommand("report", "ptbench.reports.cli"),
    Subcommand("compare", "ptbench.comparison.cli"),
    Subcommand("diagnose", "ptbench.comparison.diagnose_cli"),
    Subcommand("spectral", "ptbench.comparison.spectral_cli"),
)}


def _docstring(module: str) -> str:
    if module in sys.modules:
        return sys.modules[module].__doc__ or ""
    # Find the module's file the way `import` would, but without running any package's
    # __init__ on the way (importlib.util.find_spec imports the parents).
    spec, path = None, None
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        if name in sys.modules:
            spec = sys.modules[name].__spec__
        else:
            spec = next((s for finder in sys.meta_path if hasattr(finder, "find_spec")
                         and (s := finder.find_spec(name, path)) is not None), None)
        if spec is None:
            break
        path = spec.submodule_search_locations
    if spec is not None and spec.origin and spec.origin.endswith(".py"):
        return ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or ""
    return importlib.import_module(module).__doc__ or ""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ptbench")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: it only shows help, the version and usage errors; each
    subcommand's own parser reads the rest of the command line."""
    parser = argparse.ArgumentParser(prog="ptbench", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"ptbench {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True,
                                title="subcommands")
    for s in SUBCOMMANDS.values():
        sub.add_parser(s.name, help=s.summary(), add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`ptbench SUBCOMMAND ...`; the exit status (0 ok, 1 a failed check, 2 bad usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]].main()(argv[1:])
    # --help, --version or a usage error (these exit), or options before the subcommand.
    args, rest = build_parser().parse_known_args(argv)
    return SUBCOMMANDS[args.command].main()(rest)
