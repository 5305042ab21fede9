"""The one statistics module of ptbench: every verdict in the project comes from here.

A nightly report, the pipeline comparison and the diagnostics all say their verdicts in the same
words (`Verdict`, `ClaimVerdict`), computed by the same maths:

* `compare_seeds` (measurements of kind 'value', one number per seed): Welch's t-test on the
  means, the difference, its confidence interval and Hedges' g;
* `compare_timing` (kind 'timing', one number per night): tonight against the median and the
  MAD of the recent nights;
* `compare_status` (kind 'status'): pass/fail/error transitions;
* `paired_claim` and `premise_not_met` (claims of the comparison and of the diagnostics).

Each returns a frozen `Comparison` or `ClaimResult` holding the verdict, the numbers it rests on
and `explain()`, the one line a person reads in the morning. `severity` and `sort_key` order a
report: new failures first, then regressions by size, improvements, fixed, the rest.

Conventions: "baseline" is the earlier run (or the history), "current" is tonight; a difference
is always current - baseline, and a relative change is that difference over |baseline|.
Pure functions: no I/O, no state. `scipy.stats.t` gives the t distribution's tail and quantiles;
every statistic fed to it (means, variances, t, Welch's degrees of freedom) is computed here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

from scipy import stats as _scipy_stats

from ptbench.reports.records import DIRECTIONS

__all__ = [
    "CLAIM_VERDICTS",
    "ClaimResult",
    "ClaimVerdict",
    "Comparison",
    "MAD_SCALE",
    "SEVERE_CHANGE",
    "STATUSES",
    "Severity",
    "MODERATE_CHANGE",
    "VERDICTS",
    "Verdict",
    "compare_seeds",
    "compare_status",
    "compare_timing",
    "hedges_g",
    "mean_and_variance",
    "mean_interval",
    "median_and_mad",
    "paired_claim",
    "premise_not_met",
    "severity",
    "sort_key",
    "welch_t",
]


# --------------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------------


class _Word(str, Enum):
    """A verdict word: equal to its string, printed as it, with a one-line `meaning`."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def meaning(self) -> str:
        """One line saying what the verdict means."""
        return _MEANINGS[self]


class Verdict(_Word):
    """The verdict on one series: a run (or tonight) against a baseline run (or the history).

    A `str` subclass: ``Verdict.REGRESSION == "regression"``, and it prints as its word.
    `Verdict.X.meaning` is its one-line meaning.
    """

    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    CHANGED = "changed"
    NOISE = "noise"
    UNCHANGED = "unchanged"
    NEW = "new"
    MISSING = "missing"
    FIXED = "fixed"
    NEWLY_FAILING = "newly failing"
    STILL_FAILING = "still failing"
    INSUFFICIENT_DATA = "insufficient data"


_VERDICT_MEANINGS: dict[Verdict, str] = {
    Verdict.REGRESSION: "worse, by more than the noise allows and by more than the minimum effect",
    Verdict.IMPROVEMENT: "better, by more than the noise allows and by more than the minimum "
                         "effect",
    Verdict.CHANGED: "moved by more than the noise and the minimum effect, in a quantity with no "
                     "better direction (direction 'none')",
    Verdict.NOISE: "a difference within the noise, or smaller than the minimum effect",
    Verdict.UNCHANGED: "bit-identical: exactly the same values (same seeds, same versions, CPU)",
    Verdict.NEW: "no baseline to compare with: measured now only",
    Verdict.MISSING: "in the baseline, absent now",
    Verdict.FIXED: "a check that failed (fail or error) passes now",
    Verdict.NEWLY_FAILING: "a check that passed fails (fail or error) now",
    Verdict.STILL_FAILING: "a check that failed fails again",
    Verdict.INSUFFICIENT_DATA: "too few seeds or nights to judge; the verdict says what it had",
}

VERDICTS: tuple[str, ...] = tuple(v.value for v in Verdict)
"""Every regression verdict word."""


class ClaimVerdict(_Word):
    """The verdict on a claim (pipeline comparison, diagnostics); prints as its word."""

    HELD = "held"
    NOT_HELD = "not held"
    INCONCLUSIVE = "inconclusive"
    PREMISE_NOT_MET = "premise not met"


_CLAIM_MEANINGS: dict[ClaimVerdict, str] = {
    ClaimVerdict.HELD: "the whole confidence interval lies on the claimed side of the margin",
    ClaimVerdict.NOT_HELD: "the whole confidence interval lies on the wrong side of the margin",
    ClaimVerdict.INCONCLUSIVE: "the confidence interval straddles the margin, or too few seeds",
    ClaimVerdict.PREMISE_NOT_MET: "the claim's precondition failed, so the claim was not judged",
}
_MEANINGS: dict[_Word, str] = {**_VERDICT_MEANINGS, **_CLAIM_MEANINGS}

CLAIM_VERDICTS: tuple[str, ...] = tuple(v.value for v in ClaimVerdict)
"""Every claim verdict word."""

