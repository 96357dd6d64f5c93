"""Login under a flood: counts that hold under concurrency, bounded password hashing, locks per address,
an administrator's unlock, changing one's password, and bodies that used to be 500s.

The app runs behind a trusted proxy (127.0.0.1, the test client) so each request names its client address
in X-Forwarded-For, as nginx does; the shared (Redis) variant runs on real PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from command_center.throttle import PAIR_FREE_ATTEMPTS, USER_MAX_DELAY_S, LoginThrottle
from config.settings import BusSettings, ServerSettings, StoreSettings
from tests.conftest import POSTGRES_DSN, REDIS_URL, AppFactory, World, fresh_pg_schema
from tests.conftest import fresh_redis_namespace as fresh_namespace

ROOT = Path(__file__).resolve().parent.parent
LOGIN = "/api/auth/login"
PROXY = ServerSettings(trusted_proxies=["127.0.0.1"])


def at(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


@pytest.fixture(params=["local", pytest.param("redis", marks=[pytest.mark.redis, pytest.mark.postgres])])
async def proxied(request: pytest.FixtureRequest, make_world: AppFactory) -> AsyncIterator[World]:
    """A world behind the trusted proxy, with this process's login records or the shared ones in Redis. The
    verifier admits 64 at once from an address, so the throttle's own count is what holds a burst back."""
    roomy = {"verify_per_address": 64, "verify_waiting": 64}
    if request.param == "local":
        yield await make_world(server=PROXY, **roomy)
        return
    async with fresh_pg_schema() as schema, fresh_namespace() as namespace:
        yield await make_world(server=PROXY, store=StoreSettings(url=POSTGRES_DSN), schema=schema,
                               bus=BusSettings(url=REDIS_URL, namespace=namespace), **roomy)  # fmt: skip


async def _post(world: World, body: dict[str, str], address: str) -> tuple[int, dict[str, str], Any]:
    async with world.client.post(LOGIN, json=body, headers=at(address)) as response:
        return response.status, dict(response.headers), await response.json()


async def test_parallel_wrong_passwords_get_only_the_free_tries_and_lock_that_address_only(proxied: World) -> None:
    """60 wrong passwords at once: each attempt is counted before its hash is checked, so no more than the
    free tries are verified (401); the rest are refused (429 with Retry-After); then the right password is
    refused at that address and accepted at another."""
    world = proxied
    guesses = [_post(world, {"username": "judge", "password": f"wrong guess {n}"}, "198.51.100.7") for n in range(60)]
    answers = await asyncio.gather(*guesses)
    statuses = Counter(status for status, _, _ in answers)
    assert set(statuses) <= {401, 429}, statuses
    assert 1 <= statuses[401] <= PAIR_FREE_ATTEMPTS, statuses
    for status, headers, body in answers:
        if status == 429:
            assert int(headers["Retry-After"]) >= 1 and body["error"]["code"] == "too_many_requests"
    right = {"username": "judge", "password": world.passwords["judge"]}
    status, headers, body = await _post(world, right, "198.51.100.7")
    assert status == 429 and "try again in" in body["error"]["message"] and int(headers["Retry-After"]) >= 1
    status, _, body = await _post(world, right, "198.51.100.8")  # the judge at their own console
    assert status == 200, body


@pytest.mark.parametrize("addresses", [1, 50])
async def test_a_flood_of_unknown_users_is_refused_at_once_and_a_real_user_logs_in(
    make_world: AppFactory, addresses: int
) -> None:
    """Unknown usernames cost a full (decoy) verification each; a flood gets a bounded number of them and
    quick refusals for the rest, and a real user at another address logs in meanwhile: one flooding address
    is held to its own places, many addresses to the share of the queue left to unknown names."""
    world = await make_world(server=PROXY, argon2_time_cost=2, argon2_memory_kib=32_768, verify_workers=1,
                             verify_waiting=2, verify_per_address=2)  # fmt: skip
    flood = [_post(world, {"username": f"nobody{n}", "password": "wrong guess!"}, f"203.0.113.{n % addresses}")
             for n in range(300)]  # fmt: skip
    flooding = asyncio.gather(*flood)
    await asyncio.sleep(0)  # the flood is in before the real user
    status, _, body = await _post(world, {"username": "operator", "password": world.passwords["operator"]}, "10.1.1.5")
    assert status == 200, body
    answers = await flooding
    statuses = Counter(status for status, _, _ in answers)
    assert set(statuses) <= {401, 429, 503}, statuses
    if addresses == 1:
        assert statuses[401] <= 20, statuses  # the address's free attempts: every other was refused unverified
    assert all("Retry-After" in headers for status, headers, _ in answers if status in (429, 503))


