"""`--set key.path=value` overrides of a pipeline config, applied to the raw mapping before
validation.

    ptbench run configs/tiny/sft_then_rl-arithmetic.yaml --out runs/x \\
        --set stages.1.steps=20 --set base.steps=0 --set task.options.id_digits=3

A key path walks the config schema (the dataclasses of `ptbench.pipelines.config`): a field
name (absent from the file: it is added; a section absent or null, e.g. `deepspeed.zero_stage=2`
with no `deepspeed:`, becomes a mapping), a list index (`stages.1`, in range), or any key under a
`dict` field (`task.options.id_digits`). The value is YAML (`20`, `1e-3`, `true`, `null`,
`[1, 2]`, `{every: 5}`). A path that cannot exist is a ConfigError naming the override; a value
of the wrong type is left to the validation that follows, which names the field and the value.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

import yaml

from ptbench.pipelines.config import ConfigError, type_name

_MISSING = object()


def apply_overrides(data: dict, overrides: Sequence[str], schema: type) -> dict:
    """A deep copy of `data` with each `key.path=value` of `overrides` applied in order (a
    later override of the same key wins). `schema` is the dataclass `data` describes."""
    if isinstance(overrides, str):
        raise TypeError("overrides: expected a sequence of 'key.path=value' strings, got one string")
    result = {} if data is None else copy.deepcopy(data)
    for override in overrides:
        _apply(result, override, schema)
    return result


def _unwrap_optional(tp: Any) -> Any:
    """`X | None` -> X (other unions are left alone)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _kind(tp: Any) -> str:
    """How a path descends through a value of type `tp`: 'dataclass', 'list', 'dict', 'any' or
    'scalar'."""
    tp = _unwrap_optional(tp)
    if dataclasses.is_dataclass(tp):
        return "dataclass"
    origin = typing.get_origin(tp) or tp
    if origin in (list, tuple):
        return "list"
    if origin is dict:
        return "dict"
    if tp is Any:
        return "any"
    return "scalar"


def _item_type(tp: Any) -> Any:
    """The type of a list's items or of a dict's values (Any when not parametrized)."""
    args = typing.get_args(_unwrap_optional(tp))
    if not args:
        return Any
    return args[-1] if typing.get_origin(_unwrap_optional(tp)) is dict else args[0]


def _apply(root: dict, override: str, schema: type) -> None:
    def fail(message: str) -> ConfigError:
        return ConfigError(f"--set {override}: {message}")

    if not isinstance(override, str):
        raise ConfigError(f"--set {override!r}: expected a 'key.path=value' string, "
                          f"got {type(override).__name__}")
    key, sep, text = override.partition("=")
    if not sep:
        raise fail(f"expected key.path=value, got {override!r} (no '=')")
    key = key.strip()
    if not key:
        raise fail(f"expected key.path=value, got an empty key path in {override!r}")
    segments = key.split(".")
    for i, segment in enumerate(segments):
        if not segment.strip():
            raise fail(f"empty segment {i + 1} in key path {key!r} (expected key.path=value, "
                       f"e.g. stages.1.steps=20)")
    segments = [s.strip() for s in segments]
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise fail(f"value {text!r} is not valid YAML ({problem})") from None

    container: Any = root  # what the path has reached (a mapping, a list or a scalar)
    tp: Any = schema  # its type in the schema
    where = "the top level"  # how a message names it
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        kind = _kind(tp)
        if kind == "any":  # a value under a dict field: go by what is there
            kind = ("list" if isinstance(container, list)
                    else "dict" if isinstance(container, dict) else "scalar")
        got = "not set" if container is _MISSING else repr(container)
        if kind == "scalar":
            raise fail(f"{where} is a scalar ({type_name(_unwrap_optional(tp))}), got {got}: it has no key "
                       f"{segment!r}")
        expected = list if kind == "list" else dict
        if not isinstance(container, expected):
            raise fail(f"{where} should be {'a list' if kind == 'list' else 'a mapping'}, got "
                       f"{got}: cannot look up {segment!r} in it")
        if kind == "list":
            if not re.fullmatch(r"-?[0-9]+", segment):
                raise fail(f"{where} is a list: expected an integer index, got {segment!r}")
            index = int(segment)
            if not 0 <= index < len(container):
                raise fail(f"index {index} out of range: {where} has {len(container)} item(s)"
                           + (f" (indices 0 to {len(container) - 1})" if container else ""))
            child_tp, slot = _item_type(tp), index
            child_where = f"{where}[{index}]"
        elif kind == "dataclass":
            cls = _unwrap_optional(tp)
            hints = typing.get_type_hints(cls)
            fields = [f.name for f in dataclasses.fields(cls) if f.init]
            if segment not in fields:
                place = f"at {where}" if depth == 0 else f"in {where}"
                raise fail(f"unknown key {segment!r} {place} ({cls.__name__}); expected one "
                           f"of {', '.join(fields)}")
            child_tp, slot = hints[segment], segment
            child_where = segment if depth == 0 else f"{where}.{segment}"
        else:  # a dict field: any key
            child_tp, slot = _item_type(tp), segment
            child_where = segment if depth == 0 else f"{where}.{segment}"
        if last:
            container[slot] = value
            return
        child = container[slot] if kind == "list" else container.get(slot, _MISSING)
        if child is None or child is _MISSING:
            child_kind = _kind(child_tp)
            if child_kind in ("dataclass", "dict", "any"):
                child = container[slot] = {}  # create the section
            elif child_kind == "list" and child is _MISSING:
                child = []  # an absent list has no index in range; report its length
        container, tp, where = child, child_tp, child_where
