"""A bad mobile link in user space: forwards Ethernet frames between two interfaces with delay, random loss
and a rate limit, like ``tc netem`` (which this machine's kernel lacks; its ``tbf`` alone cannot delay).

Run inside the test's "wan" network namespace, between the veth peers of the unit's and the server's
namespaces (neither has an address here, so the kernel itself forwards nothing):

    python tests/netem_bridge.py wu ws --delay-ms 150 --loss 0.1 --rate-kbit 2000 --outage-file PATH

Each direction has its own bottleneck queue: a frame leaves after the ones before it have been sent at the
rate, then travels ``delay``; a frame that would wait more than a second in the queue is dropped (tail drop,
as a real modem's buffer). While ``--outage-file`` exists every frame is dropped (a dead zone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
MAX_QUEUE_S = 1.0


class Direction:
    def __init__(self, source: socket.socket, target: socket.socket, args: argparse.Namespace, seed: int) -> None:
        self.source, self.target, self.args = source, target, args
        self.random = random.Random(seed)
        self.free_at = 0.0  # when the bottleneck has sent everything queued
        self.sent = self.lost = self.queue_drops = self.dead = 0

    def on_readable(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame, address = self.source.recvfrom(65_535)
            except BlockingIOError:
                return
            if address[2] == PACKET_OUTGOING:
                continue  # our own sends on this interface
            if self.args.outage_file and os.path.exists(self.args.outage_file):
                self.dead += 1
                continue
            if self.random.random() < self.args.loss:
                self.lost += 1
                continue
            now = time.monotonic()
            start = max(now, self.free_at)
            if start - now > MAX_QUEUE_S:
                self.queue_drops += 1
                continue
            self.free_at = start + len(frame) * 8 / (self.args.rate_kbit * 1000)
            loop.call_at(loop.time() + (self.free_at - now) + self.args.delay_ms / 1000, self._send, frame)

    def _send(self, frame: bytes) -> None:
        try:
            self.target.send(frame)
            self.sent += 1
        except OSError:
            self.lost += 1


def raw(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((interface, 0))
    sock.setblocking(False)
    return sock


async def main(args: argparse.Namespace) -> None:
    a, b = raw(args.a), raw(args.b)
    forward, back = Direction(a, b, args, seed=1), Direction(b, a, args, seed=2)
    loop = asyncio.get_running_loop()
    loop.add_reader(a.fileno(), forward.on_readable)
    loop.add_reader(b.fileno(), back.on_readable)
    print(json.dumps({"ready": True}), flush=True)
    while True:
        await asyncio.sleep(2)  # figures per sending interface, as JSON
        figures = {name: {"sent": d.sent, "lost": d.lost, "queue_dropped": d.queue_drops, "dead_zone": d.dead}
                   for name, d in ((args.a, forward), (args.b, back))}  # fmt: skip
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--delay-ms", type=float, default=150.0)
    parser.add_argument("--loss", type=float, default=0.1)
    parser.add_argument("--rate-kbit", type=float, default=2000.0)
    parser.add_argument("--outage-file", default="")
    asyncio.run(main(parser.parse_args()))
