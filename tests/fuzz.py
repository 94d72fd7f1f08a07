"""Hypothesis strategies for fuzzing: request messages built from the protobuf descriptors (so a
new field or RPC is fuzzed without a change here), and a runtime that never runs what it is
given.

Each field gets hostile values of its type (huge, empty, non-ASCII, NUL, NaN, infinities,
negative, out-of-range), mixed with plausible ones picked by the field's name (a task ID that
exists, a valid image, a known signal...), so the fuzz reaches past the first validation."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from cloudai.core.models import TaskSpec
from cloudai.runtime.base import Handle
from cloudai.runtime.process import ProcessRuntime
from tests.helpers import IN_CI

__all__ = [
    "FUZZ_EXAMPLES",
    "HarmlessRuntime",
    "Hints",
    "message_class",
    "requests",
]

# At least 1,000 generated cases per RPC under CI; fewer locally (CLOUDAI_FUZZ_EXAMPLES wins).
FUZZ_EXAMPLES = int(os.environ.get("CLOUDAI_FUZZ_EXAMPLES") or (1000 if IN_CI else 150))
settings.register_profile(
    "cloudai-fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
    print_blob=True,
)

Hints = Mapping[str, st.SearchStrategy[Any]]

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_ODD_CHARS = st.sampled_from(["a", "é", "/", ".", "\x00", "\n", "-", "🙂", " ", "%s", "'"])
_LENGTHS = st.sampled_from([0, 1, 16, 63, 64, 65, 128, 129, 255, 256, 1025, 4097, 70_000])
_LONG = st.builds(lambda c, n: c * n, _ODD_CHARS, _LENGTHS)
_STRINGS = st.one_of(_TEXT, _LONG, st.sampled_from(["", " ", "..", "/", "../x", "/tmp", "a" * 64]))

_FLOATS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -0.0, 1e-300, 1e308, 2.0**31]),
    st.floats(),  # anything, subnormals included
    st.sampled_from([0.0, 0.01, 0.5, 1.0, 2.0, 4096.0, 4097.0, 65536.0, 65537.0]),
)
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def message_class(descriptor: Descriptor) -> Any:
    return message_factory.GetMessageClass(descriptor)


_PLAIN_TEXT = st.text("abcxyzABC019-_. ", max_size=12)
_ENV_KEYS = st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,8}\Z")


def _hostile(field: FieldDescriptor, hints: Hints) -> st.SearchStrategy[Any]:
    """Any value of the field's type, the nastier the better."""
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        hint = hints.get(field.name)
        return _STRINGS if hint is None else st.one_of(hint, _STRINGS)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _FLOATS if t == FieldDescriptor.TYPE_DOUBLE else st.floats(width=32)
    if t in _INT_RANGES:
        lo, hi = _INT_RANGES[t]
        small = st.sampled_from([v for v in (0, 1, 2, 64, 65, -1, lo, hi) if lo <= v <= hi])
        return st.one_of(small, st.integers(lo, hi))
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    raise NotImplementedError(f"no strategy for field {field.full_name} (type {t})")


def _plausible(field: FieldDescriptor, hints: Hints) -> st.SearchStrategy[Any]:
    """A value that could pass: the field's hint, else something small and ordinary."""
    if (hint := hints.get(field.name)) is not None:
        return hint
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return _PLAIN_TEXT
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(min_value=0.0, max_value=100.0)
    if t in _INT_RANGES:
        return st.integers(0, 3)
    return _hostile(field, hints)  # bool, bytes, enum: every value is ordinary


# How a message's fields are drawn: every one hostile; every one plausible; mostly plausible
# with some hostile; or all plausible but exactly one, at any depth ("one": it reaches each
# check on its own, however deep behind the others).
_MODES = ("hostile", "plausible", "mixed", "one", "one")


