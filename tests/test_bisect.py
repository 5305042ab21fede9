"""Release lists and bisection, offline: a recorded PyPI release list and a fake prober."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ptbench.fixtures.probes.bisect import BisectError, ProbeOutcome, bisect, verdict
from ptbench.fixtures.probes.releases import RecordedIndex, published, releases_between

RECORDED = Path(__file__).parent / "data" / "pypi-releases.json"
DROPPED = ("deepspeed-z2-offload-ws1 [pg, ...]: FAIL\n  step 1: relative error 8.4e-01\n"
           "    -> micro-batches 2-5 of 6 look dropped (fitted weights 1.00, 0.00, 0.00, 0.00, 0.00, 1.00)")
OTHER_BUG = ("deepspeed-z2-offload-ws1 [pg, ...]: FAIL\n"
             "    -> the update matches the declared loss divided by grad_accum twice")
PATTERN = r"micro-batches [0-9-]+ of \d+ look dropped"


class FakeProber:
    """The bug is present from release `first_bad` up to (not including) `fixed`; releases in
    `skip` cannot be probed; those in `other` fail with a different bug."""

    def __init__(self, releases, first_bad, fixed=None, skip=(), other=()):
        self.releases, self.skip, self.other = releases, set(skip), set(other)
        self.lo = releases.index(first_bad)
        self.hi = releases.index(fixed) if fixed else len(releases)
        self.calls: list[str] = []

    def __call__(self, version: str) -> ProbeOutcome:
        self.calls.append(version)
        if version in self.skip:
            return ProbeOutcome("not installable", "no mutually compatible environment")
        if self.lo <= self.releases.index(version) < self.hi:
            return ProbeOutcome("fail", DROPPED)
        if version in self.other:
            return ProbeOutcome("fail", OTHER_BUG)
        return ProbeOutcome("pass")


@pytest.fixture()
def deepspeed():
    return releases_between(RecordedIndex(RECORDED), "deepspeed", "0.14.0", "0.18.9")


def test_release_list_is_the_registrys_in_version_order():
    index = RecordedIndex(RECORDED)
    versions = [r.version for r in published(index, "deepspeed")]
    assert versions.index("0.3.10") > versions.index("0.3.9")  # PEP 440 order, not text
    assert not any("dev" in v for v in versions)  # pre-releases only when asked
    assert "0.3.1.dev1" in [r.version for r in published(index, "deepspeed", prereleases=True)]
    assert "5.0.0rc0" not in [r.version for r in published(index, "transformers")]
    between = releases_between(index, "deepspeed", "0.14.0", "0.18.9")
    assert between[0] == "0.14.0" and between[-1] == "0.18.9" and len(between) == 38
    assert releases_between(index, "deepspeed", "0.18.9", "0.14.0") == between


def test_bad_release_inputs_name_the_field():
    index = RecordedIndex(RECORDED)
    with pytest.raises(ValueError, match=r"--good: deepspeed has no published release '0.14.99' "
                                         r"\(nearest published: 0.14.5, 0.15.0\)"):
        releases_between(index, "deepspeed", "0.14.99", "0.18.9", fields=("--good", "--bad"))
    with pytest.raises(ValueError, match="--bad: expected a version such as"):
        releases_between(index, "deepspeed", "0.14.0", "latest", fields=("--good", "--bad"))
    with pytest.raises(ValueError, match="both are 0.14.0"):
        releases_between(index, "deepspeed", "0.14.0", "0.14.0")
    with pytest.raises(LookupError, match="no recorded releases of 'torchtune'"):
        published(index, "torchtune")


def test_verdict_is_the_pattern_not_mere_failure():
    assert verdict(ProbeOutcome("fail", DROPPED), PATTERN) == "bad"
    assert verdict(ProbeOutcome("fail", OTHER_BUG), PATTERN) == "skip"  # may mask this one
    assert verdict(ProbeOutcome("pass"), PATTERN) == "good"
    for status in ("error", "n/a", "not installable"):
        assert verdict(ProbeOutcome(status, "look dropped"), PATTERN) == "skip"
    with pytest.raises(ValueError, match="status: expected one of"):
        ProbeOutcome("FAIL")


def test_finds_the_first_bad_release_in_log_probes(deepspeed):
    prober = FakeProber(deepspeed, first_bad="0.15.2")
    result = bisect(deepspeed, prober, PATTERN, good="0.14.0", bad="0.18.9")
    assert result.direction == "broke"
    assert (result.last_old, result.first_new, result.unnarrowed) == ("0.15.1", "0.15.2", [])
    assert result.probes == len(prober.calls) == len(set(prober.calls))
    assert result.probes <= 2 + math.ceil(math.log2(len(deepspeed) - 1))
    assert "first bad release (broke it): 0.15.2" in result.summary()
    assert "look dropped" in result.summary() and "0.15.1 (good, pass)" in result.summary()


@pytest.mark.parametrize("n", [2, 3, 5, 17, 38, 100])
def test_every_position_is_found_within_the_bound(n):
    releases = [f"1.{i}.0" for i in range(n)]
    for first in range(1, n):
        prober = FakeProber(releases, first_bad=releases[first])
        result = bisect(releases, prober, PATTERN, good=releases[0], bad=releases[-1])
        assert result.first_new == releases[first]
        assert result.probes <= 2 + math.ceil(math.log2(max(n - 1, 1)))


def test_which_release_fixed_it(deepspeed):
    """bad older than good: the first good release, the other direction."""
    prober = FakeProber(deepspeed, first_bad="0.14.0", fixed="0.17.3")
    result = bisect(deepspeed, prober, PATTERN, good="0.18.9", bad="0.14.0")
    assert result.direction == "fixed"
    assert (result.last_old, result.first_new) == ("0.17.2", "0.17.3")
    assert "first good release (fixed it): 0.17.3" in result.summary()


def test_another_bug_in_a_release_does_not_mislead(deepspeed):
    """Releases failing with another diagnosis (which may mask this bug) are skipped, in both
    directions: the answer stays right, only the probe count grows."""
    others = {"0.14.5", "0.15.0", "0.15.4", "0.16.0", "0.16.2", "0.17.1"}  # a different FAIL
    prober = FakeProber(deepspeed, first_bad="0.16.4", other=others)
    result = bisect(deepspeed, prober, PATTERN, good="0.14.0", bad="0.18.9")
    assert (result.first_new, result.unnarrowed) == ("0.16.4", [])
    assert "fail: the update matches the declared loss divided by grad_accum twice" in result.summary()
    assert any(p.verdict == "skip" for p in result.probed)
    prober = FakeProber(deepspeed, first_bad="0.14.0", fixed="0.16.4", other=others)
    result = bisect(deepspeed, prober, PATTERN, good="0.18.9", bad="0.14.0")
    assert result.first_new == "0.16.4" and result.last_old == "0.16.3"


def test_unprobeable_releases_are_skipped_like_git_bisect_skip(deepspeed):
    prober = FakeProber(deepspeed, first_bad="0.15.2", skip={"0.16.3"})
    assert bisect(deepspeed, prober, PATTERN, "0.14.0", "0.18.9").first_new == "0.15.2"
    # skipped releases next to the change: the answer is the range it could not narrow
    prober = FakeProber(deepspeed, first_bad="0.15.2", skip={"0.15.0", "0.15.1", "0.15.2"})
    result = bisect(deepspeed, prober, PATTERN, "0.14.0", "0.18.9")
    assert result.last_old == "0.14.5" and result.unnarrowed == ["0.15.0", "0.15.1", "0.15.2", "0.15.3"]
    text = result.summary()
    assert "could not narrow" in text and "0.15.0, 0.15.1, 0.15.2, 0.15.3" in text
    assert "skipped 0.15.1: not installable" in text
    # a bound that cannot be probed is taken as given, as git bisect takes its bounds
    prober = FakeProber(deepspeed, first_bad="0.14.1", skip={"0.14.0"})
    result = bisect(deepspeed, prober, PATTERN, "0.14.0", "0.18.9")
    assert result.first_new == "0.14.1" and result.assumed == ["0.14.0"]
    assert "0.14.0 (good as given; cannot be probed: not installable" in result.summary()


def test_bounds_the_wrong_way_round_or_a_pattern_that_never_matches(deepspeed):
    prober = FakeProber(deepspeed, first_bad="0.15.2")
    with pytest.raises(BisectError, match="--bad 0.14.0: the probe does not show the bug there.*"
                                          "other way round"):
        bisect(deepspeed, prober, PATTERN, good="0.18.9", bad="0.14.0")
    with pytest.raises(BisectError, match="--good 0.14.0: the probe shows the bug there.*other way round"):
        bisect(deepspeed, FakeProber(deepspeed, first_bad="0.14.0"), PATTERN, "0.14.0", "0.18.9")
    with pytest.raises(BisectError, match="--bad 0.18.9: the probe does not show the bug there.*"
                                          "does not match the pattern 'never said'"):
        bisect(deepspeed, FakeProber(deepspeed, first_bad="0.15.2"), "never said", "0.14.0", "0.18.9")
    with pytest.raises(BisectError, match="--good 0.14.0: the probe fails there with another diagnosis"):
        bisect(deepspeed, FakeProber(deepspeed, "0.15.2", other={"0.14.0"}), PATTERN, "0.14.0", "0.18.9")
    with pytest.raises(ValueError, match="pattern: not a regular expression"):
        bisect(deepspeed, prober, "(", "0.14.0", "0.18.9")
    with pytest.raises(ValueError, match="good: '0.1.0' is not in the release list"):
        bisect(deepspeed, prober, PATTERN, "0.1.0", "0.18.9")
