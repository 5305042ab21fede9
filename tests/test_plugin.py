"""The pytest plugin, tested with pytester: markers, options, the probe fixture."""

from __future__ import annotations

import json

pytest_plugins = ["pytester"]

SUITE = '''
import pytest
from ptbench.fixtures.probes import Unsupported
from ptbench.fixtures.probes.adapters.torch_plain import make_step

def test_probe_passes(probe):
    assert probe(make_step, framework="torch", seed=0).passed

def test_unsupported_is_a_skip(probe):
    def make(model, opt):
        raise Unsupported("no such mode here")
    probe(make, framework="none", loss_agg="seq-mean-token-sum")

@pytest.mark.gpu
def test_needs_gpu():
    raise AssertionError("must be skipped on a CPU machine")

@pytest.mark.slow
def test_slow():
    pass
'''


def test_plugin_markers_fixture_and_results(pytester):
    pytester.makepyfile(SUITE)
    out = pytester.path / "out"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--ptbench-results={out}", "-rs")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["*unsupported: no such mode here*", "*gpu: no CUDA device*",
                                 "*slow: pass --ptbench-slow*"])
    records = json.loads((out / "probes.json").read_text())["records"]
    assert [r["status"] for r in records] == ["pass", "unsupported"]


def test_slow_runs_with_flag_and_markers_take_no_arguments(pytester):
    pytester.makepyfile("import pytest\n@pytest.mark.slow\ndef test_s():\n    pass\n")
    pytester.runpytest("--ptbench-slow").assert_outcomes(passed=1)
    pytester.makepyfile(test_bad="import pytest\n@pytest.mark.gpu(2)\ndef test_b():\n    pass\n")
    result = pytester.runpytest("test_bad.py")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*marker 'gpu' takes no arguments*"])


def test_bad_seed_option_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--ptbench-seeds=0")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--ptbench-seeds: expected an integer >= 1*"])
