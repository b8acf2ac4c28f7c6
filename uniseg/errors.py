"""Errors meant for people: one line saying what is wrong, where, and what to do.

Library code raises `UserError` (or a subclass) for expected failures: bad params, bad data, missing
files. Stages and the CLI turn it into a one-line message and a non-zero exit (`exit_on_user_error`);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Annotated, Any, Literal, get_args, get_origin


class UserError(Exception):
    """An expected failure caused by input (params, files, arguments); its message is shown as is."""


class ParamsError(UserError):
    """A value in params.yaml is missing, unknown, of the wrong type or out of range."""


class DataError(UserError):
    """A dataset file is missing, corrupt, or holds a value outside its label table."""


def choices(valid) -> str:
    """Format valid choices for an error message: 'a, b, c'."""
    return ", ".join(str(v) for v in valid)


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print a UserError as `error: <message>` on stderr and exit with status 1 (no traceback)."""
    try:
        yield
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


# --- pydantic validation errors as one line (params.yaml) --------------------------------------------


def rule(ok: bool, key: str, expected: str, got: Any) -> None:
    """A rule checked in a pydantic validator; `key` is relative to the model checking it. The message
    is built by `validation_message` like a field's."""
    from pydantic_core import PydanticCustomError

    if not ok:
        raise PydanticCustomError(
            "rule", "{key}: expected {expected}", {"key": key, "expected": expected, "got": got}
        )


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Annotated:
        return _type_name(get_args(tp)[0])
    if get_origin(tp) is Literal:
        return "one of " + choices(get_args(tp))
    names = {int: "an int", float: "a number", str: "a string", bool: "true/false", list: "a list"}
    return names.get(get_origin(tp) or tp, str(tp))


def validation_message(error: dict, model: type, source: str) -> str:
    """`<source>: <key path>: expected <what>, got <value>` for one error of pydantic's
    `ValidationError.errors()` on `model`. <what> is the type's name for a wrong type, else the field's
    `description` (the phrase of its range, e.g. "a number in (0, 1]"), or the choices of a Literal."""
    from pydantic import BaseModel

    path: list[str] = []
    tp, what = model, None
    for part in error["loc"]:  # follow the models for the key path and the declared type there
        if isinstance(part, int) and get_origin(tp) is list:
            path[-1] += f"[{part}]"
            tp = get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            path.append(str(part))
            tp, what = tp.model_fields[part].annotation, tp.model_fields[part].description
        # anything else is a union member's tag ("literal['auto']") or an unknown key
    where, got, kind = ".".join(path) or "the top level", error["input"], error["type"]
    if kind == "extra_forbidden":
        unknown = ".".join([*path, str(error["loc"][-1])])
        return f"{source}: unknown key '{unknown}'; valid keys in {where}: {choices(tp.model_fields)}"
    if kind == "rule":  # from `rule`: the key under the model that checked it
        where = ".".join([*path, error["ctx"]["key"]])
        what, got = error["ctx"]["expected"], error["ctx"]["got"]
    elif kind == "model_type":
        what = "a mapping of keys"
    elif kind.endswith("_type") or what is None:  # a wrong type: name the type; else the field's range
        what = _type_name(tp)
    return f"{source}: {where}: expected {what}, got {got!r}"
