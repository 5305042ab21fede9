"""Results files (`--ptbench-results`, the version matrix): JSON records written atomically, so a
crash never leaves half a file. The results store of every run is `ptbench.reports.db`."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from ptbench.fixtures.atomic import write_json_atomic
from ptbench.reports.environment import versions


def environment() -> dict:
    """The versions and machine a result was measured on."""
    return {"versions": versions(), "python": platform.python_version(),
            "machine": platform.machine(), "node": platform.node(),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}


class ResultsFile:
    """A JSON results file that is rewritten atomically after every record added."""

    def __init__(self, path: str | os.PathLike, kind: str) -> None:
        self.path = Path(path)
        self.doc = {"kind": kind, "environment": environment(), "records": []}

    def add(self, record: dict) -> None:
        """Append one record and persist the whole file at once."""
        self.doc["records"].append(record)
        write_json_atomic(self.path, self.doc)


def read_results(path: str | os.PathLike) -> dict:
    """Load a results file written by `ResultsFile`, checking its shape."""
    doc = json.loads(Path(path).read_text())
    for key in ("kind", "environment", "records"):
        if key not in doc:
            raise ValueError(f"{path}: not a ptbench results file (missing {key!r})")
    return doc