def _scalar(field: FieldDescriptor, hints: Hints, mode: str) -> st.SearchStrategy[Any]:
    if mode == "hostile":
        return _hostile(field, hints)
    if mode == "plausible":
        return _plausible(field, hints)
    good = _plausible(field, hints)
    return st.one_of(good, good, good, _hostile(field, hints))


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _field(field: FieldDescriptor, hints: Hints, mode: str, depth: int) -> st.SearchStrategy[Any]:
    if _is_map(field):
        entry = field.message_type
        key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
        key = _ENV_KEYS if mode == "plausible" else _scalar(key_field, hints, mode)
        value = (
            _message(value_field.message_type, hints, mode, depth + 1)
            if value_field.message_type is not None
            else _scalar(value_field, hints, mode)
        )
        return st.dictionaries(key, value, max_size=4)
    single = (
        _message(field.message_type, hints, mode, depth + 1)
        if field.type == FieldDescriptor.TYPE_MESSAGE
        else _scalar(field, hints, mode)
    )
    if field.is_repeated:
        return st.lists(single, max_size=5)
    return single


def _message(
    descriptor: Descriptor, hints: Hints, mode: str, depth: int = 0
) -> st.SearchStrategy[Any]:
    """A dict of field values for `descriptor`: any subset of its fields, at any depth
    (hostile: a subset; otherwise mostly all of them, so nested requests are complete)."""
    if depth > 3:
        return st.just({})
    if mode == "one":
        return _one_bad(descriptor, hints, depth)
    fields = {f.name: _field(f, hints, mode, depth) for f in descriptor.fields}
    if mode == "hostile":
        return st.fixed_dictionaries({}, optional=fields)
    return st.one_of(
        st.fixed_dictionaries(fields),
        st.fixed_dictionaries(fields),
        st.fixed_dictionaries({}, optional=fields),
    )


def _one_bad(descriptor: Descriptor, hints: Hints, depth: int) -> st.SearchStrategy[Any]:
    """Every field plausible but one: a scalar or list drawn hostile, or a message drawn with
    one bad field of its own."""
    if not descriptor.fields:
        return st.just({})
    built: dict[str, st.SearchStrategy[Any]] = {}

    def with_bad(bad: str) -> st.SearchStrategy[Any]:
        if bad not in built:
            fields = {}
            for f in descriptor.fields:
                singular_message = f.message_type is not None and not f.is_repeated
                mode = "plausible" if f.name != bad else "one" if singular_message else "hostile"
                fields[f.name] = _field(f, hints, mode, depth)
            built[bad] = st.fixed_dictionaries(fields)
        return built[bad]

    return st.sampled_from([f.name for f in descriptor.fields]).flatmap(with_bad)


def requests(method: MethodDescriptor, hints: Hints) -> st.SearchStrategy[Any]:
    """Request messages for `method`: every field of its input type, at any depth."""
    cls = message_class(method.input_type)
    return st.one_of(_message(method.input_type, hints, m) for m in _MODES).map(
        lambda fields: cls(**fields)
    )


def ids_like(known: Callable[[], Sequence[str]]) -> st.SearchStrategy[str]:
    """Task IDs: ones that exist (looked up when drawn), valid-looking ones, and path-like."""

    def pick(i: int) -> str:
        ids = known()
        return ids[i % len(ids)] if ids else "task-0-00000000"

    existing = st.integers(min_value=0).map(pick)
    return st.one_of(
        existing,
        existing,
        existing,
        st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,70}\Z"),
        st.sampled_from(["/some/dir", "..", "a/../b", ".hidden", "task-1/..", "x" * 65, ""]),
    )


class HarmlessRuntime(ProcessRuntime):
    """The process runtime with every command replaced by `true` and no environment: fuzzed
    specs exercise the worker's real paths (state directories named by task IDs, logs,
    reports) and never run anything they carry on this machine."""

    @staticmethod
    def _harmless(spec: TaskSpec) -> TaskSpec:
        return dataclasses.replace(spec, command=("true",), env={}, secret_env={})

    async def prepare(self, task_id: str, spec: TaskSpec) -> None:
        await super().prepare(task_id, self._harmless(spec))

    async def start(self, task_id: str, spec: TaskSpec, gpu_ids: Sequence[str] = ()) -> Handle:
        return await super().start(task_id, self._harmless(spec), gpu_ids)
