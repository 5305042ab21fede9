"""Post-training tasks: splits, determinism, verifiable demonstrations and robust verifiers."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from fractions import Fraction

import pytest

from ptbench.fixtures.tasks import (
    SPLITS,
    TASKS,
    ArithmeticTask,
    ColaTask,
    Example,
    GeneralPointsConfig,
    GeneralPointsTask,
    MathTask,
    Task,
    get_task,
)
from ptbench.fixtures.tasks.base import permutation, seeded_rng
from ptbench.fixtures.tasks.expressions import evaluate, parse_expression, solve
from ptbench.fixtures.tasks.generalpoints import FACES, card_values, verify_expression
from ptbench.fixtures.tasks.loading import is_local
from ptbench.fixtures.tasks.math import last_boxed

# Example counts per split small enough to keep the whole module fast (the row-pool fixtures
# of math and cola are used whole: see _n).
N = {"arithmetic": 60, "generalpoints": 30}


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    return {name: get_task(name) for name in TASKS}


def _n(task: Task, split: str, seed: int = 0) -> int:
    """N for the generated tasks; every row of `split` for the row-pool fixtures."""
    return N[task.name] if task.name in N else task.size(split, seed)


def _whole(task: Task, split: str, seed: int, cap: int = 10**6) -> list[Example]:
    """Every example of `split` for `seed` (at most `cap`)."""
    if hasattr(task, "size"):
        return task.examples(split, min(task.size(split, seed), cap), seed)
    try:
        return task.examples(split, cap, seed)
    except ValueError as err:
        return task.examples(split, int(re.search(r"only (\d+) exist", str(err)).group(1)), seed)


def _corrupt(name: str, example: Example) -> str:
    """A wrong completion close to the demonstration."""
    demo = example.demonstration
    if name == "arithmetic":
        last = demo[-2]
        return demo[:-2] + str((int(last) + 1) % 10) + "."
    if name == "generalpoints":  # the same numbers, one operator changed, another value
        for old, new in [("+", "-"), ("*", "+"), ("-", "+"), ("/", "*")]:
            wrong = demo.replace(old, new, 1)
            if old in demo and abs(eval(wrong[:-1]) - example.meta["target"]) > 1e-9:  # noqa: S307
                return wrong
        raise AssertionError(f"no corruption of {demo!r}")
    if name == "math":
        return demo[: demo.rfind("\\boxed")] + "\\boxed{" + example.answer + "+1}"
    return " no." if example.answer == "yes" else " yes."


# --- common interface -----------------------------------------------------------------------


def test_registry_and_get_task_errors():
    assert set(TASKS) == {"arithmetic", "generalpoints", "math", "cola"}
    with pytest.raises(ValueError, match="expected one of .*'arithmetic'.*got 'chess'"):
        get_task("chess")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['digits'\]; valid: .*id_digits"):
        get_task("arithmetic", digits=2)
    assert get_task("arithmetic", ops=["+", "-"]).config.ops == ("+", "-")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_interface_and_unknown_split(tasks, name):
    task = tasks[name]
    assert isinstance(task, Task) and task.name == name
    with pytest.raises(ValueError, match=re.escape(f"split: expected one of {SPLITS}, got 'test'")):
        task.examples("test", 1)
    with pytest.raises(ValueError, match="n: expected a non-negative int"):
        task.examples("train", -1)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_deterministic_for_a_seed(tasks, name):
    fresh = get_task(name)
    for split in SPLITS:
        n = _n(fresh, split, seed=3)
        assert tasks[name].examples(split, n, seed=3) == fresh.examples(split, n, seed=3)
    n = _n(fresh, "train", seed=3)
    assert tasks[name].corpus(n, seed=3) == fresh.corpus(n, seed=3)


@pytest.mark.parametrize("name", ["arithmetic", "generalpoints"])
def test_seeds_differ_and_longer_requests_extend_shorter_ones(tasks, name):
    task = tasks[name]
    for split in SPLITS:
        a, b = task.examples(split, N[name], seed=0), task.examples(split, N[name], seed=1)
        assert a != b
        assert task.examples(split, N[name] // 2, seed=0) == a[: N[name] // 2]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_train_and_id_are_disjoint(tasks, name):
    task = tasks[name]
    for seed in (0, 1):
        n_train = {"arithmetic": 3000, "generalpoints": 1500}.get(name) or task.size("train", seed)
        n_id = {"arithmetic": 500, "generalpoints": 200}.get(name) or task.size("id", seed)
        train = {e.prompt for e in task.examples("train", n_train, seed)}
        ids = task.examples("id", n_id, seed)
        assert len(train) == n_train and len({e.prompt for e in ids}) == n_id
        assert not train & {e.prompt for e in ids}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_demonstration_earns_reward_and_corrupted_ones_do_not(tasks, name):
    task = tasks[name]
    for split in SPLITS:
        examples = task.examples(split, _n(task, split), seed=0)
        assert len(examples) == _n(task, split) > 0
        for ex in examples:
            assert task.reward(ex, ex.demonstration) == 1.0, (split, ex)
            assert task.reward(ex, _corrupt(name, ex)) == 0.0, (split, ex)
            assert task.reward(ex, "") == 0.0


@pytest.mark.parametrize("name", sorted(TASKS))
def test_corpus_is_prompt_plus_demonstration_of_training_examples(tasks, name):
    task = tasks[name]
    n = _n(task, "train")
    assert task.corpus(n) == [e.prompt + e.demonstration for e in task.examples("train", n)]


def test_character_alphabets_are_small(tasks):
    arithmetic = set("".join(tasks["arithmetic"].corpus(2000)))
    assert arithmetic == set("0123456789+=.")
    assert set("".join(get_task("arithmetic", ops=("+", "-")).corpus(500))) <= set("0123456789+-=.")
    points = set("".join(tasks["generalpoints"].corpus(1000)))
    ood = set("".join(e.prompt + e.demonstration for e in tasks["generalpoints"].examples("ood", 200)))
    assert ood <= points <= set("0123456789AJQK,=+-*/().")


def test_permutation_is_a_lazy_uniform_shuffle():
    assert sorted(permutation(1000, seeded_rng("x"))) == list(range(1000))
    first = list(itertools.islice(permutation(10**12, seeded_rng("y")), 5))
    assert len(set(first)) == 5 and first == list(itertools.islice(permutation(10**12, seeded_rng("y")), 5))
    # Uniform: over 12000 seeds each of the 3! = 6 orders of range(3) comes up 2000 times on
    # average (sd sqrt(12000 * 1/6 * 5/6) = 41). A shuffle drawing j from the whole range (27
    # equally likely draws: orders at 4/27 or 5/27, 1778 or 2222 times) or Sattolo's j > i (only
    # the 2 cyclic orders) lands far outside 2000 +- 150; so does the identity (one order).
    counts = Counter(tuple(permutation(3, seeded_rng("u", seed))) for seed in range(12000))
    assert len(counts) == 6 and all(1850 <= c <= 2150 for c in counts.values()), counts


_EXAMPLES_IN_A_FRESH_PROCESS = """
import json
from ptbench.fixtures.tasks import SPLITS, get_task
print(json.dumps({name: [[e.prompt, e.demonstration] for split in SPLITS
                         for e in get_task(name).examples(split, 20, seed=3)]
                  for name in ("arithmetic", "generalpoints")}))
