"""Figures in the README are regenerated from stored results by the command its marker names."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- (?P<name>[\w-]+): (?P<command>.+?) -->\n(?P<body>.*?)<!-- /(?P=name) -->",
                   re.S)


def blocks() -> list[re.Match]:
    return list(BLOCK.finditer((ROOT / "README.md").read_text()))


@pytest.mark.parametrize("block", blocks(), ids=lambda m: m["name"])
def test_readme_block_is_what_its_command_prints(block):
    command = shlex.split(block["command"])
    assert command[:2] == ["python", "-m"], "a block's command is a module of the project"
    done = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert block["body"] == done.stdout, (
        f"README block {block['name']!r} is stale: regenerate it with `{block['command']}`")


def test_the_readme_has_generated_blocks():
    assert [m["name"] for m in blocks()] == ["matrix-table", "matrix-history", "bisect-cost",
                                            "comparison-figures", "comparison-flips",
                                            "diagnostics-figures", "diagnostics-cola",
                                            "spectral-speed"]