STATUSES: tuple[str, ...] = ("pass", "fail", "error")
"""The statuses of a check (Measurement.status of kind 'status')."""
_FAILING = ("fail", "error")


# --------------------------------------------------------------------------------------------
# Severity: the order of a report
# --------------------------------------------------------------------------------------------

SEVERE_CHANGE = 0.10
"""A regression whose |relative change| exceeds this (10%) is in the first regression group."""
MODERATE_CHANGE = 0.05
"""A regression with MODERATE_CHANGE <= |relative change| <= SEVERE_CHANGE is in the second."""


class Severity(IntEnum):
    """The groups of a report, most urgent first (lower value = higher in the report)."""

    NEW_FAILURE = 0
    """'newly failing'."""
    REGRESSION_OVER_10 = 1
    """'regression' with |relative change| > 10%."""
    REGRESSION_5_TO_10 = 2
    """'regression' with 5% <= |relative change| <= 10%."""
    OTHER_REGRESSION = 3
    """Any other 'regression': under 5%, or no relative change (zero baseline, a status)."""
    IMPROVEMENT = 4
    FIXED = 5
    REST = 6
    """Everything else (see `_REST_ORDER`)."""

    @property
    def title(self) -> str:
        """The section heading of the group in a report."""
        return _SEVERITY_TITLES[self]


_SEVERITY_TITLES: dict[Severity, str] = {
    Severity.NEW_FAILURE: "new failures",
    Severity.REGRESSION_OVER_10: "regressions > 10%",
    Severity.REGRESSION_5_TO_10: "regressions 5-10%",
    Severity.OTHER_REGRESSION: "other regressions",
    Severity.IMPROVEMENT: "improvements",
    Severity.FIXED: "fixed",
    Severity.REST: "the rest",
}

# Inside "the rest": what may still need a look first, what is plainly fine last.
_REST_ORDER: tuple[Verdict, ...] = (
    Verdict.STILL_FAILING, Verdict.CHANGED, Verdict.MISSING, Verdict.INSUFFICIENT_DATA,
    Verdict.NEW, Verdict.NOISE, Verdict.UNCHANGED,
)


def _as_verdict(verdict: Verdict | str) -> Verdict:
    try:
        return Verdict(verdict)
    except ValueError:
        raise ValueError(f"verdict: expected one of {VERDICTS}, got {verdict!r}") from None


def severity(verdict: Verdict | str, relative_change: float | None = None) -> Severity:
    """The report group of a verdict.

        newly failing                                   -> NEW_FAILURE
        regression, |relative_change| >  0.10           -> REGRESSION_OVER_10
        regression, 0.05 <= |relative_change| <= 0.10   -> REGRESSION_5_TO_10
        regression, |relative_change| < 0.05 or None    -> OTHER_REGRESSION
        improvement -> IMPROVEMENT;  fixed -> FIXED;  anything else -> REST
    """
    verdict = _as_verdict(verdict)
    if verdict is Verdict.NEWLY_FAILING:
        return Severity.NEW_FAILURE
    if verdict is Verdict.REGRESSION:
        if relative_change is None or math.isnan(relative_change):
            return Severity.OTHER_REGRESSION
        size = abs(relative_change)
        if size > SEVERE_CHANGE:
            return Severity.REGRESSION_OVER_10
        if size >= MODERATE_CHANGE:
            return Severity.REGRESSION_5_TO_10
        return Severity.OTHER_REGRESSION
    if verdict is Verdict.IMPROVEMENT:
        return Severity.IMPROVEMENT
    if verdict is Verdict.FIXED:
        return Severity.FIXED
    return Severity.REST


def sort_key(verdict: Verdict | str, relative_change: float | None = None,
             name: str = "") -> tuple[int, int, float, str]:
    """Sort key of a report line: (group, rank inside the rest, -|relative change|, name).

    Groups in `Severity` order; inside a group the largest |relative change| first (None last);
    inside the rest: still failing, changed, missing, insufficient data, new, noise, unchanged;
    ties by name.
    """
    verdict = _as_verdict(verdict)
    group = severity(verdict, relative_change)
    rank = _REST_ORDER.index(verdict) if group is Severity.REST else 0
    unknown = relative_change is None or math.isnan(relative_change)
    size = 0.0 if unknown else -abs(relative_change)
    return (int(group), rank, size, name)


# --------------------------------------------------------------------------------------------
# Argument checks and formatting
# --------------------------------------------------------------------------------------------


def _values(name: str, values: Sequence[float]) -> list[float]:
    """A list of finite floats, or a ValueError naming the argument and the bad item."""
    unordered = isinstance(values, (str, bytes, Mapping, set, frozenset))
    if unordered or not isinstance(values, Iterable):
        raise ValueError(f"{name}: expected a sequence of numbers, got {type(values).__name__}")
    fast = list(values)
    if set(map(type, fast)) <= {float} and all(map(math.isfinite, fast)):
        return fast  # the common case, checked without a call per item
    return [_number(f"{name}[{i}]", value) for i, value in enumerate(fast)]


