"""Run inside the field-conditions test's unit namespace: the reference media unit (aiortc) streams its
camera pattern over WHIP and records one position a second on the telemetry data channel for ``seconds``,
whatever the link does; then waits until every position is acknowledged and prints JSON figures.
Used by test_field_conditions."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aioice.ice

from field_device.media_unit import MediaUnit


async def main(base: str, secret: str, address: str, seconds: float, drain_within: float) -> None:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address]
    unit = MediaUnit(base, secret, talkback=False, backoff=(0.5, 5.0), label="field")
    await unit.start()
    recorded = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            recorded += unit.record({"fix_time_ms": int(time.time() * 1000), "lat": 45.75 + recorded / 100_000,
                                     "lon": 126.64, "speed_mps": 1.0}) is not None  # fmt: skip
            await asyncio.sleep(1.0)
        for _ in range(int(drain_within / 0.2)):  # until every position is acknowledged, or give up
            if not len(unit.outbox):
                break
            await asyncio.sleep(0.2)
        print(json.dumps({"recorded": recorded, "unacknowledged": len(unit.outbox), "reconnects": unit.reconnects,
                          "last_error": unit.last_error}), flush=True)  # fmt: skip
    finally:
        await unit.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])))
