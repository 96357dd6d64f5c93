"""Silent unit sockets: pinged, cut when they stay silent, kept when they answer (command_center/idle_sockets.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType

from command_center.keys import IDLE_UNIT_SOCKETS
from config.settings import ServerSettings
from tests.conftest import AppFactory, World

IDLE = 0.4  # seconds: pinged after this much silence, cut half as long again after an unanswered ping


def fix(seq: int) -> dict[str, Any]:
    return {"seq": seq, "fix_time_ms": int(time.time() * 1000), "lat": 45.75, "lon": 126.64}


async def ack(ws: ClientWebSocketResponse, seq: int) -> None:
    await ws.send_json(fix(seq))
    while True:
        message = await asyncio.wait_for(ws.receive(), 5)
        if message.type is WSMsgType.TEXT and message.json()["type"] == "ack":
            assert message.json()["stored"] == [seq]
            return
        assert message.type in (WSMsgType.PING, WSMsgType.PONG, WSMsgType.TEXT), message


async def quiet_world(make_world: AppFactory) -> World:
    return await make_world(server=ServerSettings(unit_socket_idle_seconds=IDLE))


async def test_a_silent_socket_that_does_not_answer_pings_is_cut(make_world: AppFactory) -> None:
    """A link that died without closing: the server pings it, hears nothing, and cuts it."""
    world = await quiet_world(make_world)
    ws = await world.client.ws_connect("/api/telemetry/ws", headers=world.auth("device"), autoping=False)
    await ack(ws, 1)
    pings = 0
    async with asyncio.timeout(IDLE * 10):
        while True:  # read (so the end is seen) but never answer a ping: a dead unit
            message = await ws.receive()
            if message.type is WSMsgType.PING:
                pings += 1
                continue
            break
    assert message.type in (WSMsgType.CLOSED, WSMsgType.CLOSE, WSMsgType.ERROR), message
    assert pings >= 1
    assert world.client.app[IDLE_UNIT_SOCKETS].cut == 1


async def test_a_quiet_unit_that_answers_pings_keeps_its_socket(make_world: AppFactory) -> None:
    world = await quiet_world(make_world)
    ws = await world.client.ws_connect("/api/telemetry/ws", headers=world.auth("device"))  # answers pings
    await ack(ws, 1)
    with_answers = asyncio.create_task(ws.receive())  # reading: the client library answers each ping
    await asyncio.sleep(IDLE * 5)
    assert not with_answers.done(), with_answers.result()
    with_answers.cancel()
    await asyncio.gather(with_answers, return_exceptions=True)
    await ack(ws, 2)
    assert world.client.app[IDLE_UNIT_SOCKETS].cut == 0
    await ws.close()


async def test_the_server_answers_a_units_ping(make_world: AppFactory) -> None:
    """The unit socket takes pings itself (autoping is off so that pongs reach the idle sweep)."""
    world = await quiet_world(make_world)
    ws = await world.client.ws_connect("/api/telemetry/ws", headers=world.auth("device"), autoping=False)
    await ws.ping(b"are you there")
    message = await asyncio.wait_for(ws.receive(), 5)
    while message.type is WSMsgType.PING:  # the server's own ping may come first
        message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type is WSMsgType.PONG and message.data == b"are you there"
    await ack(ws, 1)
    await ws.close()