"""


def test_examples_do_not_depend_on_the_hash_seed(tasks):
    """Two calls in one process share its hash seed; a split drawn through hash() would pass
    test_deterministic_for_a_seed and still change from run to run."""
    here = {name: [[e.prompt, e.demonstration] for split in SPLITS
                   for e in tasks[name].examples(split, 20, seed=3)]
            for name in ("arithmetic", "generalpoints")}
    for hash_seed in ("0", "1"):
        done = subprocess.run([sys.executable, "-c", _EXAMPLES_IN_A_FRESH_PROCESS],
                              env={**os.environ, "PYTHONHASHSEED": hash_seed},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
        assert json.loads(done.stdout) == here, f"PYTHONHASHSEED={hash_seed}"


def _problem(name: str, example: Example) -> object:
    """What makes two examples the same problem: the prompt, and for GeneralPoints also the card
    values (a face-card prompt is another problem under the OOD values)."""
    if name == "generalpoints":
        return example.prompt, tuple(example.meta["values"])
    return example.prompt


@pytest.mark.parametrize("name", sorted(TASKS))
def test_val_is_disjoint_from_train_id_and_ood_and_deterministic(tasks, name):
    task = tasks[name]
    for seed in (0, 1):
        val = _whole(task, "val", seed)
        assert len(val) >= 1 and len({e.prompt for e in val}) == len(val)
        assert val == get_task(name).examples("val", len(val), seed), "deterministic for a seed"
        train = {e.prompt for e in _whole(task, "train", seed)}
        ids = {e.prompt for e in _whole(task, "id", seed)}
        ood = {_problem(name, e) for e in _whole(task, "ood", seed, 20000)}
        assert not {e.prompt for e in val} & (train | ids), "no val deal in train or id"
        assert not {_problem(name, e) for e in val} & ood
    assert _whole(task, "val", 0) != _whole(task, "val", 1)


@pytest.mark.parametrize("name", ["generalpoints", "math", "cola"])
def test_val_leaves_existing_draws_unchanged(tasks, name):
    """"val" came after published figures: "train", "id" and "ood" draws must not move. These
    digests are of the draws made before "val" existed (train at today's largest count)."""
    def digest(examples):
        rows = [[e.prompt, e.demonstration, e.answer] for e in examples]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]

    expected = {
        "generalpoints": {0: {"train": (20476, "e095de36a58a0962"), "id": (200, "90aa4c51fc65db8a"),
                              "ood": (14057, "e720b1dc4ec469d5")},
                          1: {"train": (2000, "3c8e9e35749bf648"), "id": (200, "05b4ef9078efae83"),
                              "ood": (2000, "02d9457f11192bd1")}},
        "math": {0: {"train": (3, "d815787e65a6f095"), "id": (4, "130b7c246364e868"),
                     "ood": (6, "3ce3e772631f2408")},
                 1: {"train": (3, "011ca0f3ee7e9cd1"), "id": (4, "4aba7fe9f5849515"),
                     "ood": (6, "7ea1807860e1880a")}},
        "cola": {0: {"train": (5, "c7a663da34579527"), "id": (6, "85ae967ac7bb46ca"),
                     "ood": (8, "e76f4855ade5586a")},
                 1: {"train": (5, "959aa54fc712f36d"), "id": (6, "245c1909bf760edd"),
                     "ood": (8, "4a4c122512023606")}},
    }[name]
    for seed, splits in expected.items():
        for split, (n, want) in splits.items():
            assert digest(tasks[name].examples(split, n, seed)) == want, (seed, split)
    if name == "generalpoints":  # "train" now ends where "val" begins
        with pytest.raises(ValueError, match="asked for 20477 'train' hands, only 20476 exist"):
            tasks[name].examples("train", 20477, seed=0)


