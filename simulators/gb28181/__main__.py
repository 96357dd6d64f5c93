"""GB/T 28181 devices for the demo: body cameras that register over SIP, walk and report MobilePosition, and
(the first ``--video`` of them) stream a generated H.264 clip with a G.711A tone as PS over RTP when the platform
INVITEs them.

    python -m simulators.gb28181 --url http://127.0.0.1:8080 --sip 127.0.0.1:15060 --devices 3 --video 1 --register

With ``--register`` missing devices are added through the API as the administrator (``POST /api/units`` with a
``gb_device_id``) and their SIP passwords kept in ``--secrets`` (owner-readable only), as ``simulators.units``
keeps device secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from pathlib import Path

import aiohttp

from simulators.gb28181.clip import g711_clip, h264_clip
from simulators.gb28181.device import SimulatedDevice, device_ids
from simulators.units.simulate import admin_password, load_secrets, save_secrets


async def register(args: argparse.Namespace, missing: list[tuple[str, str]], secrets: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as http:
        login = {"username": args.admin_user, "password": admin_password(args)}
        async with http.post(f"{args.url}/api/auth/login", json=login) as response:
            if response.status != 200:
                raise SystemExit(f"cannot log in as {args.admin_user}: {await response.text()}")
            headers = {"Authorization": f"Bearer {(await response.json())['token']}"}
        for unit_id, device_id in missing:
            body = {"id": unit_id, "name": f"GB 执法记录仪 {device_id[-3:]}", "kind": "body_camera",
                    "court_id": args.court, "gb_device_id": device_id}  # fmt: skip
            async with http.post(f"{args.url}/api/units", json=body, headers=headers) as response:
                if response.status != 201:
                    raise SystemExit(f"adding {unit_id} failed ({response.status}): {await response.text()}")
                secrets[device_id] = (await response.json())["sip_password"]
            save_secrets(Path(args.secrets), secrets)


async def run(args: argparse.Namespace) -> None:
    ids = device_ids(args.domain, args.devices, args.first)
    secrets = load_secrets(Path(args.secrets))
    missing = [(f"{args.court}-{args.prefix}{n + 1:02d}", d) for n, d in enumerate(ids) if d not in secrets]
    if missing and args.register:
        await register(args, missing, secrets)
    elif missing:
        raise SystemExit(f"no SIP password for {missing[0][1]} in {args.secrets}: use --register")
    host, _, port = args.sip.rpartition(":")
    clip = h264_clip(50, gop=25) if args.video else None
    tone = g711_clip(50) if args.video else None
    devices = [SimulatedDevice(d, secrets[d], (host, int(port)), domain=args.domain, platform_id=args.platform_id,
                               seed=n + 7, clip=clip if n < args.video else None, audio=tone,
                               position_seconds=args.position_seconds, keepalive_seconds=args.keepalive_seconds)
               for n, d in enumerate(ids)]  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.duration:
        loop.call_later(args.duration, stop.set)
    print(f"simulating {len(devices)} GB/T 28181 devices ({args.video} with video) against SIP {args.sip}", flush=True)
    results = await asyncio.gather(*(d.run(stop) for d in devices), return_exceptions=True)
    for device, result in zip(devices, results, strict=True):
        if isinstance(result, BaseException):
            print(f"device {device.device_id}: {result}", flush=True)
    print(
        f"positions sent {sum(d.positions_sent for d in devices)}, video calls {sum(d.streams_served for d in devices)}"
    )


def parser() -> argparse.ArgumentParser:
    data_dir = Path(os.environ.get("CC_DATA_DIR", "var"))
    p = argparse.ArgumentParser(prog="python -m simulators.gb28181", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the command centre (to register devices)")
    p.add_argument("--sip", default="127.0.0.1:5060", help="the platform's SIP address host:port")
    p.add_argument("--devices", type=int, default=3)
    p.add_argument("--first", type=int, default=1, help="the sequence number of the first device id")
    p.add_argument("--video", type=int, default=1, help="how many of them have a camera that answers INVITE")
    p.add_argument("--court", default="HLJ0102")
    p.add_argument("--prefix", default="G", help="unit ids are <court>-<prefix><n>")
    p.add_argument("--domain", default=os.environ.get("CC_GB28181__DOMAIN", "3402000000"))
    p.add_argument("--platform-id", default=os.environ.get("CC_GB28181__PLATFORM_ID", "34020000002000000001"))
    p.add_argument("--position-seconds", type=float, default=2.0)
    p.add_argument("--keepalive-seconds", type=float, default=30.0)
    p.add_argument("--duration", type=float, default=0.0, help="seconds; 0 runs until interrupted")
    p.add_argument("--secrets", default=str(data_dir / "simulated-gb-devices.json"), help="device id -> SIP password")
    p.add_argument("--register", action="store_true", help="add missing devices as the administrator")
    p.add_argument("--admin-user", default="admin")
    p.add_argument("--admin-password", default="", help="default: read from --admin-password-file")
    p.add_argument("--admin-password-file", default=str(data_dir / "first-admin-password"))
    return p


def main(argv: list[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(parser().parse_args(argv)))


if __name__ == "__main__":
    main()