def _number(name: str, value: float) -> float:
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a finite number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return number


def _probability(name: str, value: float) -> float:
    number = _number(name, value)
    if not 0.0 < number < 1.0:
        raise ValueError(f"{name}: expected a number strictly between 0 and 1, got {value!r}")
    return number


def _count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


def _fmt(x: float | None) -> str:
    """At least 3 significant digits, fixed-point for everyday magnitudes: 0.810, 12.3, 1234."""
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude < -4 or magnitude >= 7:
        return f"{x:.3g}"
    return f"{x:.{max(0, 2 - magnitude)}f}"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _pct(fraction: float) -> str:
    return f"{100 * abs(fraction):.1f}%"


# --------------------------------------------------------------------------------------------
# Building blocks (each checked against hand-computed values in tests/test_stats.py)
# --------------------------------------------------------------------------------------------


def mean_and_variance(values: Sequence[float]) -> tuple[float, float]:
    """Sample mean and unbiased sample variance (ddof=1) of at least 2 values.

        mean = sum(x) / n,   var = sum((x - mean)^2) / (n - 1)

    Sums with `math.fsum`, so identical values give a variance of exactly 0.
    """
    xs = _values("values", values)
    if len(xs) < 2:
        raise ValueError(f"values: expected at least 2 values for a variance, got {len(xs)}")
    mean = _mean(xs)
    if all(x == xs[0] for x in xs):
        return mean, 0.0
    return mean, math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)


def _mean(xs: list[float]) -> float:
    """fsum(x) / n; exactly x[0] when all values are equal (no rounding residue)."""
    return xs[0] if all(x == xs[0] for x in xs) else math.fsum(xs) / len(xs)


def welch_t(mean_b: float, var_b: float, n_b: int,
            mean_c: float, var_c: float, n_c: int) -> tuple[float, float, float]:
    """Welch's t statistic, its Welch-Satterthwaite degrees of freedom and the standard error.

        v_b = var_b / n_b,  v_c = var_c / n_c          (squared standard errors of each mean)
        se  = sqrt(v_b + v_c)
        t   = (mean_c - mean_b) / se
        df  = (v_b + v_c)^2 / (v_b^2 / (n_b - 1) + v_c^2 / (n_c - 1))

    Returns (t, df, se). Welch (B. L. Welch 1947, Biometrika 34) does not assume equal variances:
    two pipelines (or two framework versions) may differ in their seed-to-seed spread as well as
    in their mean, and the seed counts may differ; Student's pooled t would then give the wrong
    false-alarm rate. Both variances 0 is a ValueError: the difference is then certain, with no
    t distribution (`compare_seeds` handles that case itself).
    """
    n_b = _count("n_b", n_b, 2)
    n_c = _count("n_c", n_c, 2)
    if var_b < 0 or var_c < 0:
        raise ValueError(f"var_b, var_c: expected variances >= 0, got {var_b!r}, {var_c!r}")
    v_b, v_c = var_b / n_b, var_c / n_c
    if v_b + v_c == 0:
        raise ValueError("var_b, var_c: both 0; the difference of the means is exact, no t-test")
    se = math.sqrt(v_b + v_c)
    t = (mean_c - mean_b) / se
    df = (v_b + v_c) ** 2 / (v_b**2 / (n_b - 1) + v_c**2 / (n_c - 1))
    return t, df, se


def hedges_g(mean_b: float, var_b: float, n_b: int,
             mean_c: float, var_c: float, n_c: int) -> float:
    """Hedges' g: the difference of the means in pooled standard deviations, bias-corrected.

        s_p = sqrt(((n_b - 1) var_b + (n_c - 1) var_c) / (n_b + n_c - 2))
        d   = (mean_c - mean_b) / s_p
        g   = J * d,   J = 1 - 3 / (4 (n_b + n_c) - 9)    (Hedges & Olkin 1985, eq. 5.10)

    An effect size to read, not a test (the test is Welch's): the pooled s_p is its definition.
    s_p = 0 gives +-inf for a nonzero difference and 0 for none.
    """
    n_b = _count("n_b", n_b, 2)
    n_c = _count("n_c", n_c, 2)
    diff = mean_c - mean_b
    pooled = ((n_b - 1) * var_b + (n_c - 1) * var_c) / (n_b + n_c - 2)
    if pooled == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return (1 - 3 / (4 * (n_b + n_c) - 9)) * diff / math.sqrt(pooled)


def median_and_mad(values: Sequence[float]) -> tuple[float, float]:
    """Median and scaled median absolute deviation of at least 1 value.

        med = median(x),   mad = MAD_SCALE * median(|x - med|)

    MAD_SCALE = 1.4826 (= 1 / Phi^-1(3/4)) makes `mad` estimate the standard deviation of normal
    data, while one slow night in the history moves neither the median nor the MAD much.
    """
    xs = _values("values", values)
    if not xs:
        raise ValueError("values: expected at least 1 value, got an empty sequence")
    return _median_and_mad(xs)


