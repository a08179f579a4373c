"""One clock for every decision, so tests can move time.

Expiry of accreditations, projects and agreements is evaluated against ``clock.now()``
at decision time: no background job has to run for an expiry to take effect.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Clock:
    """The current time, in UTC, with a test hook to freeze or move it."""

    def __init__(self) -> None:
        self._frozen: dt.datetime | None = None

    def now(self) -> dt.datetime:
        return self._frozen if self._frozen is not None else _utcnow()

    def today(self) -> dt.date:
        return self.now().date()

    def freeze(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
        self._frozen = at

    def advance(self, delta: dt.timedelta) -> None:
        self._frozen = self.now() + delta

    def unfreeze(self) -> None:
        self._frozen = None

    @contextmanager
    def frozen(self, at: dt.datetime) -> Iterator[Clock]:
        previous = self._frozen
        self.freeze(at)
        try:
            yield self
        finally:
            self._frozen = previous


clock = Clock()
