"""Readers of the result files ptbench already writes, into the one record format.

    measurements_from_metrics(path)        a pipeline run's metrics.jsonl  (ptbench run)
    measurements_from_probe_results(path)  a probes results JSON (ptbench probe --out, the
                                           version matrix's results/*.json, --ptbench-results)
    comparison_run(path)                   a comparison.json (ptbench compare)
    zoo_run(path)                          a zoo.json (ptbench matrix zoo)
    study_run(path)                        a study.json (ptbench diagnose)
    import_path(store, path)               any of them (or a run folder) into a ResultsStore

These are the only readers of those formats that the reports use; everything downstream
reads `RunInfo` and `Measurement` from the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from ptbench.pipelines.tracking import Tracker
from ptbench.reports.db import ResultsStore
from ptbench.reports.records import Measurement, RunInfo
from ptbench.reports.store import read_results

log = logging.getLogger(__name__)

METRIC_DIRECTIONS: list[tuple[str, str]] = [
    # (regular expression searched in the metric name, which way is better); the first match
    # wins, and a metric matching none is tracked for drift only ('none').
    (r"^flops/|param_dist|tokens", "none"),       # spent or moved, neither good nor bad
    (r"frac_reward_zero_std", "none"),            # a diagnostic, not a reward
    (r"accuracy|reward", "higher"),
    (r"(^|[/_])ce($|_)|loss|(^|[/_])kl($|_)", "lower"),  # cross-entropy, losses, KL
]
PROBE_STATUSES = ("pass", "fail", "error")


def metric_direction(metric: str) -> str:
    """'higher', 'lower' or 'none' for a metric name (see METRIC_DIRECTIONS)."""
    for pattern, direction in METRIC_DIRECTIONS:
        if re.search(pattern, metric):
            return direction
    return "none"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measurements_from_metrics(path: str | os.PathLike) -> tuple[RunInfo, list[Measurement]]:
    """A pipeline run's metrics.jsonl as a run of kind 'pipeline' and one 'value' measurement
    per row (metric, value, pipeline, stage, step, seed, flops).

    The file holds no start time: `started` is its modification time less the last row's
    wall time (the run's start, to the clock's precision). Machine and versions are unknown.
    """
    path = Path(path)
    try:
        rows = Tracker.read(path)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a ptbench metrics.jsonl ({exc})") from None
    wall = max((r.wall_s for r in rows), default=0.0)
    started = datetime.fromtimestamp(path.stat().st_mtime - wall, timezone.utc)
    info = RunInfo(kind="pipeline", started=started.isoformat(timespec="seconds"),
                   labels={"source": str(path), "source_sha256": _sha256(path),
                           "pipeline": rows[0].pipeline if rows else ""})
    found = [Measurement(metric=r.metric, value=r.value, direction=metric_direction(r.metric),
                         pipeline=r.pipeline, stage=r.stage, step=r.step, seed=r.seed,
                         flops=r.flops) for r in rows]
    return info, found


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _error_line(reason: str) -> str:
    """The line that says what went wrong: a traceback's last line (the exception), else the
    first line."""
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _diagnosis(record: dict) -> str:
    """A probe report's first diagnosis, else the first line of its text."""
    for step in (record.get("report") or {}).get("steps", []):
        if step.get("diagnosis"):
            return _first_line(step["diagnosis"])
    text = record.get("text") or ""
    for line in text.splitlines():
        if line.strip().startswith("->"):
            return line.strip()[2:].strip()
    return _first_line(text)


def probe_measurement(record: dict, *, test_id: str = "", labels: dict | None = None
                      ) -> Measurement | None:
    """One probe result record (`AdapterConfig.probe_record`, the plugin's `probe` fixture, a
    results file's) as a 'status' measurement 'probe'; None for an 'unsupported' record, which
    measured nothing. Value 1.0 for pass and 0.0 otherwise; detail the first diagnosis (or the
    error's exception line); labels loss_agg, objective, optimizer, world_size, plant (when
    planted), then `labels`."""
    status = record.get("status")
    if status == "unsupported":
        return None
    if status not in PROBE_STATUSES or "framework" not in record:
        raise ValueError(f"expected a framework and a status in "
                         f"{PROBE_STATUSES + ('unsupported',)}, got {status!r}")
    own = {k: record[k] for k in ("loss_agg", "objective", "optimizer", "world_size")
           if record.get(k) is not None}
    if record.get("plant"):
        own["plant"] = record["plant"]
    detail = _error_line(record.get("reason") or "") if status == "error" else _diagnosis(record)
    return Measurement(
        metric="probe", value=1.0 if status == "pass" else 0.0, kind="status", direction="higher",
        test_id=test_id or record.get("test") or "", config=record["framework"],
        seed=record.get("seed"), status=status, detail=detail, labels={**own, **(labels or {})})


