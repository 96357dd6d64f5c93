"""The baseline of the media benchmark: aiortc's ordinary path, as a minimal WHIP/WHEP server. Each unit's
video is decoded once, fanned out with ``MediaRelay``, re-encoded for every viewer and re-encoded again by a
``MediaRecorder`` writing Matroska — what the command centre's passthrough avoids. No auth: bench only.

    python -m bench.media_baseline --port 9000 --folder /tmp/recordings
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRecorder, MediaRelay

RELAY = MediaRelay()


async def whip(request: web.Request) -> web.Response:
    unit = request.match_info["unit"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    request.app["pcs"].add(pc)
    recorder = MediaRecorder(str(request.app["folder"] / f"{unit}.mkv"))

    @pc.on("track")
    async def on_track(track: object) -> None:
        request.app["tracks"][unit] = track
        recorder.addTrack(RELAY.subscribe(track))  # type: ignore[arg-type]
        await recorder.start()

    await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp")


async def whep(request: web.Request) -> web.Response:
    track = request.app["tracks"].get(request.match_info["unit"])
    if track is None:
        return web.Response(status=409, text="not streaming")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    request.app["pcs"].add(pc)
    pc.addTrack(RELAY.subscribe(track))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--folder", type=Path, required=True)
    args = parser.parse_args()
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # loopback only (bench)
    app = web.Application()
    app["folder"], app["tracks"], app["pcs"] = args.folder, {}, set()
    app.router.add_post("/whip/{unit}", whip)
    app.router.add_post("/whep/{unit}", whep)
    app.router.add_get("/health", health)

    async def close(app: web.Application) -> None:
        await asyncio.gather(*(pc.close() for pc in app["pcs"]), return_exceptions=True)

    app.on_shutdown.append(close)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