def _median_and_mad(xs: list[float]) -> tuple[float, float]:
    med = _median_sorted(sorted(xs))
    return med, MAD_SCALE * _median_sorted(sorted([abs(x - med) for x in xs]))


MAD_SCALE = 1.4826
"""Scales a MAD to the standard deviation of normal data: 1 / Phi^-1(0.75) = 1.48260..."""


def _median_sorted(xs: list[float]) -> float:
    n = len(xs)
    mid = n // 2
    return xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2


def _t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for T ~ Student t with df degrees of freedom."""
    return float(2 * _scipy_stats.t.sf(abs(t), df))


def _t_quantile(probability: float, df: float) -> float:
    return float(_scipy_stats.t.ppf(probability, df))


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The verdict on one series and the numbers it rests on; `explain()` says it in one line.

    Fields that do not apply to a kind (a p-value for a timing, means for a status) are None.
    """

    verdict: Verdict
    kind: str
    """'value' (`compare_seeds`), 'timing' (`compare_timing`) or 'status' (`compare_status`)."""
    name: str = ""
    """The series, e.g. 'eval/id_accuracy', as given by the caller (used by `explain`)."""
    direction: str = "none"
    """'higher', 'lower' or 'none' (values); 'lower' for timings; 'none' for statuses."""
    n_baseline: int = 0
    """Seeds of the baseline (value), nights of history used (timing)."""
    n_current: int = 0
    """Seeds now (value); 1 for a timing."""
    baseline_mean: float | None = None
    """Mean over the baseline seeds (value); the median of the history (timing)."""
    current_mean: float | None = None
    """Mean over the current seeds (value); tonight's value (timing)."""
    difference: float | None = None
    """current_mean - baseline_mean."""
    relative_change: float | None = None
    """difference / |baseline_mean|; None when baseline_mean is 0 (see `explain`)."""
    ci_low: float | None = None
    """Lower end of the Welch confidence interval of the difference (value)."""
    ci_high: float | None = None
    confidence: float | None = None
    """1 - alpha, the level of the confidence interval."""
    t: float | None = None
    """Welch's t statistic (+-inf when both sides have zero spread and differ)."""
    df: float | None = None
    """Welch-Satterthwaite degrees of freedom; None when both sides have zero spread."""
    p_value: float | None = None
    """Two-sided Welch p-value."""
    effect_size: float | None = None
    """Hedges' g."""
    spread: float | None = None
    """MAD_SCALE * MAD of the history (timing)."""
    lower_bound: float | None = None
    """Below this, a timing is an improvement."""
    upper_bound: float | None = None
    """Above this, a timing is a regression."""
    baseline_status: str | None = None
    current_status: str | None = None
    reason: str = ""
    """Why the verdict, when the numbers alone do not say it (too few seeds, zero baseline)."""

    def explain(self) -> str:
        """One plain-words line, e.g. 'regression: eval/id_accuracy fell 12.0% (0.810 ->
        0.713, 95% CI of the difference [-0.150, -0.0420], Welch p=0.003, 3 vs 3 seeds)'."""
        name = self.name or "the series"
        if self.kind == "status":
            return self._explain_status(name)
        if self.kind == "timing":
            return self._explain_timing(name)
        if self.spread is not None:
            return self._explain_history(name)
        return self._explain_value(name)

    def _explain_history(self, name: str) -> str:
        """A once-a-night value against recent nights (`compare_to_history`)."""
        v, c = self.verdict, _fmt(self.current_mean)
        if v is Verdict.INSUFFICIENT_DATA:
            return f"insufficient data: {name} tonight {c}; {self.reason}"
        history = (f"median of {self.n_baseline} nights {_fmt(self.baseline_mean)}, "
                   f"MAD {_fmt(self.spread)}; noise band {_fmt(self.lower_bound)}-"
                   f"{_fmt(self.upper_bound)}, one seed a night")
        return f"{v}: {name} {self._move()} ({_fmt(self.baseline_mean)} -> {c}; {history})"

    def _explain_status(self, name: str) -> str:
        before = self.baseline_status or "absent"
        after = self.current_status or "absent"
        return f"{self.verdict}: {name} ({before} -> {after})"

    def _move(self) -> str:
        """'fell 12.0%' / 'rose by 0.0100 (baseline mean is 0, ...)' / 'did not move'."""
        diff = self.difference
        if diff is None or diff == 0:
            return "did not move"
        verb = "rose" if diff > 0 else "fell"
        if self.relative_change is None:
            return f"{verb} by {_fmt(abs(diff))} (baseline mean is 0: absolute difference, no %)"
        return f"{verb} {_pct(self.relative_change)}"

    def _explain_value(self, name: str) -> str:
        v = self.verdict
        b, c = _fmt(self.baseline_mean), _fmt(self.current_mean)
        seeds = f"{self.n_baseline} vs {self.n_current} seeds"
        if v is Verdict.NEW:
            return f"new: {name} has no baseline (now {c}, {_seeds(self.n_current)})"
        if v is Verdict.MISSING:
            return (f"missing: {name} was in the baseline ({b}, {_seeds(self.n_baseline)}), "
                    "absent now")
        if v is Verdict.UNCHANGED:
            return f"unchanged: {name} bit-identical ({b}, {seeds})"
        if v is Verdict.INSUFFICIENT_DATA:
            return f"insufficient data: {name} {self._move()} ({b} -> {c}, {seeds}); {self.reason}"
        level = f"{100 * self.confidence:g}%" if self.confidence is not None else ""
        interval = f"{level} CI of the difference [{_fmt(self.ci_low)}, {_fmt(self.ci_high)}]"
        line = (f"{v}: {name} {self._move()} ({b} -> {c}, {interval}, Welch "
                f"{_fmt_p(self.p_value)}, {seeds})")
        return f"{line}; {self.reason}" if self.reason else line

    def _explain_timing(self, name: str) -> str:
        v = self.verdict
        c = _fmt(self.current_mean)
        if v is Verdict.NEW:
            return f"new: {name} has no history (tonight {c} s)"
        if v is Verdict.INSUFFICIENT_DATA:
            return f"insufficient data: {name} tonight {c} s; {self.reason}"
        med, mad = _fmt(self.baseline_mean), _fmt(self.spread)
        if self.relative_change is None:
            move = f"took {c} s"
        else:
            move = (f"took {_pct(self.relative_change)} "
                    f"{'longer' if self.relative_change > 0 else 'less'}")
        history = f"median of {self.n_baseline} nights {med} s, MAD {mad} s"
        if v is Verdict.REGRESSION:
            bound = f"flagged above {_fmt(self.upper_bound)} s"
        elif v is Verdict.IMPROVEMENT:
            bound = f"flagged below {_fmt(self.lower_bound)} s"
        else:
            bound = f"noise band {_fmt(self.lower_bound)}-{_fmt(self.upper_bound)} s"
        return f"{v}: {name} {move} ({med} -> {c} s; {history}; {bound})"


