"""`--set key.path=value` overrides: walked against the config schema, errors name the override."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from ptbench.pipelines.config import (
    ConfigError,
    DeepSpeedConfig,
    PipelineConfig,
    from_dict,
    load_config,
)
from ptbench.pipelines.overrides import apply_overrides

ROOT = Path(__file__).resolve().parents[1]
SFT_THEN_RL = ROOT / "configs" / "tiny" / "sft_then_rl-arithmetic.yaml"

DATA = {
    "name": "t", "model": "tiny:probe-qwen2", "task": {"name": "arithmetic"},
    "base": {"steps": 3, "batch_size": 8},
    "stages": [
        {"kind": "sft", "steps": 3, "batch_size": 8},
        {"kind": "rl", "steps": 4, "lr": 1e-4, "batch_size": 2, "group_size": 3},
    ],
}


def apply(*overrides: str, data: dict | None = None) -> dict:
    return apply_overrides(DATA if data is None else data, list(overrides), PipelineConfig)


@pytest.mark.parametrize("override, expected", [
    # a missing '='
    ("stages.1.steps", ["expected key.path=value", "'stages.1.steps'", "no '='"]),
    # empty path segments
    ("stages..steps=3", ["empty segment 2", "'stages..steps'"]),
    (".seed=3", ["empty segment 1", "'.seed'"]),
    ("stages.1.=3", ["empty segment 3", "'stages.1.'"]),
    ("=3", ["empty key path"]),
    # unknown keys, with the keys valid there
    ("seeed=1", ["unknown key 'seeed'", "PipelineConfig", "seed", "stages", "deepspeed", "eval"]),
    ("base.stepz=1", ["unknown key 'stepz' in base", "steps, lr, batch_size"]),
    ("stages.1.grup_size=4", ["unknown key 'grup_size' in stages[1]", "group_size", "kl_coef"]),
    ("deepspeed.stage=2", ["unknown key 'stage' in deepspeed", "zero_stage", "offload_optimizer"]),
    # list indices out of range, naming the list's length
    ("stages.2.steps=3", ["index 2 out of range", "stages has 2 item(s)", "0 to 1"]),
    ("stages.-1.steps=3", ["index -1 out of range", "stages has 2 item(s)"]),
    # list indices that are not integers
    ("stages.rl.steps=3", ["stages is a list", "integer index", "got 'rl'"]),
    ("stages.1.5=3", ["unknown key '5' in stages[1]"]),
    # descending into a scalar
    ("task.name.digits=3", ["task.name is a scalar (str)", "got 'arithmetic'", "'digits'"]),
    ("stages.0.steps.x=1", ["stages[0].steps is a scalar (int)", "got 3", "'x'"]),
    ("seed.x=1", ["seed is a scalar (int)", "not set", "'x'"]),
    # a value that is not YAML
    ("eval.every=[1", ["value '[1' is not valid YAML"]),
])
def test_bad_override_names_the_override_and_what_it_got(override, expected):
    with pytest.raises(ConfigError) as info:
        apply(override)
    message = str(info.value)
    assert message.startswith(f"--set {override}: "), message
    for part in expected:
        assert part in message, (part, message)


def test_descending_into_a_scalar_the_file_put_where_a_section_goes():
    with pytest.raises(ConfigError, match=r"^--set base\.steps=2: base should be a mapping, got 5"):
        apply("base.steps=2", data={**DATA, "base": 5})
    with pytest.raises(ConfigError, match=r"^--set stages\.0\.steps=2: stages should be a list, "
                                          r"got 'sft'"):
        apply("stages.0.steps=2", data={**DATA, "stages": "sft"})


def test_an_absent_list_has_no_index_in_range():
    data = {k: v for k, v in DATA.items() if k != "stages"}
    with pytest.raises(ConfigError, match=r"index 0 out of range: stages has 0 item\(s\)"):
        apply("stages.0.steps=2", data=data)


def test_nested_set_keeps_the_siblings():
    out = apply("base.steps=7", "base.lr=1e-2")
    assert out["base"] == {"steps": 7, "batch_size": 8, "lr": "1e-2"}  # YAML: 1e-2 is a string
    assert from_dict(PipelineConfig, out).base.lr == pytest.approx(1e-2)  # ... coerced on load


def test_list_index_set_changes_only_that_item():
    out = apply("stages.1.steps=20", "stages.1.group_size=4")
    assert out["stages"][1] == {**DATA["stages"][1], "steps": 20, "group_size": 4}
    assert out["stages"][0] == DATA["stages"][0]
    config = from_dict(PipelineConfig, out)
    assert (config.stages[1].steps, config.stages[1].group_size) == (20, 4)


def test_fields_absent_from_the_file_are_added():
    out = apply("seed=3", "stages.0.micro_batch_size=2", "eval.every=5", "eval.max_new_tokens=null")
    assert out["seed"] == 3 and out["stages"][0]["micro_batch_size"] == 2
    assert out["eval"] == {"every": 5, "max_new_tokens": None}
    config = from_dict(PipelineConfig, out)
    assert (config.seed, config.stages[0].micro_batch_size, config.eval.every) == (3, 2, 5)


def test_any_key_under_a_dict_field():
    out = apply("task.options.id_digits=3", "task.options.ood_digits=[4, 5]",
                "hardware.gpus.count=8")
    assert out["task"] == {"name": "arithmetic", "options": {"id_digits": 3, "ood_digits": [4, 5]}}
    assert out["hardware"] == {"gpus": {"count": 8}}
    # existing options are kept
    data = {**DATA, "task": {"name": "arithmetic", "options": {"id_digits": 2, "x": 1}}}
    assert apply("task.options.id_digits=4", data=data)["task"]["options"] == {"id_digits": 4, "x": 1}


@pytest.mark.parametrize("section", ["absent", "null"])
def test_setting_a_field_of_an_absent_section_creates_it(section):
    data = DATA if section == "absent" else {**DATA, "deepspeed": None}
    out = apply("deepspeed.zero_stage=1", "deepspeed.offload_optimizer=true", data=data)
    assert out["deepspeed"] == {"zero_stage": 1, "offload_optimizer": True}
    assert from_dict(PipelineConfig, out).deepspeed == DeepSpeedConfig(zero_stage=1,
                                                                       offload_optimizer=True)


def test_values_are_yaml_and_a_later_override_wins():
    out = apply("stages.0.steps=5", "description=x=1, y=2", "stages.0.steps=9", "deepspeed=null",
                "stages.1.clip_eps_high=0.28", "name='007'")
    assert out["stages"][0]["steps"] == 9
    assert out["description"] == "x=1, y=2"  # only the first "=" splits
    assert out["deepspeed"] is None and out["stages"][1]["clip_eps_high"] == 0.28
    assert out["name"] == "007"


def test_the_input_is_not_mutated():
    data = copy.deepcopy(DATA)
    out = apply("stages.1.steps=20", "base.steps=1", "task.options.id_digits=3",
                "deepspeed.zero_stage=2", data=data)
    assert data == DATA
    assert out is not data and out["stages"][1] is not data["stages"][1]
    assert out["task"] is not data["task"]


def test_a_string_is_not_a_sequence_of_overrides():
    with pytest.raises(TypeError, match="one string"):
        apply_overrides(DATA, "stages.0.steps=2", PipelineConfig)


def test_load_config_applies_overrides_to_a_real_config():
    plain = load_config(SFT_THEN_RL)
    config = load_config(SFT_THEN_RL, overrides=["stages.1.steps=20", "base.steps=0",
                                                 "deepspeed.zero_stage=1"])
    assert plain.stages[1].steps != 20
    assert config.stages[1].steps == 20 and config.base.steps == 0
    assert config.deepspeed == DeepSpeedConfig(zero_stage=1)
    # everything else as in the file
    assert config.stages[0] == plain.stages[0] and config.task == plain.task
    assert config.stages[1].clip_eps_high == plain.stages[1].clip_eps_high


def test_a_value_of_the_wrong_type_is_caught_by_validation():
    with pytest.raises(ConfigError) as info:
        load_config(SFT_THEN_RL, overrides=["stages.1.steps=abc"])
    message = str(info.value)
    assert "config.stages[1].steps: expected int, got 'abc'" in message, message
    with pytest.raises(ConfigError, match=r"stages\[0\]\.steps: expected an integer >= 1, got 0"):
        load_config(SFT_THEN_RL, overrides=["stages.0.steps=0"])


def test_load_config_reports_a_bad_override_as_given():
    with pytest.raises(ConfigError, match=r"^--set stages\.7\.steps=1: index 7 out of range"):
        load_config(SFT_THEN_RL, overrides=["stages.7.steps=1"])
