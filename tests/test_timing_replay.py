"""Timing verdicts on this machine's own nights (`tests/data/clean_timings.json`, recorded by
`benchmarks/record_timings.py` on the 2-core CI machine while other jobs shared it).

Each replay takes the recorded nights in a different order and judges every night after the
fifth against the nights before it, as `ptbench report` does night after night: no clean night
may be a regression. Then, in 10 replays, one night is slowed down by 30%: it must be flagged
in at least 9 of them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ptbench.reports import stats

DATA = Path(__file__).resolve().parent / "data" / "clean_timings.json"


@pytest.fixture(scope="module")
def nights() -> list[dict[str, float]]:
    recorded = json.loads(DATA.read_text())["nights"]
    assert len(recorded) >= 10, "at least 10 real nights are replayed"
    return recorded


def _judge(series: list[float], tonight: float) -> stats.Verdict:
    return stats.compare_timing(series, tonight).verdict


def test_clean_nights_raise_no_timing_regression(nights):
    for metric in nights[0]:
        values = [n[metric] for n in nights]
        for replay in range(10):
            order = random.Random(replay).sample(values, len(values))
            for i in range(5, len(order)):
                assert _judge(order[:i], order[i]) != stats.Verdict.REGRESSION, (metric, replay, i)


def test_a_30_percent_slowdown_is_flagged_in_9_of_10_replays(nights):
    for metric in nights[0]:
        values = [n[metric] for n in nights]
        flagged = 0
        for replay in range(10):
            order = random.Random(replay).sample(values, len(values))
            history, tonight = order[:-1], order[-1] * 1.3
            flagged += _judge(history, tonight) == stats.Verdict.REGRESSION
        assert flagged >= 9, (metric, flagged)