@dataclass(frozen=True)
class ClaimResult:
    """The verdict on a claim and the numbers it rests on; `explain()` says it in one line."""

    verdict: ClaimVerdict
    name: str = ""
    """The claim, e.g. 'SFT-then-RL >= LUFFY at budget B'."""
    n: int = 0
    """Seeds (paired differences)."""
    mean: float | None = None
    """Mean paired difference (a - b)."""
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    delta: float | None = None
    """The margin: the claim is 'mean(a - b) > -delta'."""
    measured: float | None = None
    """premise_not_met: what the premise measured."""
    threshold: float | None = None
    """premise_not_met: what it needed."""
    reason: str = ""

    def explain(self) -> str:
        """One plain-words line, e.g. 'held: SFT-then-RL >= LUFFY at budget B: mean paired
        difference +0.0210, 95% CI [0.00400, 0.0380] lies above -delta = -0.0100 (5 seeds)'."""
        name = self.name or "the claim"
        if self.verdict is ClaimVerdict.PREMISE_NOT_MET:
            return f"premise not met: {name}: {self.reason}"
        if self.mean is None:
            return f"{self.verdict}: {name}: {self.reason}"
        level = f"{100 * self.confidence:g}%" if self.confidence is not None else ""
        sign = "+" if self.mean > 0 else ""
        line = f"{self.verdict}: {name}: mean paired difference {sign}{_fmt(self.mean)}"
        if self.ci_low is None:
            return f"{line} ({_seeds(self.n)}); {self.reason}"
        where = {ClaimVerdict.HELD: "lies above", ClaimVerdict.NOT_HELD: "lies below"}.get(
            self.verdict, "straddles")
        return (f"{line}, {level} CI [{_fmt(self.ci_low)}, {_fmt(self.ci_high)}] {where} "
                f"-delta = {_fmt(-self.delta)} ({_seeds(self.n)})")


# --------------------------------------------------------------------------------------------
# Values over seeds
# --------------------------------------------------------------------------------------------


def _bit_identical(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x.hex() == y.hex() for x, y in zip(a, b, strict=True))


