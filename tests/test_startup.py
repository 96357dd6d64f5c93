"""A component that fails at start-up is stopped and reported, never a hang: ``serve`` exits non-zero with the
reason. The failure is real: a Redis user that may not subscribe to the geofence changes' channel."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from aiohttp import web

from command_center.app import create_app
from command_center.keys import HTTP_CLIENT
from config.settings import BusSettings, Settings, StoreSettings
from core.errors import StartupFailed
from tests.conftest import FAST_AUTH, REDIS_URL
from tests.test_cli import ROOT, _env, _free_port

pytestmark = pytest.mark.redis

#: How long Redis has to confirm a subscription here (production: 10 s): the refused one never confirms, so
#: each test waits this out; the allowed one still has ample time on a loaded machine.
REFUSED_AFTER_S = 2.0


@pytest.fixture(params=["geofences"])
def restricted_redis(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A Redis URL whose user may do everything but subscribe to one topic (the param); its namespace."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    user, password = f"no-{request.param}-{namespace}", uuid.uuid4().hex
    allowed = [f"{namespace}:ev:{topic}" for topic in ("geofences", "unit_states") if topic != request.param]
    admin = redis.Redis.from_url(REDIS_URL)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"],
                      channels=allowed, reset_channels=True)  # fmt: skip
    host_port = REDIS_URL.split("://", 1)[1]
    try:
        yield f"redis://{user}:{password}@{host_port}", namespace
    finally:
        admin.acl_deluser(user)
        keys = list(admin.scan_iter(match=f"{namespace}:*"))
        if keys:
            admin.delete(*keys)
        admin.close()


def test_serve_stops_and_says_why_when_a_component_fails_at_start(
    tmp_path: Path, restricted_redis: tuple[str, str]
) -> None:
    url, namespace = restricted_redis
    env = _env(tmp_path) | {"CC_BUS__URL": url, "CC_BUS__NAMESPACE": namespace, "CC_CLUSTER__NODE_ID": namespace,
                            "CC_BUS__SUBSCRIBE_TIMEOUT_SECONDS": str(REFUSED_AFTER_S)}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "command_center", "serve", "--port", str(_free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the server did not start: geofences: following changes:"), last
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]  # JSON log lines
    failed = [line for line in logged if line["logger"] == "command_center.cli" and line["level"] == "error"]
    assert failed and failed[0]["message"] == "the server did not start" and failed[0]["exception"]  # the traceback
    assert os.path.exists(tmp_path / "cli.db")  # it got as far as the store, which it closed again


FAILS_FIRST = {
    "geofences": "geofences: following changes",
    "unit_states": "tracker: following the other processes' units",
}


@pytest.mark.parametrize("restricted_redis", ["geofences", "unit_states"], indirect=True)
async def test_what_started_before_the_failure_is_stopped(
    tmp_path: Path, restricted_redis: tuple[str, str], request: pytest.FixtureRequest
) -> None:
    """As ``serve`` runs it (``web.run_app``): the failed start-up raises, then the app's cleanup runs."""
    url, namespace = restricted_redis
    refused = request.node.callspec.params["restricted_redis"]
    settings = Settings(store=StoreSettings(url=f"sqlite:///{tmp_path / 'app.db'}"), data_dir=tmp_path,
                        bus=BusSettings(url=url, namespace=namespace, subscribe_timeout_seconds=REFUSED_AFTER_S),
                        auth=FAST_AUTH)  # fmt: skip
    app = create_app(settings)
    runner = web.AppRunner(app)
    with pytest.raises(StartupFailed) as failed:
        await runner.setup()
    assert failed.value.message.startswith(f"{FAILS_FIRST[refused]}: TimeoutError"), failed.value.message
    await runner.cleanup()
    await asyncio.sleep(0)  # let cancelled tasks finish
    names = {task.get_name() for task in asyncio.all_tasks()}
    started = {"position-writer", "tracker-publisher", "tracker-offline-sweeper", "tracker-replication",
               "task-overdue-sweeper", "screen-heartbeat", "screen-feed-sweeper", "redis-bus-reader",
               "cluster-leases"}  # fmt: skip
    assert not names & started, names & started
    assert app[HTTP_CLIENT].closed  # the contexts that had started were closed too


async def test_every_component_started_is_stopped_with_the_app(tmp_path: Path) -> None:
    """The composition root stops, in reverse, everything it started: no task of a component outlives the app."""
    settings = Settings(store=StoreSettings(url=f"sqlite:///{tmp_path / 'app.db'}"), data_dir=tmp_path, auth=FAST_AUTH)
    app = create_app(settings)
    runner = web.AppRunner(app)
    before = asyncio.all_tasks()
    await runner.setup()
    started = asyncio.all_tasks() - before
    assert {"position-writer", "screen-heartbeat", "revocations-follow"} <= {task.get_name() for task in started}
    await runner.cleanup()
    await asyncio.sleep(0)  # let cancelled tasks finish
    assert not {task.get_name() for task in started if not task.done()}
    assert app[HTTP_CLIENT].closed
