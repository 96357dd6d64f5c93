"""A unit's outbox: every position waits here, numbered, until the server acknowledges it.

``Outbox`` is pure bookkeeping (no clock, no I/O). Sequence numbers increase by one per position and are
never reused, so the server's dedupe by (unit, seq) makes any resend safe. A position leaves only when an
ack lists it in ``stored`` or ``duplicates`` (it is durable on the server) or in ``rejected`` (resending
cannot help; docs/protocols.md).

**When full** (``capacity`` positions unacknowledged, default 100,000: 27 hours at 1 Hz), new positions
are refused and counted (``refused``); nothing already recorded is dropped. The older track is the
evidence of where an officer was during the outage, and a refusal is visible to the caller (the count,
the return value), whereas dropping the oldest would silently rewrite history.

**Restarts.** ``JournalledOutbox`` appends every change to a JSON-lines file and replays it on open, so
a unit that restarts keeps its backlog and its numbering. Without a journal, pass ``first_seq`` from
``seq_floor(now_ms)`` so a restarted unit still numbers above everything it sent before (a reused seq
would be answered ``duplicate`` and the new position lost).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson

DEFAULT_CAPACITY = 100_000


class OutboxFull(Exception):
    """The outbox holds ``capacity`` unacknowledged positions."""


def seq_floor(now_ms: int) -> int:
    """A first seq above any a unit recording fewer than 1,000 positions a second has used before.

    The wall clock in milliseconds: a unit restarted without its journal resumes above its old numbers
    as long as its clock has not gone back. Stays below the protocol's 2^53 until the year 287,000.
    """
    return now_ms


class Outbox:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, first_seq: int = 1) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._next_seq = first_seq
        self._pending: dict[int, dict[str, Any]] = {}  # insertion order is seq order
        self.refused = 0  # positions not kept because the outbox was full
        self.acked = 0  # left because the server holds them (stored or duplicate)
        self.rejected = 0  # left because the server refused them as invalid

    def add(self, position: dict[str, Any]) -> int:
        """Number a position (a copy, with ``seq`` set) and keep it until acknowledged; raises OutboxFull."""
        if len(self._pending) >= self.capacity:
            self.refused += 1
            raise OutboxFull(f"{self.capacity} positions wait for acknowledgement")
        seq = self._next_seq
        self._next_seq += 1
        self._pending[seq] = {**position, "seq": seq}
        return seq

    def oldest(self, limit: int, *, up_to: int | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` unacknowledged positions, oldest first; only seq <= up_to when given."""
        head = itertools.islice(self._pending.items(), limit)
        if up_to is None:
            return [position for _, position in head]
        return [position for _, position in itertools.takewhile(lambda item: item[0] <= up_to, head)]

    def ack(self, seqs: Iterable[int]) -> list[int]:
        """Forget positions the server holds (stored or duplicate); returns the ones that were here."""
        gone = self._remove(seqs)
        self.acked += len(gone)
        return gone

    def reject(self, seqs: Iterable[int]) -> list[int]:
        """Forget positions the server refused as invalid: resending them cannot help."""
        gone = self._remove(seqs)
        self.rejected += len(gone)
        return gone

    def _remove(self, seqs: Iterable[int]) -> list[int]:
        return [seq for seq in seqs if self._pending.pop(seq, None) is not None]

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, seq: object) -> bool:
        return seq in self._pending

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def last_seq(self) -> int:
        """The newest seq handed out (``next_seq - 1``)."""
        return self._next_seq - 1


class JournalledOutbox(Outbox):
    """An outbox that survives a restart: every change is appended to a JSON-lines file, replayed on open.

    Lines are a position (with ``seq``), ``{"done": [seq, ...]}`` for positions that left, or
    ``{"next_seq": n}``. Each line is flushed to the operating system as it is written, so a crash of
    the process loses nothing; a power cut may lose the last moments unless ``fsync`` is set. The file is
    rewritten with only the waiting positions on open (which also drops a line torn by a crash) and
    whenever the finished lines outnumber the waiting ones twice over, so its size stays proportional
    to the backlog. Synchronous writes of one short line: fine for a device's one position a second.
    The file is readable by its owner only: it is where officers have been.
    """

    def __init__(
        self, path: Path, capacity: int = DEFAULT_CAPACITY, *, first_seq: int = 1, fsync: bool = False
    ) -> None:
        super().__init__(capacity, first_seq=first_seq)
        self.path = path
        self._fsync = fsync
        self._finished_lines = 0
        self.unjournalled = 0
        self._file: IO[bytes] | None = None
        self._replay()
        self._compact()

    def _replay(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            for line in handle:
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a line torn by a crash: it was never acknowledged to anyone
                if not isinstance(record, dict):
                    continue
                if "done" in record:
                    for seq in record["done"]:
                        self._pending.pop(seq, None)
                elif "next_seq" in record:
                    self._next_seq = max(self._next_seq, int(record["next_seq"]))
                elif isinstance(record.get("seq"), int):
                    self._pending[record["seq"]] = record
                    self._next_seq = max(self._next_seq, record["seq"] + 1)
        self._pending = dict(sorted(self._pending.items()))

    def _compact(self) -> None:
        """Rewrite the file with the numbering and the waiting positions only (atomically: temp + rename)."""
        if self._file is not None:
            self._file.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            handle.write(orjson.dumps({"next_seq": self._next_seq}) + b"\n")
            for position in self._pending.values():
                handle.write(orjson.dumps(position) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        self._finished_lines = 0
        self._file = self.path.open("ab")

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise ValueError(f"outbox journal {self.path} is closed")
        self._file.write(orjson.dumps(record) + b"\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def add(self, position: dict[str, Any]) -> int:
        """As ``Outbox.add``; raises ValueError (and keeps nothing) for a position JSON cannot carry.

        If the disk refuses the line (full, read-only), the position is still kept in memory and
        counted in ``unjournalled``: it will be sent, only a restart before then would lose it.
        """
        seq = super().add(position)
        try:
            self._write(self._pending[seq])
        except TypeError as exc:
            del self._pending[seq]
            raise ValueError(f"position is not JSON-encodable: {exc}") from None
        except OSError:
            self.unjournalled += 1
        return seq

    def _remove(self, seqs: Iterable[int]) -> list[int]:
        gone = super()._remove(seqs)
        if gone:
            self._write({"done": gone})
            self._finished_lines += len(gone)
            if self._finished_lines > max(1_000, 2 * len(self._pending)):
                self._compact()
        return gone

    def close(self) -> None:
        """Close the file (idempotent); everything written so far is already in it."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