def test_generalpoints_val_is_the_tail_of_training_order_and_extends_with_val_size(tasks):
    task = tasks["generalpoints"]
    assert task.config.val_size == 200
    assert len(task.examples("val", 200)) == 200
    with pytest.raises(ValueError, match="asked for 201 'val' hands"):
        task.examples("val", 201)
    small = GeneralPointsTask(val_size=50)
    assert small.examples("val", 50, seed=4) == task.examples("val", 50, seed=4)
    assert len(small.examples("train", 20526, seed=4)) == 20526, "a smaller val leaves train more"
    assert all(task.reward(e, e.demonstration) == 1.0 and e.meta["face_values"] == [10, 10, 10]
               for e in task.examples("val", 200, seed=4))


@pytest.mark.parametrize("options", [{"ood_face_only": False}, {"ood_face_values": (10, 12, 13)}])
def test_generalpoints_val_skips_hands_that_are_ood_problems_too(options):
    """With face-free OOD hands, or J worth 10 in both, an ID hand can be an OOD problem as it
    stands (same cards, same values): "val" holds none of them."""
    task = GeneralPointsTask(**options)
    val = {_problem("generalpoints", e) for e in task.examples("val", 200, seed=1)}
    ood = {_problem("generalpoints", e) for e in _whole(task, "ood", 1, 30000)}
    assert not val & ood
    assert {_problem("generalpoints", e) for e in task.examples("id", 200, seed=1)} & ood, \
        "id may hold such hands (it is unchanged), so the check above has teeth"