def compare_seeds(baseline: Sequence[float], current: Sequence[float], direction: str, *,
                  min_effect: float = 0.05, alpha: float = 0.05, min_seeds: int = 3,
                  name: str = "") -> Comparison:
    """Judge a value measured over seeds (kind 'value'): current seeds against baseline seeds.

    Numbers (b = baseline, c = current; the formulas of `mean_and_variance`, `welch_t`,
    `hedges_g`)::

        difference      = mean(c) - mean(b)
        relative_change = difference / |mean(b)|          (None when mean(b) == 0)
        t, df, se       = welch_t(...)
        p               = 2 * P(T_df >= |t|)
        CI              = difference -+ t_{1 - alpha/2, df} * se        (level 1 - alpha)
        effect_size     = Hedges' g

    Verdict, in this order:

    1. bit-identical lists (same length, same float bits in the same order: pass values in seed
       order) -> 'unchanged';
    2. fewer than `min_seeds` on either side -> 'insufficient data' (the difference and, with 2+
       seeds a side, t, p and the CI are still reported);
    3. p < alpha AND (|relative_change| >= min_effect, or mean(b) == 0) -> by `direction`:
       'higher' is better: a rise is an 'improvement', a fall a 'regression'; 'lower' the
       other way round; 'none' -> 'changed' (never 'regression');
    4. otherwise 'noise' (the reason says which condition failed).

    Why Welch: the seed-to-seed spread differs between pipelines and versions (an RL stage is
    noisier than SFT; a bug can change the spread as well as the mean) and seed counts may be
    unequal; Welch's test keeps its false-alarm rate under both, where Student's pooled-variance
    test does not, and costs nothing when the variances are equal.
    Both sides with zero spread (every seed gives the same number on each side): with equal means
    that is no difference (t = 0, p = 1); with different means the difference is certain (t =
    +-inf, p = 0, CI = [difference, difference]), so significant. A zero baseline mean makes the
    relative change undefined: it is None, `explain` reports the absolute difference and says
    so, and significance alone decides (any change from exactly 0 is more than any relative
    minimum effect). An empty baseline gives 'new', an empty current 'missing'.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    b = _values("baseline", baseline)
    c = _values("current", current)
    alpha = _probability("alpha", alpha)
    min_effect = _number("min_effect", min_effect)
    if min_effect < 0:
        raise ValueError(f"min_effect: expected a relative change >= 0, got {min_effect!r}")
    min_seeds = _count("min_seeds", min_seeds, 2)
    if not b and not c:
        raise ValueError("baseline, current: both empty; expected at least one value on one side")
    common = {"kind": "value", "name": name, "direction": direction,
              "n_baseline": len(b), "n_current": len(c)}
    if not b:
        return Comparison(Verdict.NEW, current_mean=_mean(c), **common)
    if not c:
        return Comparison(Verdict.MISSING, baseline_mean=_mean(b), **common)

    mean_b, mean_c = _mean(b), _mean(c)
    if _bit_identical(b, c):
        return Comparison(Verdict.UNCHANGED, baseline_mean=mean_b, current_mean=mean_c,
                          difference=0.0, relative_change=0.0, **common)
    diff = mean_c - mean_b
    relative = None if mean_b == 0 else diff / abs(mean_b)
    numbers: dict = {"baseline_mean": mean_b, "current_mean": mean_c, "difference": diff,
                     "relative_change": relative}
    if len(b) >= 2 and len(c) >= 2:
        numbers.update(_welch_numbers(b, c, alpha))

    if min(len(b), len(c)) < min_seeds:
        reason = (f"needs {min_seeds} seeds a side to judge, had {len(b)} (baseline) and "
                  f"{len(c)} (current)")
        return Comparison(Verdict.INSUFFICIENT_DATA, reason=reason, **common, **numbers)

    p = numbers["p_value"]
    significant = p < alpha
    large = relative is None or abs(relative) >= min_effect
    if significant and large:
        if direction == "none":
            verdict = Verdict.CHANGED
        elif (diff > 0) == (direction == "higher"):
            verdict = Verdict.IMPROVEMENT
        else:
            verdict = Verdict.REGRESSION
        return Comparison(verdict, **common, **numbers)
    if not significant:
        reason = f"not significant (p >= alpha = {alpha:g})"
    else:
        reason = f"below the minimum effect of {_pct(min_effect)}"
    return Comparison(Verdict.NOISE, reason=reason, **common, **numbers)


def _welch_numbers(b: list[float], c: list[float], alpha: float) -> dict:
    """t, df, p, CI and Hedges' g of two samples of 2+ values each (see `compare_seeds`)."""
    mean_b, var_b = mean_and_variance(b)
    mean_c, var_c = mean_and_variance(c)
    diff = mean_c - mean_b
    g = hedges_g(mean_b, var_b, len(b), mean_c, var_c, len(c))
    out = {"confidence": 1 - alpha, "effect_size": g}
    if var_b == 0 and var_c == 0:
        # No spread on either side: the difference of the means is exact.
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        out.update(t=t, df=None, p_value=1.0 if diff == 0 else 0.0, ci_low=diff, ci_high=diff)
        return out
    t, df, se = welch_t(mean_b, var_b, len(b), mean_c, var_c, len(c))
    half = _t_quantile(1 - alpha / 2, df) * se
    out.update(t=t, df=df, p_value=_t_two_sided_p(t, df), ci_low=diff - half,
               ci_high=diff + half)
    return out


# --------------------------------------------------------------------------------------------
# Timings against history
# --------------------------------------------------------------------------------------------


