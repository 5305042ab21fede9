"""Where a run happens: machine, accelerators, package versions, git revision, command line."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ptbench.reports.records import RunInfo

PACKAGES = ("torch", "transformers", "trl", "deepspeed", "openrlhf", "accelerate", "datasets")


def versions() -> dict[str, str | None]:
    """Installed version of each package ptbench measures (None where not installed)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _git(*args: str, cwd: Path) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> tuple[str, int]:
    try:
        import torch
    except ImportError:
        return "", 0
    if not torch.cuda.is_available():
        return "", 0
    return torch.cuda.get_device_name(0), torch.cuda.device_count()


def run_info(kind: str, *, command: str | None = None, cwd: str | Path = ".",
             config_hashes: dict | None = None, labels: dict | None = None) -> RunInfo:
    """A `RunInfo` of this process, now; git fields from the checkout holding `cwd` ('' outside
    one)."""
    cwd = Path(cwd)
    gpu, gpu_count = _gpus()
    return RunInfo(
        kind=kind, started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=command if command is not None else " ".join(sys.argv),
        git_revision=_git("rev-parse", "HEAD", cwd=cwd),
        git_dirty=bool(_git("status", "--porcelain", "--untracked-files=no", cwd=cwd)),
        host=platform.node(), cpu=_cpu(), gpu=gpu, gpu_count=gpu_count, versions=versions(),
        config_hashes=dict(config_hashes or {}), labels=dict(labels or {}))