def test_generalpoints_multiset_val_shares_no_problem_with_id_up_to_card_order():
    task = GeneralPointsTask(id_disjoint="multiset")
    for seed in (0, 2):
        val = {tuple(sorted(e.meta["values"])) for e in task.examples("val", 200, seed)}
        assert not val & {tuple(sorted(e.meta["values"])) for e in task.examples("id", 200, seed)}


@pytest.mark.parametrize("cls", [MathTask, ColaTask])
def test_row_pool_val_size_carves_the_end_of_train_order(cls):
    default, wider = cls(), cls(val_size=3)
    for seed in (0, 5):
        n_train = wider.size("train", seed)
        assert (n_train, wider.size("val", seed)) == (default.size("train", seed) - 2, 3)
        assert wider.examples("train", n_train, seed) == default.examples("train", n_train, seed), \
            "the train order does not depend on val_size"
        assert wider.examples("val", 1, seed) == default.examples("val", 1, seed), "val extends"
        assert not {e.prompt for e in wider.examples("val", 3, seed)} & {
            e.prompt for e in default.examples("train", n_train, seed)}
    too_many = cls(val_size=default.size("train") + default.size("val"))
    config = cls.__name__.removesuffix("Task") + "Config"
    with pytest.raises(ValueError, match=rf"{config}.val_size: expected fewer than the \d+ training "
                                         r"rows \(train keeps at least one\)"):
        too_many.examples("train", 1)


def test_row_pool_val_defaults_to_200_rows_of_a_large_training_source(tmp_path):
    rows = [{"sentence": f"Sentence number {i} is fine.", "label": i % 2} for i in range(40)]
    train = [{"sentence": f"Training sentence {i}.", "label": i % 2} for i in range(1000)]
    task = ColaTask(source=_write_jsonl(tmp_path / "cola.jsonl", rows),
                    train_source=_write_jsonl(tmp_path / "train.jsonl", train))
    assert {s: task.size(s) for s in SPLITS} == {"train": 800, "val": 200, "id": 40, "ood": 0}
    val = {e.prompt for e in task.examples("val", 200, seed=1)}
    others = task.examples("train", 800, seed=1) + task.examples("id", 40, seed=1)
    assert not val & {e.prompt for e in others}


# --- arithmetic -----------------------------------------------------------------------------


def test_arithmetic_format_reverses_the_answer(tasks):
    for ex in tasks["arithmetic"].examples("train", 200):
        a, b = ex.meta["operands"]
        assert ex.prompt == f"{a}+{b}=" and ex.answer == str(a + b)
        assert ex.demonstration == ex.answer[::-1] + "." and ex.meta["digits"] == 2


def test_arithmetic_reward_reads_reversed_digits_up_to_the_end_marker():
    task = ArithmeticTask()
    ex = Example(prompt="47+85=", demonstration="231.", answer="132")
    assert task.reward(ex, "231.") == 1.0
    assert task.reward(ex, "231.99+1=7.") == 1.0, "text after the end marker is ignored"
    assert task.reward(ex, " 231 .") == 1.0
    assert task.reward(ex, "231") == 1.0, "no end marker: the whole completion"
    for wrong in ("132.", "23.", "2311.", "2 31.", "-231.", "abc.", ".231", "", "."):
        assert task.reward(ex, wrong) == 0.0, wrong


def test_arithmetic_ood_has_longer_operands_and_subtraction_is_non_negative(tasks):
    assert all(len(str(x)) == 2 for e in tasks["arithmetic"].examples("id", 100)
               for x in e.meta["operands"])
    ood = tasks["arithmetic"].examples("ood", 100)
    assert all(len(str(x)) == 3 and e.meta["digits"] == 3 for e in ood for x in e.meta["operands"])
    task = ArithmeticTask(ops=("+", "-"))
    examples = task.examples("train", 400) + task.examples("ood", 200)
    assert {e.meta["op"] for e in examples} == {"+", "-"}
    for e in examples:
        a, b = e.meta["operands"]
        assert int(e.answer) == (a + b if e.meta["op"] == "+" else a - b) >= 0
        assert task.reward(e, e.demonstration) == 1.0


