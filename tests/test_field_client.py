"""The device side: the outbox (pure, and journalled across restarts), and the client against the real server."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from command_center.unit_socket import UnitSocket
from core.ids import UnitId
from field_device.client import TelemetryClient
from field_device.outbox import JournalledOutbox, Outbox, OutboxFull, seq_floor
from tests.conftest import World
from tests.test_live_tracking import open_screen

UNIT = UnitId("HLJ0102-U01")

# The outbox, pure ------------------------------------------------------------------------------------


def test_outbox_numbers_keeps_until_acked_and_refuses_new_when_full() -> None:
    box = Outbox(capacity=3)
    assert [box.add({"lat": n}) for n in range(3)] == [1, 2, 3]
    with pytest.raises(OutboxFull):
        box.add({"lat": 9})
    assert box.refused == 1 and len(box) == 3
    assert [p["seq"] for p in box.oldest(3)] == [1, 2, 3]  # the oldest are kept, not overwritten
    assert [p["seq"] for p in box.oldest(2)] == [1, 2] and [p["seq"] for p in box.oldest(9, up_to=2)] == [1, 2]
    assert box.ack([1, 3, 42]) == [1, 3]
    assert [p["seq"] for p in box.oldest(10)] == [2] and box.acked == 2
    assert box.reject([2]) == [2] and box.rejected == 1 and len(box) == 0
    assert box.add({"lat": 1}) == 4  # numbers are never reused


def test_a_restart_without_a_journal_numbers_above_the_last_run() -> None:
    first = Outbox(first_seq=seq_floor(1_763_800_000_000))
    for _ in range(600):  # ten minutes at 1 Hz
        first.add({})
    later = Outbox(first_seq=seq_floor(1_763_800_000_000 + 600_000 + 5_000))  # restarted 5 s after
    assert later.add({}) > first.last_seq
    assert seq_floor(int(time.time() * 1000)) < 2**53


class OutboxMachine(RuleBasedStateMachine):
    """Any order of records, acks, rejections and resends: seqs increase, nothing acked comes back."""

    @initialize(capacity=st.integers(1, 30))
    def start(self, capacity: int) -> None:
        self.box = Outbox(capacity)
        self.pending: dict[int, int] = {}  # seq -> the value recorded
        self.gone: set[int] = set()
        self.last = 0
        self.refused = 0

    @rule(value=st.integers(-(2**63), 2**63 - 1))
    def record(self, value: int) -> None:
        if len(self.pending) >= self.box.capacity:
            with pytest.raises(OutboxFull):
                self.box.add({"v": value})
            self.refused += 1
            return
        seq = self.box.add({"v": value})
        assert seq > self.last
        self.last = seq
        self.pending[seq] = value

    @precondition(lambda self: self.last > 0)
    @rule(data=st.data(), rejected=st.booleans())
    def answer(self, data: st.DataObject, rejected: bool) -> None:
        seqs = data.draw(st.lists(st.integers(1, self.last + 2), max_size=8))
        gone = self.box.reject(seqs) if rejected else self.box.ack(seqs)
        assert sorted(set(gone)) == sorted(set(seqs) & set(self.pending))
        for seq in gone:
            self.pending.pop(seq)
            self.gone.add(seq)

    @rule(limit=st.integers(1, 40), up_to=st.none() | st.integers(0, 40))
    def resend(self, limit: int, up_to: int | None) -> None:
        batch = self.box.oldest(limit, up_to=up_to)
        seqs = [p["seq"] for p in batch]
        expected = [s for s in sorted(self.pending) if up_to is None or s <= up_to][:limit]
        assert seqs == expected and not set(seqs) & self.gone
        assert all(p["v"] == self.pending[p["seq"]] for p in batch)

    @invariant()
    def bounded(self) -> None:
        assert len(self.box) == len(self.pending) <= self.box.capacity
        assert self.box.refused == self.refused


TestOutboxMachine = OutboxMachine.TestCase
TestOutboxMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


class JournalMachine(OutboxMachine):
    """The same, journalled; after any step, reopening the file gives the same outbox."""

    @initialize(capacity=st.integers(1, 30))
    def start(self, capacity: int) -> None:
        super().start(capacity)
        self.folder = tempfile.TemporaryDirectory()
        self.path = Path(self.folder.name) / "outbox.jsonl"
        self.box = JournalledOutbox(self.path, capacity)

    @rule()
    def restart(self) -> None:
        assert isinstance(self.box, JournalledOutbox)
        self.box.close()
        self.box = JournalledOutbox(self.path, self.box.capacity)
        assert self.box.next_seq == self.last + 1
        assert [p["seq"] for p in self.box.oldest(100)] == sorted(self.pending)
        self.box.refused = self.refused

    def teardown(self) -> None:
        if hasattr(self, "box") and isinstance(self.box, JournalledOutbox):
            self.box.close()
            self.folder.cleanup()


TestJournalMachine = JournalMachine.TestCase
TestJournalMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


def test_the_journal_survives_a_torn_last_line_and_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = JournalledOutbox(path)
    for n in range(3):
        box.add({"lat": n})
    box.ack([1])
    box.close()
    with path.open("ab") as handle:
        handle.write(b'{"seq": 4, "lat"')  # the process died while writing
    again = JournalledOutbox(path)
    assert [p["seq"] for p in again.oldest(10)] == [2, 3] and again.add({"lat": 9}) == 4
    for _ in range(5_000):
        again.ack([again.add({"lat": 0})])
    again.close()
    assert len(path.read_bytes().splitlines()) < 2_000  # compacted as acks pile up
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # where officers have been: the owner's only
    assert [p["seq"] for p in JournalledOutbox(path).oldest(10)] == [2, 3, 4]


# The client against the real server ------------------------------------------------------------------


def fix_now(age_s: float = 0.0, lat: float = 45.75, **extra: Any) -> dict[str, Any]:
    return {"fix_time_ms": int((time.time() - age_s) * 1000), "lat": lat, "lon": 126.64, "speed_mps": 1.2, **extra}


def base(world: World) -> str:
    return str(world.client.make_url(""))


async def stored_seqs(world: World) -> list[int]:
    now = int(time.time() * 1000)
    return sorted(p.seq for p in await world.store.track(UNIT, since_ms=now - 3_600_000, until_ms=now + 60_000))


async def until(predicate: Any, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 (watching the client's counters from outside)
            await asyncio.sleep(0.01)


async def test_live_then_an_outage_then_the_backlog_over_http_each_position_stored_once(world: World) -> None:
    client = TelemetryClient(base(world), world.device_secret, label=UNIT, backoff=(0.05, 0.2))
    await client.start()
    try:
        await until(lambda: client.connected)
        for n in range(5):  # live: one position per message while the unit keeps up
            client.record(fix_now(lat=45.75 + n / 1000))
            async with asyncio.timeout(5):
                await client.drained()
        assert client.messages == 5 and client.uploaded == 0 and client.connected

        client.drop_link(1.0)
        await until(lambda: not client.connected)
        for second in range(300, 0, -1):  # five minutes recorded while the link is down
            client.record(fix_now(age_s=second / 10))
        await asyncio.sleep(0.2)
        assert len(client.outbox) == 300 and client.sent == 5  # nothing goes out while offline

        async with asyncio.timeout(15):
            await client.drained()
        assert client.uploaded == 300 and client.reconnects >= 1  # the backlog went over the batch endpoint
        client.record(fix_now())  # and live resumes
        async with asyncio.timeout(5):
            await client.drained()
        assert client.messages == 6
    finally:
        await client.close()
    assert await stored_seqs(world) == list(range(1, 307))
    assert client.stored == 306 and client.duplicates == client.rejected == client.outbox.refused == 0


async def test_an_ack_lost_with_the_link_means_a_resend_answered_duplicate(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stored the position but the link dropped before its ack came: no loss, no second row."""
    answer = UnitSocket.set_result  # the unit socket is told of the commit, and acks then
    slow = asyncio.Event()
    slow.set()

    def answer_late(socket: UnitSocket, new: Any) -> None:
        if slow.is_set():  # durable already; the answer is late
            asyncio.get_running_loop().call_later(0.5, answer, socket, new)
        else:
            answer(socket, new)

    monkeypatch.setattr(UnitSocket, "set_result", answer_late)
    client = TelemetryClient(base(world), world.device_secret, label=UNIT, backoff=(0.05, 0.1))
    await client.start()
    try:
        await until(lambda: client.connected)
        client.record(fix_now())
        await until(lambda: client.messages == 1)
        await asyncio.sleep(0.2)  # stored by now, the ack still on its way
        assert await stored_seqs(world) == [1] and len(client.outbox) == 1
        client.drop_link(0.3)
        slow.clear()
        async with asyncio.timeout(10):
            await client.drained()
    finally:
        await client.close()
    assert client.duplicates == 1 and client.stored == 0 and client.sent == 2
    assert await stored_seqs(world) == [1]


