"""Run inside the test's network namespace: log in as an operator, wait for the unit to stream, watch it over
WHEP with aiortc, and print what arrived as JSON (frames, width, height, seconds taken). Used by
test_gstreamer_whip and test_field_conditions."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp
import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription


async def main(base: str, username: str, password: str, unit: str, address: str = "127.0.0.1") -> None:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/auth/login", json={"username": username, "password": password}) as r:
            headers = {"Authorization": f"Bearer {(await r.json())['token']}"}
        give_up = time.monotonic() + 20
        while True:
            async with http.get(f"{base}/api/media/streaming", headers=headers) as r:
                if unit in (await r.json())["unit_ids"]:
                    break
            if time.monotonic() > give_up:
                raise SystemExit("the unit never streamed")
            await asyncio.sleep(0.2)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        got: asyncio.Queue[object] = asyncio.Queue()
        pc.on("track", lambda track: got.put_nowait(track))
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(f"{base}/api/whep/{unit}", data=pc.localDescription.sdp,
                             headers={**headers, "Content-Type": "application/sdp"}) as r:  # fmt: skip
            answer = await r.text()
            assert r.status == 201, answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        track = await asyncio.wait_for(got.get(), 15)
        started = time.monotonic()
        frames = [await asyncio.wait_for(track.recv(), 15) for _ in range(30)]  # type: ignore[attr-defined]
        seconds = round(time.monotonic() - started, 2)
        print(json.dumps({"frames": len(frames), "width": frames[-1].width, "height": frames[-1].height,
                          "seconds": seconds}))  # fmt: skip
        await pc.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