def test_arithmetic_splits_cover_the_problem_space_without_overlap():
    task = ArithmeticTask(id_size=100, val_size=200)
    train, ids, val = task.examples("train", 7800), task.examples("id", 100), task.examples("val", 200)
    assert len({e.prompt for e in train + ids + val}) == 8100, "every 2-digit sum, each once"
    with pytest.raises(ValueError, match="asked for 7801 'train' problems, only 7800 exist"):
        task.examples("train", 7801)
    with pytest.raises(ValueError, match="asked for 101 'id' problems, only 100 exist"):
        task.examples("id", 101)


@pytest.mark.parametrize(("options", "field"), [
    ({"ops": ("*",)}, "ops"), ({"ops": "+"}, "ops"), ({"ops": ("+", "+")}, "ops"),
    ({"id_digits": 0}, "id_digits"), ({"ood_digits": 2}, "ood_digits"),
    ({"id_size": 8100}, "id_size"),
])
def test_arithmetic_config_is_validated(options, field):
    with pytest.raises(ValueError, match=f"ArithmeticConfig.{field}: expected"):
        ArithmeticTask(**options)


# --- GeneralPoints --------------------------------------------------------------------------


def _naive_solvable(values: list[int], target: int = 24) -> bool:
    """Reference: every ordering, operator choice and one of the five bracketings."""
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: None if b == 0 else a / b}

    def ap(op, a, b):
        return None if a is None or b is None else ops[op](a, b)

    for a, b, c, d in itertools.permutations(Fraction(v) for v in values):
        for x, y, z in itertools.product(ops, repeat=3):
            trees = (ap(z, ap(y, ap(x, a, b), c), d), ap(z, ap(x, a, ap(y, b, c)), d),
                     ap(z, ap(x, a, b), ap(y, c, d)), ap(x, a, ap(z, ap(y, b, c), d)),
                     ap(x, a, ap(y, b, ap(z, c, d))))
            if target in trees:
                return True
    return False


def test_solver_agrees_with_naive_search_and_its_answers_verify():
    rng = random.Random(0)
    hands = [(1, 1, 1, 1), (3, 3, 8, 8), (1, 5, 5, 5), (4, 4, 10, 10), (1, 2, 7, 7)]
    hands += [tuple(rng.randint(1, 13) for _ in range(4)) for _ in range(30)]
    for hand in hands:
        solution = solve(tuple(sorted(hand)))
        assert (solution is not None) == _naive_solvable(list(hand)), hand
        if solution is not None:
            assert verify_expression(solution, list(hand), 24), (hand, solution)
    assert solve((3, 3, 8, 8)) == solve((8, 3, 8, 3)) is not None, "needs 8/(3-8/3)"


def test_generalpoints_format_and_face_values(tasks):
    # By hand, not through card_values (which the task itself uses): A is 1, number cards their
    # number, J Q K 10 in distribution (ID) and 11 12 13 out of it (OOD).
    id_values = {"A": 1, "J": 10, "Q": 10, "K": 10, **{str(n): n for n in range(2, 11)}}
    ood_values = {**id_values, "J": 11, "Q": 12, "K": 13}
    assert card_values(["A", "7", "10", "K"], (10, 10, 10)) == [1, 7, 10, 10]
    assert card_values(["J", "Q", "K", "A"], (11, 12, 13)) == [11, 12, 13, 1]
    task = tasks["generalpoints"]
    for ex in task.examples("id", 30):
        cards = ex.prompt[:-1].split(",")
        assert ex.prompt.endswith("=") and len(cards) == 4
        assert ex.meta["values"] == [id_values[c] for c in cards]
        assert ex.demonstration == ex.answer + "." and not ex.answer.startswith("((((")
    for ex in task.examples("ood", 30):
        assert ex.meta["cards"] == ex.prompt[:-1].split(",")
        assert any(c in FACES for c in ex.meta["cards"]), "every OOD hand holds a face card"
        assert ex.meta["values"] == [ood_values[c] for c in ex.meta["cards"]]
        assert {11, 12, 13} & set(ex.meta["values"])


def test_generalpoints_solution_under_id_values_is_rejected_under_ood_values(tasks):
    task, checked = tasks["generalpoints"], 0
    for ood in task.examples("ood", 30):
        id_values = card_values(ood.meta["cards"], (10, 10, 10))
        id_solution = solve(tuple(sorted(id_values)))
        if id_solution is None:
            continue
        as_id = dataclasses.replace(ood, meta={**ood.meta, "values": id_values})
        assert task.reward(as_id, id_solution + ".") == 1.0
        assert task.reward(ood, id_solution + ".") == 0.0, (ood.meta["cards"], id_solution)
        checked += 1
    assert checked >= 5


