"""The reference field unit's media side (aiortc): its camera, a video file or a synthetic pattern published
over WHIP, its positions sent on the ``telemetry`` data channel from a durable outbox (kept while the link
is down, deleted only once acknowledged), talkback from the command centre played, and the session
re-established with backoff whenever the link fails.

A file is sent as it is encoded (``MediaPlayer(decode=False)``: no re-encoding on the unit, which is what a
body camera's hardware encoder gives too); a pattern and a camera are encoded by aiortc.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import random
import re
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from field_device import ice_restart
from field_device.outbox import Outbox, OutboxFull

log = logging.getLogger(__name__)

BATCH = 100  # positions in one data-channel message (the server allows 500)


WHIP_TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=10)
#: RFC 9725 §4.6 ``Link: <turn:…>; rel="ice-server"; username="…"; credential="…"; credential-type="password"``.
ICE_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="ice-server"(?:\s*;\s*username="([^"]*)")?(?:\s*;\s*credential="([^"]*)")?')


def ice_servers_from(links: list[str]) -> list[RTCIceServer]:
    """The STUN/TURN servers a WHIP answer named (with their time-limited credentials)."""
    servers = []
    for link in links:
        if (found := ICE_LINK.match(link)) is not None:
            servers.append(RTCIceServer(urls=found[1], username=found[2], credential=found[3]))
    return servers


class PatternCamera(VideoStreamTrack):
    """Moving colour bars at 640×480 (aiortc encodes them): a unit with no camera, for tests and demos."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        bars = np.array([[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0], [255, 0, 255], [255, 0, 0],
                         [0, 0, 255], [0, 0, 0]], dtype=np.uint8)  # fmt: skip
        self._row = np.repeat(bars, width // len(bars), axis=0)[None, :, :]
        self._height = height

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = np.repeat(np.roll(self._row, pts // 3000, axis=1), self._height, axis=0)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts, frame.time_base = pts, fractions.Fraction(time_base.numerator, time_base.denominator)
        return frame


class MediaUnit:
    def __init__(
        self,
        base_url: str,
        device_secret: str,
        *,
        source: str = "pattern",  # "pattern", "file:<path>" (sent encoded), or "camera:<device>" (v4l2)
        talkback: bool = True,
        outbox: Outbox | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
        session: aiohttp.ClientSession | None = None,
        label: str = "unit",
        connect_within: float = 15.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {device_secret}"}
        self.source, self.talkback, self.label = source, talkback, label
        self.outbox = outbox if outbox is not None else Outbox()
        self._backoff = backoff
        self._connect_within = connect_within
        self._session = session
        self._own_session = session is None
        self._rng = random.Random()
        self._task: asyncio.Task[None] | None = None
        self._pc: RTCPeerConnection | None = None
        #: STUN/TURN servers from the last WHIP answer, used from the next attempt on (a unit behind carrier NAT
        #: or on a network that blocks UDP gets through the centre's TURN server on its second try).
        self.ice_servers: list[RTCIceServer] = []
        self._channel: Any = None
        self._in_flight: list[int] = []
        self._players: list[Any] = []
        self._talk: asyncio.Task[None] | None = None
        self.location = ""
        self.etag = ""  # the session's entity-tag: an ICE restart must name it (RFC 9725 §4.3.1)
        self.connected = False
        self.reconnects = 0
        self.acked = 0
        self.talk_frames = 0  # talkback audio frames played
        self.last_error = ""

    # the device's side ----------------------------------------------------------------------------------
    def record(self, position: dict[str, Any]) -> int | None:
        """Keep a position (numbered by the outbox); sent now if the channel is open, else when it is."""
        try:
            seq = self.outbox.add(position)
        except OutboxFull:
            return None
        self._flush()
        return seq

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name=f"media-unit:{self.label}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._hang_up(delete=True)
        if self._own_session and self._session is not None:
            await self._session.close()

    async def drop_link(self) -> None:
        """Simulate the link failing (the peer connection closes under the unit)."""
        if self._pc is not None:
            await self._pc.close()

    async def handover(self, address: str) -> None:
        """The unit's network changed (4G handover, Wi-Fi ↔ 4G) and ``address`` is its new one: restart ICE
        on the same WHIP session (``field_device.ice_restart``) instead of publishing again, so the recording
        and the viewers carry on. If the server refuses, the link fails and the unit publishes anew."""
        pc, session = self._pc, self._session
        if pc is None or session is None or not self.location:
            raise ice_restart.RestartFailed("not publishing")
        restart = await ice_restart.begin(pc, address)
        async with session.patch(
            f"{self._base}{self.location}",
            data=restart.fragment,
            headers={**self._headers, "Content-Type": ice_restart.MEDIA_TYPE, "If-Match": self.etag},
            timeout=WHIP_TIMEOUT,
        ) as response:
            answer = await response.text()
            if response.status != 200:
                raise ice_restart.RestartFailed(f"ICE restart refused ({response.status}): {answer[:200]}")
            self.etag = response.headers.get("ETag", self.etag)
        await ice_restart.finish(restart, answer)
        log.info("%s: ICE restarted from %s", self.label, address)

    # the session ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = self._backoff[0]
        while True:
            try:
                await self._publish()
                delay = self._backoff[0]
                await self._until_down()
            except (aiohttp.ClientError, OSError, TimeoutError, ConnectionError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.info("%s: media link down (%s)", self.label, self.last_error)
            await self._hang_up(delete=False)
            self.reconnects += 1
            await asyncio.sleep(delay * self._rng.uniform(0.5, 1.5))
            delay = min(delay * 2, self._backoff[1])

    async def _publish(self) -> None:
        assert self._session is not None
        pc = self._pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers))
        for track in self._tracks():
            direction = "sendrecv" if track.kind == "audio" and self.talkback else "sendonly"
            pc.addTransceiver(track, direction=direction)
        channel = self._channel = pc.createDataChannel("telemetry", ordered=True)
        channel.on("open", self._flush)
        channel.on("message", self._on_answer)
        pc.on("track", self._on_track)
        await pc.setLocalDescription(await pc.createOffer())
        async with self._session.post(
            f"{self._base}/api/whip",
            data=pc.localDescription.sdp,
            headers={**self._headers, "Content-Type": "application/sdp"},
            timeout=WHIP_TIMEOUT,  # on a dead link a POST must fail, not hang for aiohttp's 5 minutes
        ) as response:
            answer = await response.text()
            if response.status != 201:
                raise ConnectionError(f"WHIP refused ({response.status}): {answer[:200]}")
            self.location = response.headers["Location"]
            self.etag = response.headers.get("ETag", "")
            self.ice_servers = ice_servers_from(response.headers.getall("Link", [])) or self.ice_servers
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    def _tracks(self) -> list[MediaStreamTrack]:
        if self.source.startswith("file:"):
            player = MediaPlayer(self.source.removeprefix("file:"), decode=False, loop=True)
        elif self.source.startswith("camera:"):
            player = MediaPlayer(self.source.removeprefix("camera:"), format="v4l2",
                                 options={"video_size": "640x480", "framerate": "30"})  # fmt: skip
        else:
            return [PatternCamera(), AudioStreamTrack()]
        self._players.append(player)
        return [t for t in (player.video, player.audio) if t is not None]

    async def _until_down(self) -> None:
        """Until the connection fails; one that never connects is given up after ``connect_within`` seconds
        (the server gives up its side after ``media.ice_timeout_seconds``), so the next try, with the ICE
        servers this answer named, starts at once instead of after ICE's own 40 s of retransmissions."""
        assert self._pc is not None
        deadline = asyncio.get_running_loop().time() + self._connect_within
        came_up = False
        while self._pc.connectionState not in ("failed", "closed"):
            self.connected = self._pc.connectionState == "connected"
            came_up |= self.connected
            if not came_up and asyncio.get_running_loop().time() > deadline:
                raise ConnectionError(f"not connected within {self._connect_within:g} s")
            await asyncio.sleep(0.1)
        raise ConnectionError(f"connection {self._pc.connectionState}")

    async def _hang_up(self, *, delete: bool) -> None:
        self.connected = False
        self._channel = None
        self._in_flight = []
        if delete and self.location and self._session is not None:
            with contextlib.suppress(aiohttp.ClientError):
                async with self._session.delete(f"{self._base}{self.location}", headers=self._headers):
                    pass
        if self._pc is not None:
            pc, self._pc = self._pc, None
            await pc.close()
        for player in self._players:
            for track in (player.video, player.audio):
                if track is not None:
                    track.stop()
        self._players = []
        if self._talk is not None:
            talk, self._talk = self._talk, None
            talk.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await talk

    # telemetry on the data channel ------------------------------------------------------------------
    def _flush(self) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open" or self._in_flight:
            return
        batch = self.outbox.oldest(BATCH)
        if batch:
            self._in_flight = [p["seq"] for p in batch]
            channel.send(json.dumps(batch))

    def _on_answer(self, message: str | bytes) -> None:
        answer = json.loads(message)
        if answer.get("type") == "ack":
            done = [*answer.get("stored", []), *answer.get("duplicates", [])]
            self.acked += len(done)
            self.outbox.ack(done)
            self.outbox.reject(r["seq"] for r in answer.get("rejected", []) if r.get("seq") is not None)
        elif answer.get("type") == "error":
            self.last_error = f"{answer.get('code')}: {answer.get('message')}"
        self._in_flight = []
        self._flush()

    # talkback ---------------------------------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._talk = asyncio.create_task(self._play(track), name=f"talkback:{self.label}")

    async def _play(self, track: MediaStreamTrack) -> None:
        """Play what the command centre says (here: count the frames; a device routes them to its speaker)."""
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.talk_frames += 1
