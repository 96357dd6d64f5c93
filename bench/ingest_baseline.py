"""The bare ingest baseline: a minimal aiohttp WebSocket server that receives, parses and acks, no more.

    python -m bench.ingest_baseline --port 8099

It answers the unit socket path of the real server (``/api/telemetry/ws``) with the real ack shape, so
bench/telemetry_load.py drives it unchanged; it checks no credential, validates nothing and stores nothing.
What the server's CPU per position costs above this is the price of our own work (validation, status,
storage, fan-out); bench/telemetry.py prints the ratio. Same loop (uvloop) and collector settings as the
server, so the comparison is of the work, not of the settings.
"""

from __future__ import annotations

import argparse

import orjson
import uvloop
from aiohttp import WSMsgType, web

from bench.harness import tune_gc


async def unit_socket(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            data = orjson.loads(message.data)
            ack = {"type": "ack", "stored": [data["seq"]], "duplicates": [], "rejected": []}
            await ws.send_frame(orjson.dumps(ack), WSMsgType.TEXT)
    return ws


async def health(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/api/telemetry/ws", unit_socket)
    app.router.add_get("/api/health", health)
    tune_gc()
    # the server's listen backlog (command_center/connection_guard.py): 10,000 units connecting within seconds
    # overflow aiohttp's default of 128 on a busy machine, and the baseline then measures no units at all
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=uvloop.new_event_loop(),
                backlog=1024)  # fmt: skip


if __name__ == "__main__":
    main()
