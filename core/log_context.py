"""Ids that every log line written in the current task carries (unit, connection, query), without each call
passing them: the edge that knows them binds them once; structured logs add them as fields.

A context variable: tasks started from a bound task inherit its ids, other requests never see them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

_FIELDS: ContextVar[dict[str, str]] = ContextVar("cc_log_fields", default={})  # noqa: B039 - never mutated


def current() -> dict[str, str]:
    """The ids bound in this task (read by the log formatter)."""
    return _FIELDS.get()


def bind(**fields: str) -> None:
    """Add ids for the rest of this task (and the tasks it starts): a request's or a connection's handler."""
    _FIELDS.set(_FIELDS.get() | fields)


@contextlib.contextmanager
def bound(**fields: str) -> Iterator[None]:
    """Add ids for the duration of a block."""
    token = _FIELDS.set(_FIELDS.get() | fields)
    try:
        yield
    finally:
        _FIELDS.reset(token)