def test_a_user_cannot_be_locked_out_from_everywhere_for_long() -> None:
    """Failures spread over many addresses delay the user everywhere, but for a minute at most; the address
    that made them stays locked for up to 15 minutes."""
    throttle = LoginThrottle()
    now = 1000.0
    for n in range(200):
        throttle.attempt("judge", f"10.0.{n // 250}.{n % 250}", now)
        now += 0.01
    assert throttle.wait_seconds("judge", "192.0.2.1", now) <= USER_MAX_DELAY_S
    for _ in range(12):
        throttle.attempt("judge", "192.0.2.99", now + 10_000)  # later: the user-wide delay has passed
        now += 120
    assert throttle.wait_seconds("judge", "192.0.2.99", now + 10_000) > USER_MAX_DELAY_S
    assert throttle.wait_seconds("judge", "192.0.2.1", now + 10_000) <= USER_MAX_DELAY_S
    throttle.succeeded("judge", "192.0.2.1")
    assert throttle.wait_seconds("judge", "192.0.2.1", now + 10_000) == 0


async def test_an_admin_unlocks_a_user(proxied: World) -> None:
    world = proxied
    for n in range(PAIR_FREE_ATTEMPTS):
        status, _, _ = await _post(world, {"username": "judge", "password": f"wrong guess {n}"}, "198.51.100.9")
        assert status == 401
    right = {"username": "judge", "password": world.passwords["judge"]}
    assert (await _post(world, right, "198.51.100.9"))[0] == 429
    judge = await world.store.find_user("judge")
    assert judge is not None
    async with world.client.post(f"/api/users/{judge.id}/unlock", headers=world.auth("admin")) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["cleared"] >= 1
    status, _, body = await _post(world, right, "198.51.100.9")
    assert status == 200, body
    audited = [e for e in await world.store.audit_entries(limit=100) if e.action == "user.unlock"]
    assert [e.details["username"] for e in audited] == ["judge"] and audited[0].actor_id is not None
    async with world.client.post("/api/users/999999/unlock", headers=world.auth("admin")) as response:
        assert response.status == 404


async def test_a_user_changes_their_password_and_other_sessions_end(world: World) -> None:
    old = world.passwords["judge"]
    other = await world.login("judge")  # the judge is logged in somewhere else too
    change = "/api/auth/password"
    auth = world.auth("judge")
    weak = await world.client.post(change, json={"old_password": old, "new_password": " " * 10}, headers=auth)
    body = await weak.json()
    assert weak.status == 422 and body["error"]["message"].startswith("new_password: too easy to guess"), body
    named = await world.client.post(change, json={"old_password": old, "new_password": "judgejudge1"}, headers=auth)
    assert named.status == 422  # the user's own name is no password
    wrong = await world.client.post(change, json={"old_password": "not it at all", "new_password": "x"}, headers=auth)
    assert wrong.status == 403 and "current password is wrong" in (await wrong.json())["error"]["message"]
    new = "lantern orchard 峰 river"
    done = await world.client.post(change, json={"old_password": old, "new_password": new}, headers=auth)
    assert done.status == 200, await done.text()
    token = (await done.json())["token"]
    for stale in (world.tokens["judge"], other):
        gone = await world.client.get("/api/me", headers={"Authorization": f"Bearer {stale}"})
        assert gone.status == 401
    assert (await world.client.get("/api/me", headers={"Authorization": f"Bearer {token}"})).status == 200
    assert (await world.client.post(LOGIN, json={"username": "judge", "password": old})).status == 401
    assert (await world.client.post(LOGIN, json={"username": "judge", "password": new})).status == 200


