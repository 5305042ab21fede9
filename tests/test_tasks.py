"""Post-training tasks: splits, determinism, verifiable demonstrations and robust verifiers."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
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

# Example counts per split small enough to keep the whole module fast.
N = {"arithmetic": 60, "generalpoints": 30, "math": 4, "cola": 6}


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    return {name: get_task(name) for name in TASKS}


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
    with pytest.raises(ValueError, match=r"split: expected one of \('train', 'id', 'ood'\), got 'test'"):
        task.examples("test", 1)
    with pytest.raises(ValueError, match="n: expected a non-negative int"):
        task.examples("train", -1)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_deterministic_for_a_seed(tasks, name):
    fresh = get_task(name)
    for split in SPLITS:
        assert tasks[name].examples(split, N[name], seed=3) == fresh.examples(split, N[name], seed=3)
    assert tasks[name].corpus(N[name], seed=3) == fresh.corpus(N[name], seed=3)


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
        n_train = {"arithmetic": 3000, "generalpoints": 1500}.get(name, N[name])
        n_id = {"arithmetic": 500, "generalpoints": 200}.get(name, N[name])
        train = {e.prompt for e in task.examples("train", n_train, seed)}
        ids = task.examples("id", n_id, seed)
        assert len(train) == n_train and len({e.prompt for e in ids}) == n_id
        assert not train & {e.prompt for e in ids}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_demonstration_earns_reward_and_corrupted_ones_do_not(tasks, name):
    task = tasks[name]
    for split in SPLITS:
        examples = task.examples(split, N[name], seed=0)
        assert len(examples) == N[name]
        for ex in examples:
            assert task.reward(ex, ex.demonstration) == 1.0, (split, ex)
            assert task.reward(ex, _corrupt(name, ex)) == 0.0, (split, ex)
            assert task.reward(ex, "") == 0.0


@pytest.mark.parametrize("name", sorted(TASKS))
def test_corpus_is_prompt_plus_demonstration_of_training_examples(tasks, name):
    task = tasks[name]
    assert task.corpus(N[name]) == [e.prompt + e.demonstration for e in task.examples("train", N[name])]


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
from ptbench.fixtures.tasks import get_task
print(json.dumps({name: [[e.prompt, e.demonstration] for split in ("train", "id", "ood")
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
    task = ArithmeticTask(id_size=100)
    train, ids = task.examples("train", 8000), task.examples("id", 100)
    assert len({e.prompt for e in train + ids}) == 8100, "every 2-digit sum, each once"
    with pytest.raises(ValueError, match="asked for 8001 'train' problems, only 8000 exist"):
        task.examples("train", 8001)
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
    assert sizes == {"train": 4, "id": 4, "ood": 6}
    id_subjects = {"Prealgebra", "Algebra"}
    assert all(e.meta["subject"] in id_subjects for s in ("train", "id") for e in task.examples(s, 4))
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
    assert {s: task.size(s) for s in SPLITS} == {"train": 1, "id": 5, "ood": 5}, "overlap removed"
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
])
def test_math_config_is_validated(options, field):
    with pytest.raises(ValueError, match=f"MathConfig.{field}: expected"):
        MathTask(**options)


# --- CoLA -----------------------------------------------------------------------------------


def test_cola_fixture_format_and_domains(tasks):
    task = tasks["cola"]
    assert {s: task.size(s) for s in SPLITS} == {"train": 6, "id": 6, "ood": 8}
    ex = task.examples("ood", 8)
    assert all(e.meta["domain"] == "out" for e in ex)
    assert {e.answer for e in ex} == {"yes", "no"}
    assert ex[0].prompt.startswith("Sentence: ") and ex[0].prompt.endswith("\nGrammatical:")
    assert ex[0].demonstration == f" {ex[0].answer}."
    assert all(e.meta["domain"] == "in" for s in ("train", "id") for e in task.examples(s, 6))


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
    assert {s: task.size(s) for s in SPLITS} == {"train": 3, "id": 3, "ood": 0}
    assert task.examples("ood", 0) == []
    with pytest.raises(ValueError, match="asked for 1 'ood' sentences, only 0 exist"):
        task.examples("ood", 1)
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"sentence": "x", "label": 2}])
    with pytest.raises(ValueError, match="row 0: label: expected 0 or 1, got 2"):
        ColaTask(source=bad).examples("id", 1)


def test_examples_are_frozen():
    ex = ArithmeticTask().examples("id", 1)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.prompt = "x"  # type: ignore[misc]
