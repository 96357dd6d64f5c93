"""Run inside the handover test's network namespace: the reference media unit streams from ``old``; an
operator's aiortc viewer watches it; when the test has moved the unit's address (it prints ``move`` and waits
for a line on stdin), the unit restarts ICE from ``new`` on the same session. Prints JSON: frames the viewer
decoded before and after, the longest pause between two of its frames, and the unit's reconnects."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time

import aiohttp
import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from field_device.media_unit import MediaUnit


async def main(base: str, secret: str, username: str, password: str, unit_id: str, server: str, old: str,
               new: str) -> None:  # fmt: skip
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [old]
    unit = MediaUnit(base, secret, talkback=False, backoff=(0.5, 5.0), label="handover")
    await unit.start()
    viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    arrived: list[float] = []
    try:
        for _ in range(200):
            if unit.connected:
                break
            await asyncio.sleep(0.1)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [server]  # the viewer sits beside the server
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/auth/login", json={"username": username, "password": password}) as r:
                headers = {"Authorization": f"Bearer {(await r.json())['token']}"}
            viewer.addTransceiver("video", direction="recvonly")
            tracks: asyncio.Queue[object] = asyncio.Queue()
            viewer.on("track", lambda track: tracks.put_nowait(track))
            await viewer.setLocalDescription(await viewer.createOffer())
            async with http.post(f"{base}/api/whep/{unit_id}", data=viewer.localDescription.sdp,
                                 headers={**headers, "Content-Type": "application/sdp"}) as r:  # fmt: skip
                answer = await r.text()
                assert r.status == 201, answer
        await viewer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        track = await asyncio.wait_for(tracks.get(), 15)

        async def watch() -> None:
            while True:
                await track.recv()  # type: ignore[attr-defined]
                arrived.append(time.monotonic())

        watching = asyncio.create_task(watch())
        await asyncio.sleep(3)
        print("move", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        moved = time.monotonic()
        await unit.handover(new)
        await asyncio.sleep(4)
        watching.cancel()
        gaps = [b - a for a, b in itertools.pairwise(arrived)]
        print(json.dumps({"before": sum(t < moved for t in arrived), "after": sum(t > moved for t in arrived),
                          "longest_pause_s": round(max(gaps), 3), "reconnects": unit.reconnects,
                          "connected": unit.connected}), flush=True)  # fmt: skip
    finally:
        await viewer.close()
        await unit.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:9]))
