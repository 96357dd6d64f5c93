"""The unit socket's answers, against a real server: taken at once, answered from the commit, in order.

A unit waits for each ack before it sends again (docs/protocols.md); these tests are the units that do not:
one that sends ahead gets its answers in the order of its messages, each one after its positions are stored,
and one that sends without ever reading is cut before what it leaves unread grows without bound.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
import websockets
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from command_center import unit_socket
from command_center.unit_socket import text_frame
from tests.conftest import World
from tests.test_live_tracking import UNIT, fix, open_unit, send


async def answers(unit: Any, count: int) -> list[dict[str, Any]]:
    """The next ``count`` answers to the unit's messages (tasks pushed meanwhile are skipped)."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        answer: dict[str, Any] = await asyncio.wait_for(unit.receive_json(), 10)
        if answer.get("type") not in ("task", "task_cancelled"):
            got.append(answer)
    return got


async def test_a_unit_that_sends_ahead_gets_its_answers_in_order(world: World) -> None:
    unit = await open_unit(world)
    # Five messages at once, the third not JSON and the fifth a duplicate of the first: its error must not
    # overtake the acks of the messages before it, which wait for their commit.
    for payload in (fix(1), fix(2), "not json", [fix(3), fix(4)], fix(1)):
        await (unit.send_str(payload) if isinstance(payload, str) else unit.send_json(payload))
    got = await answers(unit, 5)
    assert [a["type"] for a in got] == ["ack", "ack", "error", "ack", "ack"]
    assert [a.get("stored") for a in got] == [[1], [2], None, [3, 4], []]
    assert got[2]["code"] == "invalid_json"
    assert got[4]["duplicates"] == [1]
    assert await world.store.count_positions(UNIT) == 4
    # and the socket goes on as usual
    assert await send(unit, fix(5)) == {"type": "ack", "stored": [5], "duplicates": [], "rejected": []}


async def test_each_ack_follows_its_commit(world: World) -> None:
    """An ack is sent only once what it reports is stored: every acked seq is in the store when it arrives."""
    unit = await open_unit(world)
    for seq in range(1, 21):
        await unit.send_json(fix(seq))
    for seq, answer in enumerate(await answers(unit, 20), start=1):
        assert answer["stored"] == [seq]
    track = await world.store.track(UNIT, since_ms=0, until_ms=2**62)
    assert sorted(p.seq for p in track) == list(range(1, 21))


async def test_a_unit_that_never_reads_is_cut(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A unit that sends and never reads its answers would leave them piling up in the server's memory (the
    socket takes each message at once now, without waiting for the peer to read): past the limit it is cut,
    and the server goes on serving."""
    monkeypatch.setattr(unit_socket, "MAX_UNREAD", 64 * 1024)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((world.client.host, world.client.port))
    url = f"ws://{world.client.host}:{world.client.port}/api/telemetry/ws"
    with caplog.at_level(logging.WARNING, logger="command_center.unit_socket"):
        async with websockets.connect(
            url, sock=sock, compression=None, max_queue=1, ping_interval=None,
            additional_headers={"Authorization": f"Bearer {world.device_secret}"},
        ) as flooding:  # fmt: skip
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(60):
                    for _ in range(1_000_000):  # each answered with an error of about 80 bytes, never read
                        await flooding.send("x")
    assert any("sent and not read; cutting the connection" in r.getMessage() for r in caplog.records)
    unit = await open_unit(world)
    assert (await send(unit, fix(1)))["stored"] == [1]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
def test_a_text_frame_reads_back_whole_with_a_websocket_library(size: int) -> None:
    """``text_frame`` writes the unit's answers itself: another implementation reads them back whole, at
    each boundary of the length's three encodings."""
    payload = bytes(i % 251 for i in range(size))
    reader = StreamReader()
    reader.feed_data(text_frame(payload))
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    with pytest.raises(StopIteration) as parsed:
        next(parser)
    frame = parsed.value.value
    assert (frame.opcode, frame.fin, frame.rsv1, frame.data) == (Opcode.TEXT, True, False, payload)
    assert reader.at_eof()
