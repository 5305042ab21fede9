"""Rewrite every generated block of README.md with what its command prints now.

    python -m benchmarks.readme_blocks            # all blocks
    python -m benchmarks.readme_blocks diagnostics-figures spectral-speed

A block is `<!-- NAME: python -m MODULE ARGS -->` ... `<!-- /NAME -->`; its body is the command's
standard output, run from the repository root (`tests/test_readme_figures.py` checks them).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from ptbench.fixtures.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- (?P<name>[\w-]+): (?P<command>.+?) -->\n(?P<body>.*?)<!-- /(?P=name) -->",
                   re.S)


def main(names: list[str]) -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()

    def regenerate(m: re.Match) -> str:
        if names and m["name"] not in names:
            return m[0]
        command = shlex.split(m["command"])
        out = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True,
                             cwd=ROOT, check=True).stdout
        print(f"regenerated {m['name']}", file=sys.stderr)
        return f"<!-- {m['name']}: {m['command']} -->\n{out}<!-- /{m['name']} -->"

    write_text_atomic(readme, BLOCK.sub(regenerate, text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
