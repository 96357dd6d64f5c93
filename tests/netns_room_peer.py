"""Run inside one of the bad-link room test's namespaces: a command centre in a consultation room (aiortc). It
logs in, joins (``open`` makes it the host of a new room on a new operation, inviting the others by name),
publishes a camera pattern and a microphone, and views every other participant who publishes (one peer each,
the room's media routes), counting the video frames it decodes from each.

Lines on stdout (JSON): ``{"room": id}`` (the host, once), ``{"viewing": [names]}`` whenever that set grows
(a first frame decoded from each), ``{"counts": {name: frames}}`` after each ``count SECONDS`` line on stdin;
``quit`` leaves the room.
Used by test_rooms_media_netns.

    python tests/netns_room_peer.py BASE USERNAME PASSWORD ADDRESS (open NAME,NAME | ROOM_ID)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

import aiohttp
import aioice.ice
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from field_device.media_unit import PatternCamera

SDP = {"Content-Type": "application/sdp"}
TARGET = {"lat": 45.75, "lon": 126.64, "address": "哈尔滨市道里区", "radius_m": 200}


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message, ensure_ascii=False), flush=True)


async def ok(response: aiohttp.ClientResponse, status: int) -> Any:
    text = await response.text()
    assert response.status == status, f"{response.method} {response.url}: {response.status} {text}"
    return json.loads(text) if response.content_type == "application/json" else text


class Peer:
    def __init__(self, http: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> None:
        self.http, self.base, self.headers = http, base, headers
        self.room = ""
        self.me = 0
        self.frames: dict[str, int] = {}  # participant's name -> video frames decoded
        self.views: dict[int, RTCPeerConnection] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    async def open(self, names: list[str]) -> None:
        """A new operation of the host's court and a room on it, with ``names`` invited."""
        plan = {"kind": "search", "title": "会商测试行动", "onsite_commander": "王警官", "target": TARGET}
        async with self.http.post(f"{self.base}/api/operations", json=plan, headers=self.headers) as r:
            operation = (await ok(r, 201))["operation"]["id"]
        async with self.http.get(f"{self.base}/api/rooms/candidates", params={"operation_id": operation},
                                 headers=self.headers) as r:  # fmt: skip
            people = {c["display_name"]: c["user_id"] for c in (await ok(r, 200))["candidates"]}
        room = {"title": "坏链路会商", "operation_id": operation, "invited": [people[n] for n in names]}
        async with self.http.post(f"{self.base}/api/rooms", json=room, headers=self.headers) as r:
            self.room = (await ok(r, 201))["room"]["id"]
        say({"room": self.room})

    async def join(self) -> None:
        async with self.http.get(f"{self.base}/api/me", headers=self.headers) as r:
            self.me = (await ok(r, 200))["user"]["id"]
        async with self.http.post(f"{self.base}/api/rooms/{self.room}/join", headers=self.headers) as r:
            await ok(r, 200)

    async def publish(self) -> None:
        self.publisher.addTransceiver(PatternCamera(320, 240), direction="sendonly")
        self.publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
        await self.publisher.setLocalDescription(await self.publisher.createOffer())
        offer = self.publisher.localDescription.sdp
        path = f"{self.base}/api/rooms/{self.room}/media/publish"
        async with self.http.post(path, data=offer, headers={**self.headers, **SDP}) as r:
            answer = await ok(r, 201)
        await self.publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def follow(self) -> None:
        """Views each participant who publishes, as they come (the room's members over HTTP)."""
        while True:
            async with self.http.get(f"{self.base}/api/rooms/{self.room}", headers=self.headers) as r:
                members = (await ok(r, 200))["room"]["members"]
            for member in members:
                if member["user_id"] != self.me and member.get("publishing") and member["user_id"] not in self.views:
                    await self.view(member["user_id"], member.get("name") or member["display_name"])
                    say({"viewing": sorted(self.frames)})
            await asyncio.sleep(0.3)

    async def view(self, user_id: int, name: str) -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.views[user_id] = pc
        self.frames[name] = 0
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")

        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                task = asyncio.create_task(self.count(track, name), name=f"count:{name}")
                self.tasks.add(task)

        pc.on("track", on_track)
        await pc.setLocalDescription(await pc.createOffer())
        path = f"{self.base}/api/rooms/{self.room}/media/participants/{user_id}/view"
        async with self.http.post(path, data=pc.localDescription.sdp, headers={**self.headers, **SDP}) as r:
            answer = await ok(r, 201)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        for _ in range(600):  # viewing means a first frame decoded (over a bad link ICE and DTLS take a while)
            if self.frames[name]:
                return
            await asyncio.sleep(0.1)
        raise SystemExit(f"no frame from {name} within 60 s")

    async def count(self, track: MediaStreamTrack, name: str) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames[name] += 1

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for pc in [*self.views.values(), self.publisher]:
            await pc.close()
        with contextlib.suppress(aiohttp.ClientError):
            async with self.http.post(f"{self.base}/api/rooms/{self.room}/leave", headers=self.headers):
                pass


async def main(base: str, username: str, password: str, address: str, *what: str) -> None:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address]
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/auth/login", json={"username": username, "password": password}) as r:
            peer = Peer(http, base, {"Authorization": f"Bearer {(await ok(r, 200))['token']}"})
        if what[0] == "open":
            await peer.open(what[1].split(","))
        else:
            peer.room = what[0]
        await peer.join()
        await peer.publish()
        follower = asyncio.create_task(peer.follow(), name="follow")
        try:
            while (line := (await loop.run_in_executor(None, sys.stdin.readline)).split()) and line[0] != "quit":
                before = dict(peer.frames)
                await asyncio.sleep(float(line[1]))
                say({"counts": {name: n - before.get(name, 0) for name, n in peer.frames.items()}})
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await peer.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
