"""Shared fixtures of the project's tests."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The tests never reach the model hub (tiny models and shipped data only): say so, so that a
# lookup that falls back offline (the paper comparisons' shapes) fails at once, not after retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

PG_USER = "ptbench-pg"
"""The unprivileged OS user (and database superuser) the test server runs as when we are root:
PostgreSQL refuses to run as root."""


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for this session, on a unix socket only; its URL (the
    'postgres' database; make your own inside it). Skipped where PostgreSQL is not installed."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL not installed (Debian: apt-get install postgresql)")
    # Under /tmp, not pytest's tmp_path: the socket path must stay short (about 100 bytes) and
    # the server's user must be able to enter every folder above it.
    root = Path(tempfile.mkdtemp(prefix="ptbench-pg-"))
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", PG_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(PG_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        user, as_user = PG_USER, ["runuser", "-u", PG_USER, "--"]
    else:
        user, as_user = pwd.getpwuid(os.geteuid()).pw_name, []
    data, log, port = root / "data", root / "server.log", _free_port()
    env = {**os.environ, "LC_ALL": "C"}

    def run(*cmd: str) -> None:
        proc = subprocess.run([*as_user, *cmd], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            server_log = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{' '.join(cmd[:2])} failed:\n{proc.stdout}{proc.stderr}{server_log}")

    try:
        run(initdb, "-D", str(data), "-A", "trust", "-U", user, "-E", "UTF8", "--no-sync")
        # fsync off: the tests kill clients, never the server, so its durability is not tested.
        run(pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o",
            f"-k {root} -c listen_addresses='' -p {port} -c fsync=off", "start")
        yield f"postgresql+psycopg://{user}@/postgres?host={root}&port={port}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, env=env)
        shutil.rmtree(root, ignore_errors=True)