def compare_timing(history: Sequence[float], current: float, *, min_history: int = 5,
                   threshold: float = 0.15, k: float = 3.0, window: int = 30,
                   name: str = "") -> Comparison:
    """Judge tonight's timing (kind 'timing', seconds, lower is better) against recent nights.

    With h the last `window` nights of `history` (oldest first), med and mad from
    `median_and_mad(h)` (mad = 1.4826 * MAD)::

        upper = max(med * (1 + threshold), med + k * mad)
        lower = min(med * (1 - threshold), med - k * mad)
        current > upper -> 'regression';  current < lower -> 'improvement';  else 'noise'
        relative_change = current / med - 1

    Fewer than `min_history` nights -> 'insufficient data'; no history at all -> 'new'.

    Why both conditions: `threshold` is the smallest slowdown worth a line in the report, and
    it alone keeps a quiet machine (mad near 0) from flagging a 2% wobble; `k * mad` is this
    series' own noise, and it alone keeps a busy shared machine from flagging its ordinary
    spread. Median and MAD, not mean and standard deviation: the occasional night when another
    job shared the machine moves neither, so one slow night does not hide the next real
    slowdown. The defaults (threshold 0.15, k 3) are set on this machine's own nights (12
    nights of the three nightly timings, tests/data/clean_timings.json, spread 5-7%): replayed
    in 10 orders, no clean night is a regression in 210 judgements, and a 30% slowdown of a
    night is flagged in 29 of 30 replays; threshold 0.20 with k 4 flags it in 19 of 30 (3 of 10
    for the generation timing, whose MAD is 7% of its median). The price, on synthetic
    histories with 3-8% noise and a +15% night in fifty (tests/test_stats.py): about 0.5% of
    clean nights (1% with those nights) are called a regression.
    """
    h = _values("history", history)
    current = _number("current", current)
    if current < 0 or (h and min(h) < 0):
        raise ValueError("history, current: expected timings in seconds >= 0")
    min_history = _count("min_history", min_history, 1)
    window = _count("window", window, min_history)
    threshold = _probability("threshold", threshold)
    k = _number("k", k)
    if k < 0:
        raise ValueError(f"k: expected a number of MADs >= 0, got {k!r}")
    return _against_history(h, current, "lower", kind="timing", min_history=min_history,
                            threshold=threshold, k=k, window=window, name=name)


