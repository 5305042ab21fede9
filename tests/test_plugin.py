"""The pytest plugin, tested with pytester: markers, options, the probe fixture."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def probe_imports():
    """Run one probe before any `pytester` (which snapshots sys.modules when it is set up and
    restores them after the test): modules a probe imports lazily (torch._dynamo) would otherwise
    be dropped after the test, and importing them again (torch registers operator libraries once
    per process) breaks every later test in this process."""
    import ptbench.reports.build  # noqa: F401  (pandas, matplotlib, SQLAlchemy: the same reason)
    from ptbench.fixtures.probes import check_update_equivalence
    from ptbench.fixtures.probes.adapters.torch_plain import make_step

    assert check_update_equivalence(make_step, seed=0).passed

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


def test_plugin_markers_fixture_and_results(pytester, probe_imports):
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


def test_declared_probe_turns_unsupported_into_a_failure(pytester, probe_imports):
    pytester.makepyfile('''
from ptbench.fixtures.probes import Unsupported

def make(model, opt):
    raise Unsupported("no such mode here")

def test_declared(probe):
    probe(make, framework="none", declared=True, loss_agg="seq-mean-token-sum")
''')
    out = pytester.path / "out"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--ptbench-results={out}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*declared but unsupported: no such mode here*"])
    (record,) = json.loads((out / "probes.json").read_text())["records"]
    assert (record["status"], record["declared"]) == ("unsupported", True)


SUMMARY_SUITE = '''
import pytest

def combo(framework, objective, loss_agg, optimizer):
    return pytest.mark.ptbench_probe(framework=framework, objective=objective, loss_agg=loss_agg,
                                     optimizer=optimizer)

@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_good_ce(request, opt):
    request.applymarker(combo("good", "ce", "token-mean", opt))  # too late for the table

@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_good_pg(record_property, opt):
    for key, value in dict(framework="good", objective="pg", loss_agg="seq-mean-token-mean",
                           optimizer=opt).items():
        record_property(key, value)

@combo("bad", "ce", "token-mean", "sgd")
def test_bad_sgd():
    pass

@combo("bad", "ce", "token-mean", "adamw")
def test_bad_adamw():
    assert False, "the update is off"

@pytest.mark.skip(reason="absent: not installed: somepkg")
@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_absent(opt):
    pass

@combo("big", "pg", "token-mean", "sgd")
def test_big():
    pytest.skip("gpu: no CUDA device visible")

@combo("crash", "ce", "token-mean", "sgd")
def test_crash():
    raise RuntimeError("the framework blew up")

def test_unrelated():
    pass
'''

SUMMARY_CONFTEST = '''
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        if item.originalname == "test_absent":
            item.add_marker(pytest.mark.ptbench_probe(
                framework="absent", objective="ce", loss_agg="token-mean",
                optimizer=item.callspec.params["opt"]))
'''


def _row(lines: list[str], name: str) -> list[str]:
    (line,) = [ln for ln in lines if ln.split()[:1] == [name]]
    return line.split()


def test_terminal_summary_table(pytester):
    pytester.makepyfile(SUMMARY_SUITE)
    pytester.makeconftest(SUMMARY_CONFTEST)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, failed=2, skipped=3)
    lines = result.stdout.lines
    start = next(i for i, ln in enumerate(lines) if "ptbench probe summary" in ln)
    table = lines[start + 1:]
    # columns: (ce, tok-mean), (pg, tok-mean), (pg, seq-mean); test_good_ce never recorded
    assert table[0].split() == ["ce", "pg"]
    assert table[1].split() == ["framework", "tok-mean", "tok-mean", "seq-mean"]
    assert _row(table, "good") == ["good", "-", "-", "pass"]
    assert _row(table, "bad") == ["bad", "FAIL(adamw)", "-", "-"]
    assert _row(table, "absent") == ["absent", "missing", "-", "-"]
    assert _row(table, "big") == ["big", "-", "gpu(sgd)", "-"]
    assert _row(table, "crash") == ["crash", "error(sgd)", "-", "-"]
    assert not any(ln.startswith("test_unrelated") for ln in table)
    first = next(i for i, ln in enumerate(table) if ln.startswith("legend:"))
    legend = " ".join(" ".join(table[first:]).split())
    for text in ("FAIL: check failed", "missing: package not installed", "gpu: needs a GPU",
                 "-: not declared", "X(opt): X under that optimizer only",
                 "seq-mean = seq-mean-token-mean"):
        assert text in legend, legend
    result.stdout.fnmatch_lines(["8 probe tests over 5 frameworks: 1 error, 1 FAIL, 1 gpu, "
                                 "2 missing, 3 pass"])


def test_no_summary_without_probe_tests(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "ptbench probe summary" not in result.stdout.str()


def test_summary_table_fits_100_columns_and_splits_when_narrower():
    from ptbench.fixtures.probes import LOSS_AGGS, OBJECTIVES, OPTIMIZERS
    from ptbench.fixtures.probes.summary import probe_summary_lines

    entries = [{"properties": {"framework": name, "objective": o, "loss_agg": a, "optimizer": p},
                "outcomes": [outcome]}
               for name, outcome in (("deepspeed-z3-offload-ws2", "missing"), ("torch", "pass"))
               for o in OBJECTIVES for a in LOSS_AGGS for p in OPTIMIZERS]
    wide = probe_summary_lines(entries, width=100)
    assert max(map(len, wide)) <= 100
    assert sum(ln.startswith("framework") for ln in wide) == 1
    narrow = probe_summary_lines(entries, width=60)
    assert max(len(ln) for ln in narrow) <= 60
    assert sum(ln.startswith("framework") for ln in narrow) == 2
    assert probe_summary_lines([{"properties": {"framework": "x"}, "outcomes": ["pass"]}]) == []


STORE_SUITE = '''
import pytest
from ptbench.fixtures.probes.adapters.torch_plain import make_step

def test_probe_passes(probe):
    assert probe(make_step, framework="torch", seed=0).passed

def test_timing(ptbench_recorder):
    from ptbench.reports.records import Measurement
    ptbench_recorder.add([Measurement(metric="timing/x", value=0.1, kind="timing", direction="lower")])
'''


def test_a_session_records_into_the_store_and_builds_the_report(pytester, probe_imports):
    """The run goes into the store, the report is built at the end and its paths printed; a
    second session is judged against the first."""
    from ptbench.reports.db import ResultsStore

    pytester.makepyfile(STORE_SUITE)
    store, out = pytester.path / "store.sqlite", pytester.path / "report"
    args = ("-p", "no:cacheprovider", f"--ptbench-store={store}", f"--ptbench-report-dir={out}")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*ptbench results*", f"store: {store} (run 1)",
                                 "OK: run 1 *first run of its kind*", f"report: {out}/report.html",
                                 f"summary: {out}/report.md"])
    with ResultsStore.open(store) as s:
        (run,) = s.runs()
        assert run.status == "finished" and run.info.kind == "bench"
        probe = [m for m in s.measurements(run.id) if m.metric == "probe"]
        assert [(m.config, m.status, m.labels["loss_agg"]) for m in probe] == [
            ("torch", "pass", "token-mean")]
    assert "torch" in (out / "report.md").read_text()
    pytester.runpytest(*args, "--ptbench-verdict").assert_outcomes(passed=2)
    with ResultsStore.open(store) as s:
        assert len(s.runs()) == 2


def test_the_verdict_option_fails_a_session_on_a_new_failure(pytester, probe_imports):
    pytester.makepyfile(test_one=STORE_SUITE)
    store = pytester.path / "store.sqlite"
    args = ("-p", "no:cacheprovider", f"--ptbench-store={store}",
            f"--ptbench-report-dir={pytester.path / 'report'}")
    pytester.runpytest(*args).assert_outcomes(passed=2)
    pytester.makepyfile(test_one=STORE_SUITE.replace(
        'framework="torch", seed=0).passed', 'framework="torch", seed=0, tolerance=1e-12).passed'))
    result = pytester.runpytest(*args, "--ptbench-verdict")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["REGRESSION: run 2 *1 newly failing*"])
    assert result.ret == 1


def test_store_none_records_nothing(pytester, probe_imports):
    pytester.makepyfile(STORE_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--ptbench-store=none")
    result.assert_outcomes(passed=2)
    assert "ptbench results" not in result.stdout.str()
    assert not (pytester.path / "ptbench-results").exists()