def measurements_from_probe_results(path: str | os.PathLike) -> tuple[RunInfo, list[Measurement]]:
    """A probes results JSON as one run and a 'status' measurement 'probe' per record.

    Kind 'matrix' for a version-matrix file (it has a 'subject'), 'bench' for pytest's
    --ptbench-results (records carry the test id), 'probe' otherwise. Each record: value 1.0
    for pass and 0.0 otherwise, status pass/fail/error, config the framework configuration,
    detail the first diagnosis (or the error's exception line), labels loss_agg, objective,
    optimizer, world_size, plant (when planted), package and version (from the subject).
    'unsupported' records measured nothing and are skipped; how many is logged and kept in
    the run's labels (`unsupported_skipped`). A release that could not be installed gives one
    'matrix/install' measurement with status 'error'.
    """
    path = Path(path)
    doc = read_results(path)
    if doc["kind"] != "probes":
        raise ValueError(f"{path}: a results file of kind {doc['kind']!r}, not 'probes'")
    env, subject = doc.get("environment") or {}, doc.get("subject") or {}
    records = doc["records"]
    kind = "matrix" if subject else "bench" if any("test" in r for r in records) else "probe"
    versions = dict(env.get("versions") or {})
    if env.get("python"):
        versions["python"] = env["python"]
    started = env.get("time") or datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(
        timespec="seconds")
    release = {k: subject[k] for k in ("package", "version") if k in subject}
    found, skipped = [], 0
    for i, r in enumerate(records):
        try:
            m = probe_measurement(r, labels=release)
        except ValueError as exc:
            raise ValueError(f"{path}: record {i}: {exc}") from None
        if m is None:
            skipped += 1
        else:
            found.append(m)
    if doc.get("install_error"):
        found.append(Measurement(
            metric="matrix/install", value=0.0, kind="status", direction="higher",
            config=subject.get("package", ""), status="error",
            detail=_error_line(doc["install_error"]), labels=release))
    if skipped:
        log.info("%s: %d unsupported records skipped (nothing measured)", path, skipped)
    info = RunInfo(kind=kind, started=started, host=env.get("node") or "", versions=versions,
                   labels={"source": str(path), "source_sha256": _sha256(path),
                           "unsupported_skipped": skipped, **release,
                           **({"machine": env["machine"]} if env.get("machine") else {})})
    return info, found


def _summary_run(path: Path, kind: str, name_label: str, measure) -> tuple[RunInfo, list[Measurement]]:
    """A command's JSON summary as a run of `kind`: started when it says (else the file's
    mtime), its name under `name_label`, its measurements from `measure(summary)`."""
    summary = json.loads(path.read_text())
    started = summary.get("started") or datetime.fromtimestamp(
        path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    info = RunInfo(kind=kind, started=started,
                   labels={"source": str(path), "source_sha256": _sha256(path),
                           name_label: summary.get("name", "")})
    return info, measure(summary)


def comparison_run(path: Path) -> tuple[RunInfo, list[Measurement]]:
    """A `ptbench compare` summary (comparison.json) as a 'comparison' run."""
    from ptbench.reports.comparisons import measurements_from_comparison

    return _summary_run(path, "comparison", "comparison", measurements_from_comparison)


def _is_study(path: Path) -> bool:
    """A study.json saved under another name (e.g. benchmarks/diagnostics/tiny-arithmetic.json)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"premises", "seeds", "claims"} <= set(doc)


def study_run(path: Path) -> tuple[RunInfo, list[Measurement]]:
    """A `ptbench diagnose` summary (study.json) as a 'diagnostics' run."""
    from ptbench.reports.diagnostics import measurements_from_study

    return _summary_run(path, "diagnostics", "study", measurements_from_study)


ZOO_STATUS = {"confirmed": "pass", "changed": "fail", "not reproduced": "fail"}
"""A zoo case's status as a measurement status; 'cannot run' measured nothing."""


def zoo_run(path: Path) -> tuple[RunInfo, list[Measurement]]:
    """A `ptbench matrix zoo` results file (zoo.json) as a 'zoo' run: one 'status'
    measurement 'zoo' per case that ran (pass = confirmed; fail = changed or not reproduced),
    detail the case's status and reason; cases that could not run are counted in the labels."""
    doc = json.loads(path.read_text())
    found, cannot = [], 0
    for case in doc["cases"]:
        if case["status"] not in ZOO_STATUS:
            cannot += 1
            continue
        found.append(Measurement(
            metric="zoo", value=1.0 if case["status"] == "confirmed" else 0.0, kind="status",
            direction="higher", config=case["id"], status=ZOO_STATUS[case["status"]],
            detail=f"{case['status']}: {case['reason']}",
            labels={"package": case["package"], "zoo_status": case["status"]}))
    started = doc.get("time") or datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(
        timespec="seconds")
    info = RunInfo(kind="zoo", started=started,
                   labels={"source": str(path), "source_sha256": _sha256(path),
                           "cannot_run": cannot})
    return info, found


def read_path(path: str | os.PathLike) -> tuple[RunInfo, list[Measurement]]:
    """The run in a metrics.jsonl, a comparison.json, a zoo.json, a study.json, a probes results
    JSON, or a run folder's metrics.jsonl."""
    path = Path(path)
    if path.is_dir():
        if not (path / "metrics.jsonl").is_file():
            raise ValueError(f"{path}: a folder without metrics.jsonl (not a pipeline run folder)")
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".jsonl":
        return measurements_from_metrics(path)
    if path.suffix == ".json" and path.name == "comparison.json":
        return comparison_run(path)
    if path.suffix == ".json" and path.name == "zoo.json":
        return zoo_run(path)
    if path.suffix == ".json" and (path.name == "study.json" or _is_study(path)):
        return study_run(path)
    if path.suffix == ".json":
        return measurements_from_probe_results(path)
    raise ValueError(f"{path}: cannot import it: expected a metrics.jsonl, a probes results "
                     ".json (or comparison.json, zoo.json, study.json) or a pipeline run folder")


def import_path(store: ResultsStore, path: str | os.PathLike, *, again: bool = False) -> int:
    """Import one results file (or run folder) into the store as a finished run; its id.

    A file already imported (same content) is not imported twice: its run's id is returned,
    unless `again`."""
    info, found = read_path(path)
    if not again:
        for run in store.runs(kind=info.kind):
            if run.info.labels.get("source_sha256") == info.labels["source_sha256"]:
                return run.id
    with store.recording(info) as run_id:
        store.add(run_id, found)
    return run_id
