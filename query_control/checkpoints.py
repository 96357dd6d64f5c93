"""Signed checkpoints of the audit chain, the witnesses that keep them, and the check of the chain against them.

The chain proves nothing about its own tail, and whoever can write the database can edit an entry and recompute
every hash after it. So every ``audit.checkpoint_entries`` entries or ``audit.checkpoint_seconds`` seconds the
leader (one process at a time: the cluster's ``leader`` lease) signs the head (``core.checkpoint``), stores it, and
hands it to witnesses the database's writer does not control: an append-only file on another volume and the
parent court's centre (上下一体, ``POST /api/audit/witness``). ``WitnessCheck`` is the pure check ``audit verify``
runs: fed the entries in order, it names the first place where the chain and a checkpoint part.

A checkpoint is a function of the chain at its seq (plus the time), so two signers agree on it and a witness takes
the same checkpoint twice as one; the lease only saves duplicate work. The signer refuses to sign a chain that
no longer reaches, or no longer matches, its own last checkpoint: it never puts its name to a rewritten chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cluster.port import LEADER, Coordinator
from config.settings import AuditSettings
from core.checkpoint import Checkpoint, parse_line, public_key_hex, sign, signature_valid
from persistence.query_models import AuditEntry
from persistence.query_port import AuditStore
from query_control.audit import ChainVerifier, walk
from query_control.audit_key import load_or_create_key

log = logging.getLogger(__name__)

WITNESS_PATH = "/api/audit/witness"
_SEND_TIMEOUT = aiohttp.ClientTimeout(total=10)


class WillNotSign(Exception):
    """Signing would vouch for something wrong; nothing more is signed until a person has looked."""


class ChainRewritten(WillNotSign):
    """The chain no longer agrees with this centre's own last checkpoint."""


class ForeignKey(WillNotSign):
    """The last checkpoint was signed by another key: this process does not share the centre's data dir."""


# ------------------------------------------------------------------------------------------------ signing
async def make_checkpoint(store: AuditStore, key: Ed25519PrivateKey, court: str, *, now_ms: int) -> Checkpoint | None:
    """Sign and store a checkpoint of the head if the chain grew since the last one; None if it did not."""
    head = await store.audit_head()
    stored = await store.audit_checkpoints()
    last = stored[-1] if stored else None
    if last is not None:
        if last.key != public_key_hex(key):
            raise ForeignKey(
                f"checkpoint {last.seq} was signed by key {last.key}, this process holds {public_key_hex(key)}:"
                " every process of a centre must share its data dir's audit key"
            )
        if head is None or head[0] < last.seq:
            raise ChainRewritten(
                f"the audit chain ends at entry {0 if head is None else head[0]}, but this centre signed entry"
                f" {last.seq}: entries were deleted"
            )
        at_last = await store.audit_entries(after_seq=last.seq - 1, limit=1)
        if not at_last or at_last[0].hash != last.head:
            raise ChainRewritten(f"entry {last.seq} no longer has the hash this centre signed: the chain was rewritten")
        if head[0] == last.seq:
            return None
    if head is None:
        return None
    checkpoint = sign(key, court=court, seq=head[0], head=head[1], at_ms=now_ms)
    await store.add_checkpoint(checkpoint)
    return checkpoint


def append_to_file(path: Path, checkpoint: Checkpoint) -> None:
    """One JSON line appended (``O_APPEND``: never over what is there) and flushed to disk before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, checkpoint.to_line().encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class WitnessRefused(Exception):
    """The upper centre refused the checkpoint (fork, backwards, key not pinned): a person must look."""


async def send_upper(http: aiohttp.ClientSession, base_url: str, checkpoint: Checkpoint) -> None:
    """Deliver to the parent court's centre; WitnessRefused on a 4xx, aiohttp errors when it is unreachable."""
    async with http.post(base_url + WITNESS_PATH, json=checkpoint.to_dict(), timeout=_SEND_TIMEOUT) as response:
        if 400 <= response.status < 500:
            raise WitnessRefused(f"{response.status} {await response.text()}")
        response.raise_for_status()


FILE, UPPER = "file", "upper"


def witnesses(settings: AuditSettings) -> list[str]:
    return ([FILE] if settings.witness_file is not None else []) + ([UPPER] if settings.upper_url else [])