def compare_to_history(history: Sequence[float], current: float, direction: str, *,
                       min_history: int = 5, threshold: float = 0.05, k: float = 4.0,
                       window: int = 30, name: str = "") -> Comparison:
    """Judge a value measured once a night (one seed: too few for `compare_seeds`) against the
    values of recent nights, in its own direction: the rule of `compare_timing` (median and
    MAD of the last `window` nights; beyond both `threshold` x median and `k` MADs), with
    'higher is better' turning the bounds around and 'none' saying 'changed' beyond either.
    A deterministic run (CPU, same seed) has a history of zero spread: then only `threshold`
    (default 5%, the smallest effect of `compare_seeds`) stands between noise and a verdict.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    h = _values("history", history)
    current = _number("current", current)
    min_history = _count("min_history", min_history, 1)
    window = _count("window", window, min_history)
    threshold = _probability("threshold", threshold)
    k = _number("k", k)
    if k < 0:
        raise ValueError(f"k: expected a number of MADs >= 0, got {k!r}")
    return _against_history(h, current, direction, kind="value", min_history=min_history,
                            threshold=threshold, k=k, window=window, name=name)


def _against_history(h: list[float], current: float, direction: str, *, kind: str,
                     min_history: int, threshold: float, k: float, window: int,
                     name: str) -> Comparison:
    common = {"kind": kind, "name": name, "direction": direction, "n_current": 1,
              "current_mean": current}
    if not h:
        return Comparison(Verdict.NEW, n_baseline=0, **common)
    h = h[-window:]
    med, mad = _median_and_mad(h)
    relative = (current - med) / abs(med) if med != 0 else None
    numbers = {"n_baseline": len(h), "baseline_mean": med, "spread": mad,
               "difference": current - med, "relative_change": relative}
    if len(h) < min_history:
        unit = " s" if kind == "timing" else ""
        reason = (f"needs {min_history} nights of history to judge, had {len(h)} "
                  f"(median so far {_fmt(med)}{unit})")
        return Comparison(Verdict.INSUFFICIENT_DATA, reason=reason, **common, **numbers)
    upper = max(med + threshold * abs(med), med + k * mad)
    lower = min(med - threshold * abs(med), med - k * mad)
    if lower <= current <= upper:
        verdict = Verdict.NOISE
    elif direction == "none":
        verdict = Verdict.CHANGED
    elif (current > upper) == (direction == "lower"):
        verdict = Verdict.REGRESSION
    else:
        verdict = Verdict.IMPROVEMENT
    return Comparison(verdict, lower_bound=lower, upper_bound=upper, **common, **numbers)


# --------------------------------------------------------------------------------------------
# Status transitions
# --------------------------------------------------------------------------------------------


def compare_status(baseline: str | None, current: str | None, *, name: str = "") -> Comparison:
    """Judge a check's status (kind 'status'); None means absent from that run.

        pass -> fail | error          'newly failing'
        fail | error -> pass          'fixed'
        fail | error -> fail | error  'still failing'
        pass -> pass                  'unchanged'
        None -> any                   'new'
        any -> None                   'missing'
    """
    for arg, value in (("baseline", baseline), ("current", current)):
        if value is not None and value not in STATUSES:
            raise ValueError(f"{arg}: expected one of {STATUSES} or None, got {value!r}")
    if baseline is None and current is None:
        raise ValueError("baseline, current: both None; expected a status on at least one side")
    if baseline is None:
        verdict = Verdict.NEW
    elif current is None:
        verdict = Verdict.MISSING
    elif baseline == "pass":
        verdict = Verdict.UNCHANGED if current == "pass" else Verdict.NEWLY_FAILING
    else:
        verdict = Verdict.FIXED if current == "pass" else Verdict.STILL_FAILING
    return Comparison(verdict, kind="status", name=name, n_baseline=int(baseline is not None),
                      n_current=int(current is not None), baseline_status=baseline,
                      current_status=current)


# --------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------


def mean_interval(values: Sequence[float], *, confidence: float = 0.95
                  ) -> tuple[float, float | None, float | None]:
    """(mean, low, high): the t confidence interval of the mean of `values` (seeds); one value
    has no interval (None, None), zero spread gives [mean, mean]."""
    xs = _values("values", values)
    confidence = _probability("confidence", confidence)
    if not xs:
        raise ValueError("values: expected at least one value, got none")
    if len(xs) < 2:
        return xs[0], None, None
    mean, var = mean_and_variance(xs)
    half = 0.0 if var == 0 else _t_quantile((1 + confidence) / 2, len(xs) - 1) * math.sqrt(
        var / len(xs))
    return mean, mean - half, mean + half


def paired_claim(differences: Sequence[float], delta: float, *, confidence: float = 0.95,
                 min_seeds: int = 3, name: str = "") -> ClaimResult:
    """Judge the claim "a is at least as good as b, within a margin delta" over paired seeds.

    `differences` holds a - b per seed (same seed, same budget, each measured so that higher is
    better), e.g. SFT-then-RL accuracy minus LUFFY accuracy at budget B. With n seeds::

        mean = sum(d) / n,   s^2 = sum((d - mean)^2) / (n - 1),   se = s / sqrt(n)
        CI   = mean -+ t_{(1 + confidence) / 2, n - 1} * se

        CI entirely above -delta  -> 'held'
        CI entirely below -delta  -> 'not held'
        otherwise                 -> 'inconclusive'
        n < min_seeds             -> 'inconclusive', saying why

    `delta` >= 0 is a non-inferiority margin ("a >= b - delta"); a negative delta asks for
    superiority by |delta|. Deciding on a two-sided `confidence` interval tests each side at
    (1 - confidence) / 2 (TOST-style). Pairing by seed removes what two pipelines share on a
    seed (data order, initial sampling) from the noise. Zero spread gives CI = [mean, mean].
    """
    d = _values("differences", differences)
    delta = _number("delta", delta)
    confidence = _probability("confidence", confidence)
    min_seeds = _count("min_seeds", min_seeds, 2)
    common = {"name": name, "n": len(d), "confidence": confidence, "delta": delta}
    if len(d) < min_seeds:
        mean = _mean(d) if d else None
        reason = f"needs {min_seeds} paired seeds to judge, had {len(d)}"
        return ClaimResult(ClaimVerdict.INCONCLUSIVE, mean=mean, reason=reason, **common)
    mean, var = mean_and_variance(d)
    half = 0.0 if var == 0 else _t_quantile((1 + confidence) / 2, len(d) - 1) * math.sqrt(
        var / len(d))
    low, high = mean - half, mean + half
    if low > -delta:
        verdict = ClaimVerdict.HELD
    elif high < -delta:
        verdict = ClaimVerdict.NOT_HELD
    else:
        verdict = ClaimVerdict.INCONCLUSIVE
    return ClaimResult(verdict, mean=mean, ci_low=low, ci_high=high, **common)


def premise_not_met(measured: float, threshold: float, what: str, *,
                    name: str = "") -> ClaimResult:
    """A claim not judged because its premise failed (diagnostics), e.g. `what` = 'the bug's
    relative error on this version', measured 2e-6, threshold 1e-3: nothing to diagnose."""
    measured = _number("measured", measured)
    threshold = _number("threshold", threshold)
    if not isinstance(what, str) or not what:
        raise ValueError(f"what: expected a non-empty description of the premise, got {what!r}")
    reason = f"{what} measured {_fmt(measured)}, the claim needs {_fmt(threshold)}"
    return ClaimResult(ClaimVerdict.PREMISE_NOT_MET, name=name, measured=measured,
                       threshold=threshold, reason=reason)
