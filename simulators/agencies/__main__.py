"""``python -m simulators.agencies``: every configured agency's simulator on consecutive local ports."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path
from urllib.parse import urlsplit

from query_control.agencies import load_agencies
from simulators.agencies.server import SimulatorFleet


async def _serve(agencies_file: Path | None, host: str, base_port: int | None) -> None:
    agencies = load_agencies(agencies_file)
    if base_port is not None:
        ports = {a.id: base_port + i for i, a in enumerate(agencies)}
    else:
        ports = {a.id: urlsplit(a.endpoint).port or 80 for a in agencies}
    fleet = SimulatorFleet(agencies, host=host, ports=ports)
    await fleet.start()
    for agency in agencies:
        print(f"{fleet[agency.id].url}  {agency.id:<18} {agency.kind.value:<17} {agency.name}", flush=True)
    print(f"{len(agencies)} agency simulators running; Ctrl-C stops them", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fleet.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.agencies", description="partner agency simulator")
    parser.add_argument("--agencies", type=Path, help="agencies TOML (default: config/agencies.toml)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--base-port", type=int, help="consecutive ports from here (default: each endpoint's port)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.agencies, args.host, args.base_port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