async def deliver_to(
    witness: str, settings: AuditSettings, checkpoint: Checkpoint, http: aiohttp.ClientSession | None
) -> tuple[bool, str | None]:
    """Hand a checkpoint to one witness: (done, failure). Done with a failure when the upper centre refused it
    (4xx: sending it again changes nothing, a person must look); not done when it could not be reached."""
    if witness == FILE:
        assert settings.witness_file is not None
        try:
            await asyncio.to_thread(append_to_file, settings.witness_file, checkpoint)
        except OSError as exc:
            return False, f"witness file {settings.witness_file}: {exc}"
        return True, None
    try:
        if http is None:
            async with aiohttp.ClientSession() as own:
                await send_upper(own, settings.upper_url, checkpoint)
        else:
            await send_upper(http, settings.upper_url, checkpoint)
    except WitnessRefused as exc:
        return True, f"upper centre {settings.upper_url} REFUSED checkpoint {checkpoint.seq}: {exc}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return False, f"upper centre {settings.upper_url} unreachable: {exc!r}"
    return True, None


async def deliver(settings: AuditSettings, checkpoint: Checkpoint, http: aiohttp.ClientSession | None) -> list[str]:
    """Hand a checkpoint to every configured witness; the failures, one line each (empty when all took it)."""
    failures = [(await deliver_to(w, settings, checkpoint, http))[1] for w in witnesses(settings)]
    return [f for f in failures if f is not None]