async def test_weak_passwords_are_refused_by_the_admin_route(world: World) -> None:
    user = {"username": "zhao", "display_name": "赵法官", "role": "judge", "court_id": "HLJ0102"}
    for weak in (" " * 10, "password123", "zhao123456"):
        response = await world.client.post("/api/users", json={**user, "password": weak}, headers=world.auth("admin"))
        body = await response.json()
        assert response.status == 422 and body["error"]["details"][0]["field"] == "password", body


def test_weak_passwords_are_refused_by_the_command_line(tmp_path: Path) -> None:
    env = {"CC_DATA_DIR": str(tmp_path), "CC_STORE__URL": f"sqlite:///{tmp_path / 'cli.db'}", "CC_CONFIG": "",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    added = subprocess.run([sys.executable, "-m", "command_center", "user", "add", "--username", "qian",
                            "--display-name", "钱", "--role", "judge", "--court", "HLJ0102"], input=" " * 10 + "\n",
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert added.returncode == 1 and "too easy to guess" in added.stderr, added.stderr


@pytest.mark.parametrize(
    "raw",
    [b'{"username": ' + b"9" * 5000 + b', "password": "x"}', b"[" * 50_000, b'{"a":' * 30_000],
    ids=["5000-digit integer", "50000 brackets", "30000 objects"],
)
async def test_hostile_json_bodies_are_refused_not_500(world: World, raw: bytes) -> None:
    response = await world.client.post(LOGIN, data=raw, headers={"Content-Type": "application/json"})
    body = await response.json()
    assert response.status == 400 and body["error"]["code"] == "invalid_json", body


@pytest.mark.redis
async def test_the_command_line_unlocks_a_user_in_the_shared_records(tmp_path: Path) -> None:
    """With several processes the records are in Redis, where ``user unlock`` clears them (and audits it)."""
    from command_center.shared_throttle import RedisLoginGuard

    async with fresh_namespace() as namespace:
        env = {"CC_DATA_DIR": str(tmp_path), "CC_STORE__URL": f"sqlite:///{tmp_path / 'cli.db'}", "CC_CONFIG": "",
               "CC_BUS__URL": REDIS_URL, "CC_BUS__NAMESPACE": namespace, "PATH": "/usr/bin:/bin",
               "CC_AUTH__ARGON2_MEMORY_KIB": "8", "CC_AUTH__ARGON2_TIME_COST": "1",
               "CC_AUTH__ARGON2_PARALLELISM": "1"}  # fmt: skip

        async def cli(*args: str) -> tuple[int, str]:
            process = await asyncio.create_subprocess_exec(sys.executable, "-m", "command_center", *args, env=env,
                                                           cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                           stderr=asyncio.subprocess.STDOUT)  # fmt: skip
            output, _ = await asyncio.wait_for(process.communicate(), 60)
            return await process.wait(), output.decode()

        status, output = await cli("init")
        assert status == 0, output
        guard = RedisLoginGuard(REDIS_URL, namespace=namespace)
        try:
            for _ in range(PAIR_FREE_ATTEMPTS):
                assert await guard.attempt("admin", "198.51.100.20") == 0
            assert await guard.attempt("admin", "198.51.100.20") > 0
            status, output = await cli("user", "unlock", "--username", "admin")
            assert status == 0 and "records cleared" in output, output
            fresh = RedisLoginGuard(REDIS_URL, namespace=namespace)  # another process: no local records
            try:
                assert await fresh.attempt("admin", "198.51.100.20") == 0
            finally:
                await fresh.close()
        finally:
            await guard.close()
        status, output = await cli("user", "unlock", "--username", "nobody")
        assert status == 1 and "no user" in output
        status, output = await cli("audit", "verify")
        assert status == 0 and "1 entries" in output, output
