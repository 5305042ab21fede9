"""The generated acceptability set: size, balance, domains by construction, labels checked by an
independent reading of each sentence."""

from __future__ import annotations

import pytest

from ptbench.fixtures.tasks import ColaTask
from ptbench.fixtures.tasks.grammar import GENERATED, acceptability_rows

SINGULAR = {"dog", "cat", "teacher", "bird", "farmer", "child", "student", "lawyer", "horse",
            "doctor", "baker", "pilot"}
PLURAL = {"dogs", "cats", "teachers", "birds", "farmers", "children", "students", "lawyers",
          "horses", "doctors", "bakers", "pilots"}


def number(word: str) -> str | None:
    return "sg" if word in SINGULAR else "pl" if word in PLURAL else None


def verb_number(word: str) -> str:
    return "sg" if word.endswith("s") else "pl"


def attractor_label(words: list[str]) -> int:
    """An out-of-domain row read on its own: questions need a base verb after does/do with the
    subject's number; other rows need the sentence's last verb to agree with the FIRST noun."""
    if words[-1] == "?":
        subject = next(w for w in words if number(w))
        aux_ok = (words[0] == "does") == (number(subject) == "sg")
        return int(aux_ok and not words[-2].endswith("s"))
    head = next(w for w in words if number(w))
    return int(verb_number(words[-2]) == number(head))


def test_size_balance_distinct_and_seeded():
    rows = acceptability_rows()
    assert len(rows) == 8000 >= 5000 and len({r["sentence"] for r in rows}) == 8000
    for domain, n in (("in", 6000), ("out", 2000)):
        labels = [r["label"] for r in rows if r["domain"] == domain]
        assert len(labels) == n and sum(labels) == n // 2
    assert acceptability_rows(20, 10, seed=3) == acceptability_rows(20, 10, seed=3)
    assert acceptability_rows(20, 10, seed=3) != acceptability_rows(20, 10, seed=4)
    with pytest.raises(ValueError, match="n_out: expected an int >= 2"):
        acceptability_rows(10, 1)


def test_domains_are_constructions_and_labels_read_right():
    rows = acceptability_rows()
    for r in rows:
        words = r["sentence"].split()
        out_markers = {"that", "?", "near", "behind", "with", "beside"} & set(words)
        if r["domain"] == "in":
            assert not out_markers, r
        else:
            assert out_markers, r
            assert attractor_label(words) == r["label"], r
    acceptable_simple = [r for r in rows if r["domain"] == "in" and r["label"] == 1]
    for r in acceptable_simple:  # subject-verb agreement holds in every acceptable simple clause
        words = r["sentence"].split()
        subject = next(w for w in words if number(w))
        verb = words[words.index(subject) + 1]
        assert verb_number(verb) == number(subject), r


def test_the_cola_task_runs_on_the_generated_rows():
    task = ColaTask(source=GENERATED)
    ood = task.examples("ood", 2000)
    assert {e.meta["domain"] for e in ood} == {"out"}
    train = {e.prompt for e in task.examples("train", 100)}
    assert not train & {e.prompt for e in ood}
    assert len(task.examples("id", 1000)) == 1000