async def test_rejected_positions_are_dropped_counted_and_not_resent(world: World) -> None:
    client = TelemetryClient(base(world), world.device_secret, label=UNIT)
    client.drop_link(0.2)  # record offline: the three go in one batch upload
    client.record(fix_now())
    client.record(fix_now(lat=95.0))  # not on Earth
    client.record(fix_now(heading_deg=360.0))  # headings are 0 <= h < 360
    with pytest.raises(ValueError, match="credential"):
        client.record(fix_now(unit_id="HLJ0103-U99"))  # the unit comes from the credential, never the body
    await client.start()
    try:
        async with asyncio.timeout(10):
            await client.drained()
        client.record(fix_now())
        async with asyncio.timeout(5):
            await client.drained()
    finally:
        await client.close()
    assert client.rejected == 2 and client.outbox.rejected == 2 and client.sent == 4
    assert await stored_seqs(world) == [1, 4]


async def test_a_full_outbox_refuses_new_positions_and_keeps_the_old(world: World) -> None:
    client = TelemetryClient(base(world), world.device_secret, outbox=Outbox(capacity=50), label=UNIT)
    client.drop_link(0.3)
    await client.start()
    try:
        results = [client.record(fix_now(age_s=80 - n)) for n in range(80)]
        assert results[:50] == list(range(1, 51)) and results[50:] == [None] * 30
        async with asyncio.timeout(10):
            await client.drained()
    finally:
        await client.close()
    assert client.outbox.refused == 30 and client.recorded == 50
    assert await stored_seqs(world) == list(range(1, 51))


