"""Release environments, offline: what is asked of pip, in what order, and what is reused."""

from __future__ import annotations

import pytest

from ptbench.fixtures.probes import environments as envs

DEEPSPEED_SDIST_FAILURE = """\
  error: subprocess-exited-with-error
  x Getting requirements to build wheel did not run successfully.
      File "<string>", line 24, in <module>
  ModuleNotFoundError: No module named 'torch'
  note: This error originates from a subprocess, and is likely not a problem with pip.
"""
CONFLICT = """\
ERROR: Cannot install datasets==5.2.0 and transformers==4.45.2 because these package versions have conflicting dependencies.
The conflict is caused by:
    transformers 4.45.2 depends on huggingface-hub<1.0 and >=0.23.2
    datasets 5.2.0 depends on huggingface-hub>=1.0
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
"""


def test_the_release_is_pinned_and_the_rest_of_the_stack_is_not():
    reqs = envs.stack_requirements("transformers", "4.45.2")
    assert "transformers==4.45.2" in reqs and envs.pinned_torch() in reqs
    for name in ("trl", "datasets", "accelerate", "deepspeed", "tokenizers"):
        assert name in reqs  # by name only: pip picks the newest that accepts the release
    assert not [r for r in reqs if r.startswith("transformers>=")]  # ptbench's own pin dropped
    assert "openrlhf==0.10.3" not in envs.stack_requirements("openrlhf", "0.10.3")  # --no-deps


def test_pip_failures_in_one_line():
    assert envs.explain_pip_failure(DEEPSPEED_SDIST_FAILURE) == (
        "building the source distribution failed (ModuleNotFoundError: No module named 'torch')")
    reason = envs.explain_pip_failure(CONFLICT)
    assert reason.startswith("no mutually compatible environment")
    assert "datasets 5.2.0 depends on huggingface-hub>=1.0" in reason
    assert envs.explain_pip_failure("ERROR: No matching distribution found for deepspeed==9.9") == (
        "no distribution of deepspeed==9.9 for this Python/platform")


@pytest.fixture()
def fake_pip(monkeypatch, tmp_path):
    """Record every command instead of running it; `venv` creates the folder layout."""
    calls: list[list[str]] = []

    def run(cmd, env, what):
        calls.append(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            (tmp_path / "root" / "venvs" / cmd[-1].split("/")[-1] / "lib" / "python3.11"
             / "site-packages").mkdir(parents=True)
        if "wheel" in cmd and "-w" in cmd:
            wheels = cmd[cmd.index("-w") + 1]
            (tmp_path / wheels).mkdir(parents=True, exist_ok=True)
            (tmp_path / wheels / "deepspeed-0.16.0-py3-none-any.whl").write_text("")
        if "--target" in cmd:
            (tmp_path / cmd[cmd.index("--target") + 1]).mkdir(parents=True)
        if "freeze" in cmd:
            return "deepspeed==0.16.0\ntransformers==5.24.0\n"
        return ""

    monkeypatch.setattr(envs, "_run", run)
    return calls


def test_deepspeed_is_built_without_isolation_once_and_the_environment_reused(fake_pip, tmp_path,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "root"
    env = envs.ensure_environment("deepspeed", "0.16.0", root)
    flat = [" ".join(c) for c in fake_pip]
    build = [c for c in flat if " -m pip wheel " in c]
    assert len(build) == 1 and "--no-build-isolation" in build[0] and "deepspeed==0.16.0" in build[0]
    resolve = flat[-2]
    assert "deepspeed==0.16.0" in resolve and "--find-links" in resolve and envs.pinned_torch() in resolve
    assert flat.index(build[0]) < flat.index(resolve)
    assert (env.venv / "lib" / "python3.11" / "site-packages" / "ptbench-torch.pth").read_text().strip() \
        .endswith("layers/torch-" + envs.pinned_torch().split("==")[1])
    assert env.freeze == ["deepspeed==0.16.0", "transformers==5.24.0"]
    assert env.extensions == root / "torch_extensions" / "deepspeed-0.16.0"  # ops per release
    n = len(fake_pip)
    assert envs.ensure_environment("deepspeed", "0.16.0", root) == env and len(fake_pip) == n


def test_a_half_built_environment_is_rebuilt_and_a_failure_keeps_pips_reason(fake_pip, tmp_path,
                                                                             monkeypatch):
    root = tmp_path / "root"
    half = root / "venvs" / "transformers-4.45.2"
    (half / "junk").mkdir(parents=True)  # an install killed half-way: no marker
    envs.ensure_environment("transformers", "4.45.2", root)
    assert not (half / "junk").exists() and (half / envs.READY).exists()

    def failing(cmd, env, what):
        if "resolving" in what:
            raise envs.InstallError(f"{what}: {envs.explain_pip_failure(CONFLICT)}", CONFLICT)
        return fake_pip_run(cmd, env, what)

    fake_pip_run = envs._run
    monkeypatch.setattr(envs, "_run", failing)
    with pytest.raises(envs.InstallError, match="resolving transformers==4.46.3 with the rest of "
                                                "the stack: no mutually compatible environment"):
        envs.ensure_environment("transformers", "4.46.3", root)
    assert not (root / "venvs" / "transformers-4.46.3" / envs.READY).exists()


def test_files_environments_share_are_stored_once(tmp_path):
    a, b, store = tmp_path / "a", tmp_path / "b", tmp_path / "store"
    for venv, own in ((a, b"A" * 20000), (b, b"B" * 20000)):
        (venv / "pkg").mkdir(parents=True)
        (venv / "pkg" / "common.so").write_bytes(b"x" * 50000)
        (venv / "pkg" / "own.so").write_bytes(own)
        (venv / "pkg" / "small.py").write_text("tiny")  # below the threshold: left alone
    assert envs.deduplicate(a, store) == 0
    assert envs.deduplicate(b, store) == 50000
    assert (a / "pkg" / "common.so").stat().st_ino == (b / "pkg" / "common.so").stat().st_ino
    assert (b / "pkg" / "own.so").read_bytes() == b"B" * 20000
    assert (b / "pkg" / "common.so").read_bytes() == b"x" * 50000
    assert envs.folder_size(tmp_path) < 2 * (50000 + 20000 + 4) + 50000 - 1
