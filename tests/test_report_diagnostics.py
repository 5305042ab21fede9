"""The diagnostics study in the results store and the report: a `ptbench diagnose` study.json
as measurements, the 'Why pipelines differ' section, the import and the nightly verdicts.

tests/data/diagnostics-study.json is /work/runs/diag/quick/study.json (one seed of
configs/diagnostics/tiny-arithmetic-quick.yaml) copied as it is (55 KB, nothing dropped).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from ptbench.reports.build import build_report
from ptbench.reports.db import ResultsStore
from ptbench.reports.diagnostics import (
    CLAIM,
    COUPLING,
    MISALIGNMENT,
    OBSERVED,
    PREDICTED,
    RESTORE,
    SPECTRAL,
    diagnostics_section,
    measurements_from_study,
)
from ptbench.reports.importers import import_path, read_path
from ptbench.reports.render import Figure, Report, Table, to_html, to_markdown
from ptbench.reports.verdicts import series_key

STUDY = Path(__file__).parent / "data" / "diagnostics-study.json"


@pytest.fixture
def summary() -> dict:
    return json.loads(STUDY.read_text())


def as_frame(found) -> pd.DataFrame:
    return pd.DataFrame([dataclasses.asdict(m) for m in found])


def test_a_claim_with_a_recorded_verdict_is_a_status_the_others_a_value(summary):
    summary["claims"][0].update(verdict="held", expect="held")
    summary["claims"][1].update(verdict="not held", expect="held")
    claims = [m for m in measurements_from_study(summary) if m.metric == CLAIM]
    assert [m.config for m in claims] == [c["key"] for c in summary["claims"]]
    assert [(m.kind, m.status) for m in claims[:2]] == [("status", "pass"), ("status", "fail")]
    assert claims[1].detail.endswith("(recorded verdict: held)")
    assert [m.labels for m in claims[:2]] == [{"verdict": "held", "expect": "held"},
                                               {"verdict": "not held", "expect": "held"}]
    assert series_key(claims[0]) == series_key(replace(claims[0], labels={"verdict": "not held",
                                                                          "expect": "held"}))
    unjudged = claims[2:]
    assert {m.labels["verdict"] for m in unjudged} == {"inconclusive", "premise not met"}
    assert all(m.kind == "value" and m.direction == "none" and m.status == "" for m in unjudged)
    assert [m.value for m in unjudged] == [float(c["n"]) for c in summary["claims"][2:]]


def test_per_seed_figures_follow_the_study_json(summary):
    found = measurements_from_study(summary)
    record = summary["seeds"][0]
    counts = Counter(m.metric for m in found)
    for field in ("reward", "sft_ce"):
        assert counts[COUPLING + field] == sum(len(p) for p in record["rl_curves"].values())
    cosines = [p for run in (record["sft_curve"], record["sft_after_rl_curve"],
                             *record["rl_curves"].values(), *record["reverse_curves"].values())
               for p in run if p["cosine"] is not None]
    assert counts[MISALIGNMENT] == len(cosines)
    assert {m.pipeline for m in found if m.metric == MISALIGNMENT} == {
        "sft sweep", "rl from step 200", "rl from step 400", "rl then sft", "sft after rl"}
    predicted = [m for m in found if m.metric == PREDICTED]
    assert [(m.labels, m.value) for m in predicted] == [
        ({"eta": "lr"}, record["prediction"]["predicted_best_step_lr"])]  # effective: None
    (observed,) = [m for m in found if m.metric == OBSERVED]
    assert observed.value == record["prediction"]["observed_best_step"]
    assert observed.pipeline == "rl from step 400" and "PL not usable" in observed.detail
    for transition, rows in record["spectral"].items():
        angles = [m for m in found if m.metric == f"{SPECTRAL}{transition}/max_angle"]
        changes = [m for m in found if m.metric == f"{SPECTRAL}{transition}/value_change"]
        assert [m.value for m in angles] == [max(r["left_angle"], r["right_angle"]) for r in rows]
        assert [m.value for m in changes] == [r["value_change"] for r in rows]
        assert [m.labels for m in angles] == [{"layer": r["layer"], "matrix": r["matrix"]}
                                              for r in rows]
    restore = [m for m in found if m.metric == RESTORE + "ood"]
    assert [(m.labels["reference"], m.labels["p"], m.labels["q"], m.value) for m in restore] == [
        (r["reference"], r["p"], r["q"], r["ood"]) for r in record["restore"]]
    values = [m for m in found if m.kind == "value"]
    assert all(m.seed == 0 and m.config == summary["name"] for m in values if m.metric != CLAIM)
    assert {m.direction for m in values if not m.metric.startswith(COUPLING)} == {"none"}


def test_the_section_shows_claims_curves_heat_maps_and_the_restore_table(summary):
    section = diagnostics_section(as_frame(measurements_from_study(summary)))
    figures = [b for b in section.blocks if isinstance(b, Figure)]
    assert [f.alt for f in figures] == [
        "rl from step 400: reward and SFT CE",
        "cosine of the SFT and RL gradients against step, per run",
        "sft: largest principal angle per layer and matrix",
        "rl: largest principal angle per layer and matrix"]
    assert all(f.uri.startswith("data:image/png;base64,") for f in figures)
    tables = {b.caption.split(":")[0]: b.frame for b in section.blocks if isinstance(b, Table)}
    restore = tables["UV restore"]
    assert list(restore.columns) == ["reference", "p", "q=0.25", "q=1"]
    assert list(zip(restore["reference"], restore["p"], strict=True)) == [
        ("peak", "p=0.2"), ("peak", "p=1"), ("unrelated", "p=0.2")]
    assert restore["q=0.25"].tolist() == [0.345, 0.345, 0.0]
    spectral = tables["mean over matrices and seeds, against a random perturbation of the same norm"]
    assert spectral["transition"].tolist() == ["sft", "rl"]
    html = to_html(Report("t", "h", False, [section]))
    assert html.count("<img ") == 4 and "p=0.2" in html and "q=0.25" in html
    markdown = to_markdown(Report("t", "h", False, [section]))
    assert "8 claim(s): 3 inconclusive, 5 premise not met" in markdown
    assert "predicted 8.34 (eta lr)" in markdown and "no prediction with eta effective" in markdown


def test_without_a_prediction_the_caption_says_so(summary):
    summary["seeds"][0]["prediction"]["predicted_best_step_lr"] = None
    summary["seeds"][0]["prediction"]["why_no_prediction_lr"] = "no smoothness estimate"
    markdown = to_markdown(Report("t", "h", False, [
        diagnostics_section(as_frame(measurements_from_study(summary)))]))
    assert ("no prediction was possible (eta lr: no smoothness estimate; eta effective: PL not "
            "usable" in markdown)


def test_an_empty_frame_says_how_to_get_a_study():
    for frame in (pd.DataFrame(), pd.DataFrame({"metric": ["probe"], "labels": [{}]})):
        section = diagnostics_section(frame)
        assert section.blocks == [] and "ptbench diagnose CONFIG --out DIR" in section.empty
        assert "ptbench report --import DIR/study.json" in section.empty


def test_a_study_json_imports_as_a_diagnostics_run(tmp_path):
    shutil.copy(STUDY, tmp_path / "study.json")
    info, found = read_path(tmp_path / "study.json")
    assert info.kind == "diagnostics"
    assert info.labels["study"] == "tiny-arithmetic-diagnostics-quick"
    assert len(found) == len(measurements_from_study(json.loads(STUDY.read_text())))
    shutil.copy(STUDY, tmp_path / "tiny-arithmetic.json")  # stored under another name
    assert read_path(tmp_path / "tiny-arithmetic.json")[0].kind == "diagnostics"


def _night(store: ResultsStore, summary: dict, day: int) -> int:
    path = Path(store.where).parent / f"night-{day}" / "study.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**summary, "started": f"2026-11-{day:02d}T02:17:00+00:00"}))
    return import_path(store, path)


def test_the_report_holds_the_section_and_judges_claims_night_to_night(tmp_path, summary):
    store = ResultsStore.open(tmp_path / "s.sqlite")
    held = copy.deepcopy(summary)
    held["claims"][0].update(verdict="held", expect="held")
    _night(store, held, 10)
    built = build_report(store, tmp_path / "first")
    markdown = built.markdown.read_text()
    assert "## Why pipelines differ (diagnostics)" in markdown
    assert "8 claim(s): 1 held, 3 inconclusive, 4 premise not met" in markdown
    assert "| peak | p=0.2 | 0.345 | 0.345 |" in markdown
    assert built.html.read_text().count('class="ptbench-section"') == 11

    inconclusive = _night(store, summary, 11)  # no recorded verdict: no outcome, no failure
    built = build_report(store, tmp_path / "second", run_id=inconclusive)
    assert not built.comparison.failed, built.comparison.headline()

    not_held = copy.deepcopy(held)
    not_held["claims"][0]["verdict"] = "not held"
    run = _night(store, not_held, 12)
    built = build_report(store, tmp_path / "third", run_id=run, baseline=1)
    assert built.comparison.failed
    failing = [v.series for v in built.comparison.verdicts if str(v.comparison.verdict) == "newly failing"]
    assert failing == ["ce_rises_during_rl diagnostic_claim"]


def test_the_diagnostics_report_passes_in_a_real_browser(tmp_path, summary):
    """Headless Chromium: the page with the diagnostics figures has no broken image or error."""
    from tests.browser import check_page, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    store = ResultsStore.open(tmp_path / "s.sqlite")
    _night(store, summary, 10)
    built = build_report(store, tmp_path / "out")
    assert check_page(built.html, tmp_path / "out" / "report.png").problems() == []
