"""The `ptbench` command: subcommands, help, errors, the old spellings, and one short run."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from ptbench.cli import SUBCOMMANDS, Subcommand, main

ROOT = Path(__file__).resolve().parents[1]
SFT = ROOT / "configs" / "tiny" / "sft-arithmetic.yaml"
SFT_THEN_RL = ROOT / "configs" / "tiny" / "sft_then_rl-arithmetic.yaml"
SHRINK = ["--set", "stages.0.steps=2", "--set", "stages.0.batch_size=4", "--set", "base.steps=2",
          "--set", "base.batch_size=8", "--set", "eval.every=1", "--set", "eval.n_id=4",
          "--set", "eval.n_ood=4", "--set", "eval.n_demos=4", "--set", "eval.n_reward=4"]


def exits(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run `ptbench ARGV` in process: (exit status, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def first_line(module: str) -> str:
    return importlib.import_module(module).__doc__.strip().splitlines()[0].rstrip(".")


def test_top_level_help_lists_every_subcommand(capsys):
    code, out, _ = exits(["--help"], capsys)
    assert code == 0
    assert out.startswith("usage: ptbench ")
    for name, sub in SUBCOMMANDS.items():
        assert f"    {name} " in out, name
        # the summary is the module docstring's first line, read without importing it
        assert sub.summary() == first_line(sub.module)
        assert " ".join(sub.summary().split()[:4]) in " ".join(out.split())
    assert set(SUBCOMMANDS) >= {"run", "probe", "matrix"}


@pytest.mark.parametrize("name", ["run", "probe", "matrix"])
def test_subcommand_help_shows_its_prog_docstring_and_defaults(name, capsys):
    code, out, _ = exits([name, "--help"], capsys)
    assert code == 0
    assert out.startswith(f"usage: ptbench {name} ")
    doc = importlib.import_module(SUBCOMMANDS[name].module).__doc__
    assert doc.strip().splitlines()[0] in out  # the whole docstring, layout kept
    assert f"ptbench {name}" in doc  # whose examples use the new spelling
    shown = {"run": ["--set KEY.PATH=VALUE", "--resume", "--out DIR"],
             "probe": ["(default: 1)", "(default: token-mean seq-mean-token-mean",
                       "(default: sgd adamw)"],
             "matrix": ["(default: .matrix)", "{run,table,history,releases,bisect,zoo}"]}[name]
    for part in shown:
        assert part in out, (part, out)
    assert "(default: 1) (default: 1)" not in out  # a default the help states is not repeated


def test_matrix_subcommand_help(capsys):
    code, out, _ = exits(["matrix", "run", "--help"], capsys)
    assert code == 0 and out.startswith("usage: ptbench matrix run ")


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: SUBCOMMAND"),
    (["bogus"], "argument SUBCOMMAND: invalid choice: 'bogus'"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    code, out, err = exits(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("usage: ptbench ") and f"ptbench: error: {message}" in err


def test_a_new_subcommand_is_one_table_entry(monkeypatch, capsys):
    module = types.ModuleType("ptbench_test_echo", "Echo the arguments back.\n\nMore text.")
    module.main = lambda argv: print("echo:", *argv) or 7
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(SUBCOMMANDS, "echo", Subcommand("echo", module.__name__))
    code, out, _ = exits(["echo", "a", "--b"], capsys)
    assert (code, out) == (7, "echo: a --b\n")
    code, out, _ = exits(["--help"], capsys)
    assert code == 0 and "echo" in out and "Echo the arguments back" in out


@pytest.mark.parametrize("override, message", [
    ("stages.9.steps=1", "--set stages.9.steps=1: index 9 out of range: stages has 2 item(s)"),
    ("stages.0.stepz=1", "--set stages.0.stepz=1: unknown key 'stepz' in stages[0]"),
    ("stages.1.steps", "--set stages.1.steps: expected key.path=value"),
    ("stages.1.steps=abc", "config.stages[1].steps: expected int, got 'abc'"),
])
def test_run_with_a_bad_set_exits_2_with_the_message(override, message, tmp_path, capsys):
    code, out, err = exits(["run", str(SFT_THEN_RL), "--out", str(tmp_path / "run"),
                            "--set", "stages.1.steps=20", "--set", override], capsys)
    assert code == 2 and out == ""
    assert err.startswith("ptbench run: error: ") and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_run_with_a_missing_config_exits_2(tmp_path, capsys):
    code, _, err = exits(["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and err == f"ptbench run: error: config: no such file {tmp_path / 'nope.yaml'}\n"


def test_run_without_out_is_a_usage_error(capsys):
    code, _, err = exits(["run", str(SFT)], capsys)
    assert code == 2 and "usage: ptbench run" in err and "--out" in err


def test_probe_list(capsys):
    from ptbench.fixtures.probes.adapters import registry

    code, out, _ = exits(["probe", "--list"], capsys)
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == [c.name for c in registry.CONFIGS] and names


def test_probe_and_matrix_usage_errors_name_their_prog(capsys):
    code, _, err = exits(["probe", "--seeds", "0"], capsys)
    assert code == 2 and "ptbench probe: error: --seeds" in err
    code, _, err = exits(["matrix", "run", "torch==2.0"], capsys)
    assert code == 2 and "ptbench matrix: error: release: expected PACKAGE==VERSION" in err


def test_probes_main_keeps_its_signature(capsys):
    from ptbench.fixtures.probes.cli import main as probe_main
    from ptbench.fixtures.probes.matrix import main as matrix_main

    with pytest.raises(SystemExit) as info:
        probe_main(["--help"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("usage: ptbench probe ")
    with pytest.raises(SystemExit) as info:
        matrix_main(["--help"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("usage: ptbench matrix ")


def test_pyproject_declares_one_console_script():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"ptbench": "ptbench.cli:main"}
    setuptools = project["tool"]["setuptools"]
    assert setuptools["package-dir"]["ptbench.cli"] == "cli" and "ptbench.cli" in setuptools["packages"]


def _python(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_installed_script_runs_help_without_importing_torch():
    script = Path(sys.executable).parent / "ptbench"
    assert script.exists(), "pip install -e . installs the ptbench console script"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ptbench ") and "probe" in done.stdout
    probe = _python("-c", "import sys; from ptbench.cli import main\n"
                          "try: main(['--help'])\nexcept SystemExit: pass\n"
                          "assert 'torch' not in sys.modules, 'ptbench --help imported torch'")
    assert probe.returncode == 0, probe.stderr


def test_python_m_ptbench_cli_is_the_command():
    done = _python("-m", "ptbench.cli", "run", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ptbench run ")


def test_old_probe_spelling_forwards(capsys):
    done = _python("-m", "ptbench.fixtures.probes", "--list")
    assert done.returncode == 0, done.stderr
    code, out, _ = exits(["probe", "--list"], capsys)
    assert code == 0 and done.stdout == out  # the same listing, nothing extra


def test_run_end_to_end_on_a_config_shrunk_with_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PTBENCH_CACHE", str(tmp_path / "cache"))
    out_dir = tmp_path / "run"
    store = tmp_path / "store.sqlite"
    code, out, err = exits(["run", str(SFT), "--out", str(out_dir), "--store", str(store), *SHRINK],
                           capsys)
    assert code == 0, err
    metrics = out_dir / "metrics.jsonl"
    assert f"metrics: {metrics}" in out.splitlines()
    assert f"stored: run 1 of {store}" in out.splitlines()
    from ptbench.reports.db import ResultsStore

    with ResultsStore.open(store) as s:
        (run,) = s.runs()
        assert run.info.kind == "pipeline" and "sft-arithmetic" in run.info.config_hashes
        stored = s.measurements(run.id)
    assert len(stored) == len(metrics.read_text().splitlines())
    assert {(m.pipeline, m.task, m.backend) for m in stored} == {("sft-arithmetic", "arithmetic", "native")}
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert {r["pipeline"] for r in rows} == {"sft-arithmetic"}
    assert [r["step"] for r in rows if r["metric"] == "train/loss"] == [1, 2]
    assert max(r["step"] for r in rows) == 2  # stages.0.steps=2 took effect
    assert (tmp_path / "cache").is_dir() and os.listdir(tmp_path / "cache")


def test_run_in_process_leaves_a_process_group_it_did_not_create(tmp_path, monkeypatch, capsys):
    """`ptbench run` called in a process that already holds a group (DeepSpeed's, a caller's)
    leaves it alone: ending it broke every later DeepSpeed engine in that process."""
    import torch.distributed as dist

    from ptbench.pipelines.backends.deepspeed import init_deepspeed

    init_deepspeed()
    monkeypatch.setenv("PTBENCH_CACHE", str(tmp_path / "cache"))
    code, _, err = exits(["run", str(SFT), "--out", str(tmp_path / "run"), "--store", "none",
                          *SHRINK], capsys)
    assert code == 0, err
    assert dist.is_initialized(), "ptbench run destroyed a process group it did not create"
