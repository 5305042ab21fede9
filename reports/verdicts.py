"""Regression verdicts: one run against a baseline run (values, statuses) and the recent
history (timings), series by series, with the words and maths of `ptbench.reports.stats`.

A series is what stays fixed from night to night: metric, test, configuration, pipeline, stage,
labels. Values measured along a run's steps are compared at their last step, one value per seed
(`stats.compare_seeds`: Welch over seeds, at least 3 a side; with fewer, the nightly value
against the earlier nights' values, `stats.compare_to_history`); a check's status by its worst
outcome over seeds (`stats.compare_status`); a timing by its median against each earlier night's
median (`stats.compare_timing`: median and MAD of the history).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ptbench.reports import stats
from ptbench.reports.db import ResultsStore, StoredRun
from ptbench.reports.records import Measurement

_WORST_FIRST = ("error", "fail", "pass")


@dataclass(frozen=True)
class SeriesVerdict:
    series: str
    """The series in words, e.g. 'sft_then_rl-arithmetic 1:rl eval/sampled_reward'."""
    comparison: stats.Comparison
    detail: str = ""
    """What the check said now (a failing probe's diagnosis)."""

    @property
    def severity(self) -> stats.Severity:
        return stats.severity(self.comparison.verdict, self.comparison.relative_change)

    def sort_key(self) -> tuple:
        return stats.sort_key(self.comparison.verdict, self.comparison.relative_change, self.series)


DESCRIPTIVE_LABELS = frozenset({"tolerance", "verdict", "expect"})
"""Labels that describe a measurement without making it another series (a probe's tolerance; a
claim's verdict and expected verdict: a claim whose verdict changed stays one series, so the
change is seen as newly failing)."""


def series_key(m: Measurement) -> tuple:
    """What makes measurements of two runs the same series: everything but value, seed, step
    and the descriptive labels."""
    return (m.kind, m.metric, m.test_id, m.config, m.pipeline, m.task, m.backend, m.stage,
            tuple(sorted((k, str(v)) for k, v in m.labels.items() if k not in DESCRIPTIVE_LABELS)))


LABEL_ORDER = ("objective", "loss_agg", "optimizer")


def series_name(m: Measurement) -> str:
    """The series in words: configuration or pipeline, stage, metric, then its labels."""
    labels = sorted(((k, v) for k, v in m.labels.items() if k not in DESCRIPTIVE_LABELS), key=lambda kv: (
        LABEL_ORDER.index(kv[0]) if kv[0] in LABEL_ORDER else len(LABEL_ORDER), kv[0]))
    parts = [m.config or m.pipeline, m.stage, m.metric, *(str(v) for _, v in labels)]
    return " ".join(p for p in parts if p not in ("", None)) or m.test_id


def _by_series(ms: list[Measurement]) -> dict[tuple, list[Measurement]]:
    grouped: dict[tuple, list[Measurement]] = defaultdict(list)
    for m in ms:
        grouped[series_key(m)].append(m)
    return grouped


def final_values(ms: list[Measurement]) -> list[float]:
    """One value per seed, at each seed's last step, in seed order."""
    last: dict[object, Measurement] = {}
    for m in ms:
        seed = -1 if m.seed is None else m.seed
        if seed not in last or (m.step or 0) >= (last[seed].step or 0):
            last[seed] = m
    return [last[s].value for s in sorted(last, key=lambda s: (s is None, s))]


def worst(statuses) -> str:
    """The worst of some check statuses: 'error' over 'fail' over 'pass'."""
    return min(statuses, key=_WORST_FIRST.index)


def worst_status(ms: list[Measurement]) -> str:
    return worst(m.status for m in ms)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def check_comparable(current: StoredRun, baseline: StoredRun) -> None:
    """A baseline must be of the same kind and run every shared pipeline config unchanged."""
    if current.info.kind != baseline.info.kind:
        raise ValueError(f"--baseline: run {baseline.id} is a {baseline.info.kind!r} run, run "
                         f"{current.id} a {current.info.kind!r} run; expected runs of one kind")
    a, b = current.info.config_hashes, baseline.info.config_hashes
    differ = sorted(name for name in set(a) & set(b) if a[name] != b[name])
    if differ:
        raise ValueError(f"--baseline: run {baseline.id} ran {', '.join(differ)} with another "
                         f"configuration than run {current.id} (config hashes differ); expected "
                         "a baseline of the same configuration")


def compare(current: list[Measurement], baseline: list[Measurement] | None,
            history: list[list[Measurement]], *, min_effect: float = 0.05, alpha: float = 0.05,
            min_history: int = 5, min_seeds: int = 3) -> list[SeriesVerdict]:
    """Every series of `current` and `baseline`, judged; sorted most urgent first.

    `history`: earlier runs' measurements, oldest first: timings are judged against them, and
    so are values measured on fewer than `min_seeds` seeds (a nightly single-seed pipeline).
    """
    now, before = _by_series(current), _by_series(baseline or [])
    nights = [_by_series(run) for run in history]
    verdicts = []
    for key in list(now) + [k for k in before if k not in now]:
        ms_now, ms_before = now.get(key, []), before.get(key, [])
        sample = (ms_now or ms_before)[0]
        name = series_name(sample)
        kind = sample.kind
        detail = ""
        if kind == "status":
            current_status = worst_status(ms_now) if ms_now else None
            baseline_status = worst_status(ms_before) if ms_before else None
            comparison = stats.compare_status(baseline_status, current_status, name=name)
            detail = next((m.detail for m in ms_now if m.status != "pass" and m.detail), "")
        elif not ms_now:
            comparison = stats.compare_status("pass", None, name=name)  # 'missing'
        elif kind == "timing":
            past = [_median([m.value for m in night[key]]) for night in nights if key in night]
            comparison = stats.compare_timing(past, _median([m.value for m in ms_now]),
                                              min_history=min_history, name=name)
        elif not ms_before:
            comparison = stats.Comparison(verdict=stats.Verdict.NEW, kind=kind, name=name,
                                          direction=sample.direction, n_current=len(ms_now))
        else:
            before_values, now_values = final_values(ms_before), final_values(ms_now)
            few = min(len(before_values), len(now_values)) < min_seeds
            if few and before_values != now_values:
                # one seed a night: judged against the nights' own spread
                past = [_mean(final_values(night[key])) for night in nights if key in night]
                comparison = stats.compare_to_history(past, _mean(now_values), sample.direction,
                                                      min_history=min_history,
                                                      threshold=min_effect, name=name)
            else:
                comparison = stats.compare_seeds(before_values, now_values, sample.direction,
                                                 min_effect=min_effect, alpha=alpha,
                                                 min_seeds=min_seeds, name=name)
        verdicts.append(SeriesVerdict(name, comparison, detail))
    return sorted(verdicts, key=SeriesVerdict.sort_key)


@dataclass
class RunComparison:
    """One run judged against its baseline and history."""

    current: StoredRun
    baseline: StoredRun | None
    history: list[StoredRun]
    verdicts: list[SeriesVerdict]

    @property
    def failed(self) -> bool:
        """A regression or a new failure: what makes `ptbench report` exit non-zero."""
        return any(v.comparison.verdict in (stats.Verdict.REGRESSION, stats.Verdict.NEWLY_FAILING)
                   for v in self.verdicts)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = defaultdict(int)
        for v in self.verdicts:
            found[str(v.comparison.verdict)] += 1
        return dict(found)

    def headline(self) -> str:
        counts = self.counts()
        head = "REGRESSION" if self.failed else "OK"
        against = (f"against run {self.baseline.id} ({self.baseline.info.started})"
                   if self.baseline else "first run of its kind: nothing to compare with yet")
        said = ", ".join(f"{n} {word}" for word, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        return f"{head}: run {self.current.id} ({self.current.info.started}) {against}; {said}"

    def differences(self) -> list[str]:
        """Package versions and the git commit that differ between the baseline and this run."""
        if self.baseline is None:
            return []
        a, b = self.baseline.info, self.current.info
        lines = [f"{name}: {a.versions.get(name)} -> {b.versions.get(name)}"
                 for name in sorted(set(a.versions) | set(b.versions))
                 if a.versions.get(name) != b.versions.get(name)]
        if (a.git_revision, a.git_dirty) != (b.git_revision, b.git_dirty):
            lines.append(f"git: {a.git_revision[:12] or '?'}{' (dirty)' if a.git_dirty else ''} -> "
                         f"{b.git_revision[:12] or '?'}{' (dirty)' if b.git_dirty else ''}")
        return lines


def compare_runs(store: ResultsStore, run_id: int | None = None, *, baseline: int | None = None,
                 history: int = 14, **thresholds) -> RunComparison:
    """Judge run `run_id` (default: the newest run) against `baseline` (default: the newest
    finished run of the same kind before it) and the `history` finished runs of that kind before
    it (timings)."""
    runs = store.runs()
    if not runs:
        raise ValueError(f"{store.where}: the store holds no run yet; run `pytest bench/` first")
    current = store.run(run_id) if run_id is not None else runs[0]
    earlier = [r for r in store.runs(kind=current.info.kind)
               if r.status == "finished" and r.id != current.id
               and (r.info.started, r.id) < (current.info.started, current.id)]
    base = store.run(baseline) if baseline is not None else (earlier[0] if earlier else None)
    if base is not None:
        check_comparable(current, base)
    past = list(reversed(earlier[:history]))
    verdicts = compare(store.measurements(current.id),
                       store.measurements(base.id) if base else None,
                       [store.measurements(r.id) for r in past], **thresholds)
    return RunComparison(current, base, past, verdicts)