class Checkpointer:
    """The background signer: checks once a second (at most) whether a checkpoint is due, in the leader only."""

    def __init__(
        self,
        store: AuditStore,
        settings: AuditSettings,
        data_dir: Path,
        cluster: Coordinator,
        http: aiohttp.ClientSession,
    ) -> None:
        self._store, self._settings, self._data_dir = store, settings, data_dir
        self._cluster, self._http = cluster, http
        self._key: Ed25519PrivateKey | None = None
        self._last_seq = 0
        self._last_ms = 0
        self._undelivered: dict[str, Checkpoint] = {}  # witness -> the newest checkpoint it has not taken yet
        self._stopped = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._settings.checkpoint_seconds > 0:
            self._task = asyncio.create_task(self._run(), name="audit-checkpointer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        interval = min(1.0, self._settings.checkpoint_seconds)
        while not self._stopped:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except WillNotSign as exc:
                log.error("audit checkpoints: not signing any more: %s", exc)
                self._stopped = True
            except Exception:  # a failed round (database away) is retried on the next one
                log.exception("audit checkpoints: round failed")

    async def tick(self) -> Checkpoint | None:
        """One round: sign if due (leader only), then retry delivery of what a witness has not taken."""
        if not self._cluster.holds(LEADER):
            self._last_seq = 0  # another process signs; read its progress when leadership comes back
            return None
        now_ms = int(time.time() * 1000)
        if self._last_seq == 0:
            stored = await self._store.audit_checkpoints()
            if stored:
                self._last_seq, self._last_ms = stored[-1].seq, stored[-1].at_ms
        head = await self._store.audit_head()
        made: Checkpoint | None = None
        grown = 0 if head is None else head[0] - self._last_seq
        if grown >= self._settings.checkpoint_entries or (
            grown > 0 and now_ms - self._last_ms >= self._settings.checkpoint_seconds * 1000
        ):
            if self._key is None:
                self._key = await asyncio.to_thread(load_or_create_key, self._data_dir)
            made = await make_checkpoint(self._store, self._key, self._settings.signer, now_ms=now_ms)
            if made is not None:
                self._last_seq, self._last_ms = made.seq, made.at_ms
                self._undelivered = dict.fromkeys(witnesses(self._settings), made)
                log.info("audit checkpoint signed at entry %d", made.seq)
        for witness, checkpoint in list(self._undelivered.items()):  # each retried on its own: no duplicate lines
            done, failure = await deliver_to(witness, self._settings, checkpoint, self._http)
            if failure is not None:
                log.error("audit checkpoint %d: %s", checkpoint.seq, failure)
            if done:
                del self._undelivered[witness]
        return made


# ------------------------------------------------------------------------------------------------ checking
@dataclass(frozen=True, slots=True)
class Sourced:
    source: str  # where the checkpoint was read: "database", "witness file /x", …
    checkpoint: Checkpoint


def read_witness_file(path: Path) -> tuple[list[Sourced], list[str]]:
    """Checkpoints from a JSON-lines witness file, and one problem per unreadable line (with its number)."""
    found: list[Sourced] = []
    problems: list[str] = []
    label = f"witness file {path}"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return [], [f"{label}: cannot be read ({exc.strerror or exc})"]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append(Sourced(label, parse_line(line)))
        except ValueError as exc:
            problems.append(f"{label}, line {number}: {exc}")
    return found, problems


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int | None  # the first entry concerned (None: not tied to an entry, e.g. an unreadable file)
    text: str


@dataclass
class WitnessReport:
    entries: int
    head: str
    checkpoints: int  # checkpoints whose signature verified
    witnessed_to: int  # the highest seq a verified checkpoint covers
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        """The first entry where the chain and its witnesses part."""
        tied = [p for p in self.problems if p.seq is not None]
        return min(tied, key=lambda p: p.seq or 0) if tied else (self.problems[0] if self.problems else None)


class WitnessCheck:
    """The chain against its checkpoints: feed entries oldest first, then ``finish``.

    A checkpoint counts only if it names this centre's court and verifies under the pinned public key; one that
    does not is reported as forged. An entry whose hash differs from a checkpoint at its seq was rewritten (at
    that entry or after the last checkpoint that still matches); a chain ending before the highest checkpoint
    lost its tail.
    """

    def __init__(self, checkpoints: Iterable[Sourced], *, public_key: str | None, court: str) -> None:
        self.problems: list[Problem] = []
        self._by_seq: dict[int, list[Sourced]] = {}
        self._verifier = ChainVerifier()
        self._matched = 0  # seq of the last checkpoint the chain agreed with
        self._last_seq = 0
        self._parted = False
        verified = 0
        for item in checkpoints:
            cp = item.checkpoint
            if cp.court != court:
                self.problems.append(Problem(cp.seq, f"{item.source}: checkpoint at seq {cp.seq} is for court "
                                                     f"{cp.court!r}, not this centre's {court!r}"))  # fmt: skip
            elif public_key is None:
                self.problems.append(Problem(cp.seq, f"{item.source}: checkpoint at seq {cp.seq} cannot be checked:"
                                                     " no public key (no signing key here; pass --key)"))  # fmt: skip
            elif cp.key != public_key or not signature_valid(cp, public_key):
                self.problems.append(Problem(cp.seq, f"{item.source}: FORGED checkpoint at seq {cp.seq}: its signature"
                                                     " does not verify under this centre's key"))  # fmt: skip
            else:
                verified += 1
                self._by_seq.setdefault(cp.seq, []).append(item)
        self.verified = verified

    def feed(self, entry: AuditEntry) -> bool:
        """Check one entry; False once the chain itself is broken (nothing after it can be trusted)."""
        if not self._verifier.feed(entry):
            assert self._verifier.bad_seq is not None and self._verifier.problem is not None
            self.problems.append(Problem(self._verifier.bad_seq, self._verifier.problem))
            return False
        self._last_seq = entry.seq
        for item in self._by_seq.get(entry.seq, []):
            if item.checkpoint.head != entry.hash:
                self._parted = True
                self.problems.append(Problem(
                    entry.seq,
                    f"entry {entry.seq} has hash {entry.hash}, but {item.source} holds a checkpoint signed at seq"
                    f" {entry.seq} with head {item.checkpoint.head}: the chain was rewritten between entries"
                    f" {self._matched + 1} and {entry.seq} and its hashes recomputed",
                ))  # fmt: skip
                return False
        if entry.seq in self._by_seq:
            self._matched = entry.seq
        return True

    def finish(self) -> WitnessReport:
        result = self._verifier.result()
        witnessed = max(self._by_seq, default=0)
        if result.ok and not self._parted and witnessed > self._last_seq:
            beyond = sorted({item.source for s, items in self._by_seq.items() if s > self._last_seq for item in items})
            self.problems.append(Problem(
                self._last_seq + 1,
                f"the chain ends at entry {self._last_seq}, but {', '.join(beyond)} witnessed a checkpoint at seq"
                f" {witnessed}: entries {self._last_seq + 1} to {witnessed} were deleted",
            ))  # fmt: skip
        return WitnessReport(result.entries, result.head, self.verified, witnessed, self.problems)


async def verify_with_witnesses(
    store: AuditStore,
    checkpoints: Iterable[Sourced],
    *,
    public_key: str | None,
    court: str,
    page: int = 1000,
) -> WitnessReport:
    """Walk the whole audit log in pages against the checkpoints; stop at the first place they part."""
    check = WitnessCheck(checkpoints, public_key=public_key, court=court)
    await walk(store, check.feed, page=page)
    return check.finish()


def checkpoints_as_lines(checkpoints: Iterable[Checkpoint]) -> str:
    return "".join(cp.to_line() for cp in checkpoints)