async def test_a_restarted_unit_resumes_its_journalled_backlog(world: World, tmp_path: Path) -> None:
    journal = tmp_path / "outbox.jsonl"
    before = TelemetryClient(base(world), world.device_secret, outbox=JournalledOutbox(journal), label=UNIT)
    await before.start()
    before.record(fix_now())
    async with asyncio.timeout(5):
        await before.drained()
    before.drop_link(60)
    for n in range(20):
        before.record(fix_now(age_s=20 - n))
    await before.close()  # the unit powers off with 20 positions unsent
    assert isinstance(before.outbox, JournalledOutbox)
    before.outbox.close()

    after = TelemetryClient(base(world), world.device_secret, outbox=JournalledOutbox(journal), label=UNIT)
    assert len(after.outbox) == 20 and after.record(fix_now()) == 22
    await after.start()
    try:
        async with asyncio.timeout(10):
            await after.drained()
    finally:
        await after.close()
    assert await stored_seqs(world) == list(range(1, 23))


async def test_large_backlogs_go_in_chunks_within_the_body_limit(world: World) -> None:
    client = TelemetryClient(base(world), world.device_secret, max_body_bytes=4_096, label=UNIT)
    for n in range(200):
        client.record(fix_now(age_s=200 - n, accuracy_m=5.0, heading_deg=90.0, battery_pct=80.0))
    body, chunk = client._chunk(client.outbox.oldest(5_000))
    assert len(body) <= 4_096 and 10 < len(chunk) < 200 and orjson.loads(body)["positions"] == chunk
    await client.start()
    try:
        async with asyncio.timeout(10):
            await client.drained()
    finally:
        await client.close()
    assert client.uploaded == 200 and await stored_seqs(world) == list(range(1, 201))


async def test_a_five_minute_outage_fills_the_trail_on_a_screen(world: World) -> None:
    screen = await open_screen(world, "operator", "units")
    client = TelemetryClient(base(world), world.device_secret, label=UNIT, backoff=(0.05, 0.2))
    client.drop_link(0.3)
    for second in range(300, 0, -1):
        client.record(fix_now(age_s=second, lat=45.70 + second / 100_000))
    await client.start()
    try:
        async with asyncio.timeout(15):
            await client.drained()
        points: set[int] = set()
        async with asyncio.timeout(10):
            while len(points) < 300:
                frame = await screen.next("frame")
                points.update(p[0] for t in frame["track"] for p in t["points"])
                points.update(v["position"]["fix_time_ms"] for v in frame["units"] if v["position"])
    finally:
        await client.close()


async def test_a_replayed_outbox_is_stored_once(world: World) -> None:
    """A unit that lost its acks (e.g. restarted without a journal) sends the same seqs: duplicates."""
    positions = [fix_now(age_s=60 - n) for n in range(40)]
    for label in ("first", "again"):
        client = TelemetryClient(base(world), world.device_secret, label=label)
        for p in positions:
            client.record(p)
        await client.start()
        try:
            async with asyncio.timeout(10):
                await client.drained()
        finally:
            await client.close()
    assert client.duplicates == 40 and client.stored == 0
    assert await stored_seqs(world) == list(range(1, 41))


async def test_a_revoked_device_keeps_its_positions_and_keeps_trying(world: World) -> None:
    await world.store.revoke_unit(UNIT)
    client = TelemetryClient(base(world), world.device_secret, label=UNIT, backoff=(0.05, 0.1))
    client.record(fix_now())
    await client.start()
    try:
        await until(lambda: client.reconnects >= 2, within=5)
    finally:
        await client.close()
    assert len(client.outbox) == 1 and "401" in client.last_error


async def test_reconnects_back_off_exponentially_with_jitter() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    client = TelemetryClient(f"http://127.0.0.1:{port}", "cc_d_x", backoff=(0.05, 0.4), seed=1)
    client.record(fix_now())
    await client.start()
    await asyncio.sleep(2.0)
    await client.close()
    await client.close()  # idempotent
    # 0.05, 0.1, 0.2, 0.4, 0.4, ... (each 0.5-1.5x): a handful of tries in 2 s, not hundreds
    assert 4 <= client.reconnects <= 15 and len(client.outbox) == 1


async def test_close_does_not_raise_what_the_link_already_failed_with() -> None:
    """CI once failed here: close() landed between the link failing and the loop seeing it, and re-raised
    the connection error the loop would have logged and retried."""
    client = TelemetryClient("http://127.0.0.1:9", "cc_d_x")
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failed.set_exception(OSError("Connect call failed"))
    client._link = failed  # type: ignore[assignment]
    await client.close()
    assert client._link is None
