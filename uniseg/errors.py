"""Errors meant for people: one line saying what is wrong, where, and what to do.

Library code raises `UserError` (or a subclass) for expected failures: bad params, bad data, missing
files. Stages and the CLI turn it into a one-line message and a non-zero exit (`exit_on_user_error`);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


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