def test_generalpoints_ood_may_include_hands_without_face_cards():
    task = GeneralPointsTask(ood_face_only=False)
    examples = task.examples("ood", 40)
    assert not all(any(c in FACES for c in e.meta["cards"]) for e in examples)
    assert all(task.reward(e, e.demonstration) == 1.0 for e in examples)


def test_generalpoints_train_and_id_share_no_deal(tasks):
    task = tasks["generalpoints"]
    train = {tuple(e.meta["cards"]) for e in task.examples("train", 1500, seed=2)}
    ids = [tuple(e.meta["cards"]) for e in task.examples("id", 200, seed=2)]
    assert not train & set(ids)
    values = {tuple(sorted(e.meta["values"])) for e in task.examples("train", 1500, seed=2)}
    assert any(tuple(sorted(e.meta["values"])) in values for e in task.examples("id", 200, seed=2)), \
        "by default an id deal may hold a training deal's values in another order"


def test_generalpoints_multiset_split_shares_no_problem_up_to_card_order():
    task = GeneralPointsTask(id_disjoint="multiset")
    train = task.examples("train", 1500, seed=2)
    ids = task.examples("id", 200, seed=2)
    assert not {tuple(sorted(e.meta["values"])) for e in train} & {
        tuple(sorted(e.meta["values"])) for e in ids}


def test_generalpoints_verifier_is_strict_and_never_raises():
    task = GeneralPointsTask()
    ex = Example(prompt="K,5,3,A=", demonstration="", answer="", meta={"values": [10, 5, 3, 1],
                                                                       "target": 24})
    assert task.reward(ex, "(10+1-3)*(5-2).") == 0.0, "uses 2, not a card"
    assert task.reward(ex, "(10*3)-(5+1).") == 1.0
    assert task.reward(ex, "(10*3)-(5+1). anything after the end marker") == 1.0
    assert task.reward(ex, "30-(5+1).") == 0.0, "30 is not a card"
    assert task.reward(ex, "((10-5)*3)+9.") == 0.0, "9 is not a card"
    assert task.reward(ex, "(10*3)-5-1+1.") == 0.0, "a card used twice"
    assert task.reward(ex, "(10*3)-5.") == 0.0, "a card left out"
    assert task.reward(ex, "(10*3)+(5+1).") == 0.0, "36, not 24"
    assert task.reward(ex, "10*3-5-1") == 1.0, "precedence, no end marker"
    for malformed in ("((", "", "1/0.", ".", "(10*3)-(5+1", "10*3)-(5+1).", "24.",
                      "-(5+1)+(10*3).", "10**3-5-1.", "(10*3)-(5+01).", "import os.",
                      "(" * 5000 + "1" + ")" * 5000, "1" * 10000, "(10*3)-(5+1)x"):
        assert task.reward(ex, malformed) == 0.0, malformed
    assert task.reward(Example("", "", "", {"values": [3, 3, 8, 8], "target": 24}), "8/(3-3)*8.") == 0.0
    assert verify_expression("8/(3-(8/3))", [3, 3, 8, 8], 24)
    assert evaluate(parse_expression("8/(3-3)")) is None
    assert parse_expression("((((") is None and parse_expression("2+") is None


def test_generalpoints_config_is_validated():
    with pytest.raises(ValueError, match="GeneralPointsConfig.ood_face_values: expected values other"):
        GeneralPointsTask(ood_face_values=(10, 10, 10))
    with pytest.raises(ValueError, match="GeneralPointsConfig.id_face_values: expected three"):
        GeneralPointsTask(id_face_values=(10, 10))
    with pytest.raises(ValueError, match="GeneralPointsConfig.target: expected a positive int"):
        GeneralPointsTask(target=0)
    with pytest.raises(ValueError, match="GeneralPointsConfig.id_disjoint: expected 'hand' or"):
        GeneralPointsTask(id_disjoint="deal")
    with pytest.raises(ValueError, match="asked for 201 'id' hands"):
        GeneralPointsTask().examples("id", 201)
    for bad in (0, 2001, True, 20.0):
        with pytest.raises(ValueError, match="GeneralPointsConfig.val_size: expected an int in"):
            GeneralPointsTask(val_size=bad)
    assert GeneralPointsConfig(val_size=7).val_size == 7


# --- math -----------------------------------------------------------------------------------


def test_last_boxed_extraction():
    assert last_boxed(r"so $\boxed{\frac{1}{2}}$.") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{1} then \boxed{2} done") == "2"
    assert last_boxed(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"
    assert last_boxed(r"\boxed {x^{2}}") == "x^{2}"
    assert last_boxed(r"\boxed{1} and \boxed{\frac{1}{2}") is None, "the last one is unclosed"
    assert last_boxed("the answer is 5") is None and last_boxed(r"\boxed") is None


def test_math_reward_is_math_verify_on_the_last_boxed_answer():
    task = MathTask()
    half = Example(prompt="", demonstration="", answer=r"\frac{1}{2}")
    assert task.reward(half, r"... so the answer is $\boxed{0.5}$.") == 1.0
    assert task.reward(dataclasses.replace(half, answer="0.5"), r"\boxed{\frac{1}{2}}") == 1.0
    assert task.reward(half, r"\boxed{\frac{2}{4}}") == 1.0
    assert task.reward(half, r"first \boxed{3}, finally \boxed{\frac{1}{2}}") == 1.0
    assert task.reward(half, r"first \boxed{\frac{1}{2}}, finally \boxed{3}") == 0.0
    assert task.reward(half, r"the answer is \frac{1}{2}") == 0.0, "no boxed answer"
    assert task.reward(half, r"\boxed{\frac{1}{") == 0.0
    assert task.reward(half, r"\boxed{}") == 0.0
    assert task.reward(half, r"\boxed{\frac{1}{2}\unknowncommand{{}") == 0.0


def test_math_reward_works_in_worker_threads():
    from concurrent.futures import ThreadPoolExecutor

    task = MathTask()
    examples = task.examples("ood", 6)
    with ThreadPoolExecutor(2) as pool:
        rewards = list(pool.map(lambda e: task.reward(e, e.demonstration), examples))
    assert rewards == [1.0] * 6


def test_math_fixture_splits_by_subject_and_prompt_is_qwen_math_chatml():
    task = MathTask()
    sizes = {s: task.size(s) for s in SPLITS}
    assert sizes == {"train": 3, "val": 1, "id": 4, "ood": 6}
    id_subjects = {"Prealgebra", "Algebra"}
    assert all(e.meta["subject"] in id_subjects for s in ("train", "val", "id")
               for e in task.examples(s, sizes[s]))
    assert not id_subjects & {e.meta["subject"] for e in task.examples("ood", 6)}
    ex = task.examples("ood", 1)[0]
    problem = ex.prompt.split("<|im_start|>user\n")[1].split("<|im_end|>")[0]
    assert ex.prompt == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within "
        f"\\boxed{{}}.<|im_end|>\n<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert set(ex.meta) == {"subject", "level", "unique_id"}
    only_geometry = MathTask(ood_subjects=("Geometry",))
    assert {e.meta["subject"] for e in only_geometry.examples("ood", 2)} == {"Geometry"}
    with pytest.raises(ValueError, match="asked for 5 'id' problems, only 4 exist"):
        task.examples("id", 5)


def test_math_prompt_uses_a_tokenizer_chat_template():
    from ptbench.fixtures.models import train_tokenizer

    tok = train_tokenizer(["abc"], vocab_size=16)
    tok.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
        "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    with_template, literal = MathTask(tokenizer=tok), MathTask()
    assert with_template.examples("id", 2) == literal.examples("id", 2)
    tok.chat_template = tok.chat_template.replace("<|im_start|>' + m", "[' + m")
    assert with_template.examples("id", 1)[0].prompt.startswith("[system\n")


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_math_loads_a_local_file_and_reports_missing_ones(tmp_path):
    rows = [{"problem": f"What is ${i}+{i}$?", "solution": f"$\\boxed{{{2 * i}}}$",
             "answer": str(2 * i), "subject": "Algebra" if i % 2 else "Geometry", "level": 1,
             "unique_id": f"t/{i}.json"} for i in range(10)]
    source = _write_jsonl(tmp_path / "eval.jsonl", rows)
    train = _write_jsonl(tmp_path / "train.jsonl", rows[:2] + [
        {"problem": "What is $70+70$?", "solution": "$\\boxed{140}$", "answer": "140"}])
    task = MathTask(source=source, train_source=train)
    assert {s: task.size(s) for s in SPLITS} == {"train": 1, "val": 0, "id": 5, "ood": 5}, \
        "overlap removed; one training row is too few to spare one for val"
    assert task.reward(task.examples("train", 1)[0], "\\boxed{140}") == 1.0
    with pytest.raises(FileNotFoundError, match="data file not found: .*nope.jsonl"):
        MathTask(source=str(tmp_path / "nope.jsonl")).examples("id", 1)
    _write_jsonl(tmp_path / "bad.jsonl", [{"problem": "p", "solution": "s"}])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['answer', 'subject'\]"):
        MathTask(source=str(tmp_path / "bad.jsonl")).examples("id", 1)
    assert is_local(source) and is_local("./data.jsonl") and is_local("~/x.csv")
    assert not is_local("HuggingFaceH4/MATH-500"), "hub ids go to load_dataset(hub_id, split=...)"
    assert not is_local(str(tmp_path)), "a dataset folder goes to load_dataset(folder, split=...)"


@pytest.mark.parametrize(("options", "field"), [
    ({"id_fraction": 1.0}, "id_fraction"), ({"id_subjects": ()}, "id_subjects"),
    ({"ood_subjects": ("Algebra",)}, "ood_subjects"), ({"source": ""}, "source"),
    ({"val_size": 0}, "val_size"), ({"val_size": 2.0}, "val_size"),
    ({"val_size": True}, "val_size"),
])
def test_math_config_is_validated(options, field):
    with pytest.raises(ValueError, match=f"MathConfig.{field}: expected"):
        MathTask(**options)


# --- CoLA -----------------------------------------------------------------------------------


def test_cola_fixture_format_and_domains(tasks):
    task = tasks["cola"]
    assert {s: task.size(s) for s in SPLITS} == {"train": 5, "val": 1, "id": 6, "ood": 8}
    ex = task.examples("ood", 8)
    assert all(e.meta["domain"] == "out" for e in ex)
    assert {e.answer for e in ex} == {"yes", "no"}
    assert ex[0].prompt.startswith("Sentence: ") and ex[0].prompt.endswith("\nGrammatical:")
    assert ex[0].demonstration == f" {ex[0].answer}."
    assert all(e.meta["domain"] == "in" for s in ("train", "val", "id")
               for e in task.examples(s, task.size(s)))


def test_cola_reward_reads_the_first_word():
    task = ColaTask()
    yes = Example(prompt="Sentence: The cat sat.\nGrammatical:", demonstration=" yes.", answer="yes")
    for right in (" yes.", "yes", " Yes, it is.", "\nYES"):
        assert task.reward(yes, right) == 1.0, right
    for wrong in (" no.", " yess.", " y", "", " . yes", " not yes"):
        assert task.reward(yes, wrong) == 0.0, wrong


def test_cola_loads_jsonl_without_domain_and_rejects_bad_labels(tmp_path):
    rows = [{"sentence": f"Sentence number {i} is fine.", "label": i % 2} for i in range(6)]
    task = ColaTask(source=_write_jsonl(tmp_path / "cola.jsonl", rows))
    assert {s: task.size(s) for s in SPLITS} == {"train": 2, "val": 1, "id": 3, "ood": 0}
    assert task.examples("ood", 0) == []
    with pytest.raises(ValueError, match="asked for 1 'ood' sentences, only 0 exist"):
        task.examples("ood", 1)
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"sentence": "x", "label": 2}])
    with pytest.raises(ValueError, match="row 0: label: expected 0 or 1, got 2"):
        ColaTask(source=bad).examples("id", 1)
    with pytest.raises(ValueError, match="ColaConfig.val_size: expected None or a positive int"):
        ColaTask(val_size=-1)


def test_examples_are_frozen():
    ex = ArithmeticTask().examples("id", 1)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.prompt = "x"  # type: ignore[misc]
