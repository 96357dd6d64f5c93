"""Shared fixtures: the same suites run against SQLite and real PostgreSQL, the in-process bus and real
Redis. Each PostgreSQL test gets a schema of its own and each Redis test a key namespace of its own, so
runs never see each other's data."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from command_center.access_log import AccessLogger
from command_center.app import create_app
from command_center.bootstrap import import_courts
from command_center.credentials import Passwords, lookup_hash, new_device_secret
from command_center.keys import STORE
from config.settings import (
    AuthSettings,
    BusSettings,
    EntrustmentSettings,
    MapSettings,
    MediaSettings,
    ObservabilitySettings,
    ServerSettings,
    Settings,
    StoreSettings,
    TrackingSettings,
)
from core.ids import CourtId, UnitId
from event_bus.factory import build_bus
from event_bus.port import EventBus
from persistence.factory import build_store
from persistence.models import Role, UnitKind
from persistence.port import Store

POSTGRES_DSN = os.environ.get("CC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CC_TEST_REDIS", "redis://127.0.0.1:6379/0")
DEFAULT_PASSWORD = "correct horse 1"
COURTS_FILE = Path(__file__).resolve().parent.parent / "config" / "courts.toml"

#: Argon2 at its cheapest: tests create many users, and the cost setting is not what they check.
FAST_AUTH = AuthSettings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)


@asynccontextmanager
async def fresh_pg_schema() -> AsyncIterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield schema
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


@asynccontextmanager
async def fresh_redis_namespace() -> AsyncIterator[str]:
    """A fresh Redis key namespace, deleted afterwards."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    try:
        yield namespace
    finally:
        client = aioredis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    async with fresh_pg_schema() as schema:
        yield schema


@pytest.fixture
async def redis_namespace() -> AsyncIterator[str]:
    async with fresh_redis_namespace() as namespace:
        yield namespace


def store_settings(kind: str, tmp_path: Path) -> StoreSettings:
    if kind == "sqlite":
        return StoreSettings(url=f"sqlite:///{tmp_path / 'cc.db'}")
    return StoreSettings(url=POSTGRES_DSN, pool_min=1, pool_max=4)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated, empty store of each adapter."""
    async with AsyncExitStack() as stack:
        schema = await stack.enter_async_context(fresh_pg_schema()) if request.param == "postgres" else None
        built = build_store(store_settings(request.param, tmp_path), schema=schema)
        await built.open()
        stack.push_async_callback(built.close)
        await built.migrate()
        yield built


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    """A started bus of each adapter with a small history, to exercise trimming."""
    async with AsyncExitStack() as stack:
        if request.param == "memory":
            built = build_bus(BusSettings(url="memory://", history=50))
        else:
            namespace = await stack.enter_async_context(fresh_redis_namespace())
            built = build_bus(BusSettings(url=REDIS_URL, history=50), namespace=namespace)
        await built.start()
        stack.push_async_callback(built.close)
        yield built


# The running app ------------------------------------------------------------------------------------


class World:
    """A running app with the court tree imported and one logged-in caller per role, plus a device."""

    def __init__(self, client: TestClient[Any, web.Application]) -> None:
        self.client = client
        self.tokens: dict[str, str] = {}
        self.device_secret = ""
        self.passwords: dict[str, str] = {}

    @property
    def store(self) -> Store:
        return self.client.app[STORE]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def add_user(self, username: str, role: Role, court: str, password: str = DEFAULT_PASSWORD) -> None:
        await self.store.add_user(
            username=username,
            display_name=username,
            password_hash=Passwords(FAST_AUTH).hash(password),
            role=role,
            court_id=CourtId(court),
        )
        self.passwords[username] = password

    async def ticket(self, who: str) -> str:
        """A single-use WebSocket ticket for ``who``'s credential, as a browser page gets one."""
        response = await self.client.post("/api/auth/ticket", headers=self.auth(who))
        assert response.status == 200, await response.text()
        ticket: str = (await response.json())["ticket"]
        return ticket

    async def login(self, username: str) -> str:
        response = await self.client.post(
            "/api/auth/login", json={"username": username, "password": self.passwords[username]}
        )
        assert response.status == 200, await response.text()
        token: str = (await response.json())["token"]
        return token


AppFactory = Callable[..., Awaitable[World]]


@pytest.fixture
def make_world(aiohttp_client: Any, tmp_path: Path) -> AppFactory:
    async def make(
        store: StoreSettings | None = None,
        bus: BusSettings | None = None,
        schema: str | None = None,
        tracking: TrackingSettings | None = None,
        media: MediaSettings | None = None,
        server: ServerSettings | None = None,
        maps: MapSettings | None = None,
        observability: ObservabilitySettings | None = None,
        entrustments: EntrustmentSettings | None = None,
        **auth: Any,
    ) -> World:
        settings = Settings(
            store=store or StoreSettings(url=f"sqlite:///{tmp_path / 'app.db'}"),
            bus=bus or BusSettings(),
            auth=FAST_AUTH.model_copy(update=auth),
            tracking=tracking or TrackingSettings(),
            media=media or Settings().media,  # default: from the environment (CC_MEDIA__...)
            data_dir=tmp_path,
            server=server or ServerSettings(),
            maps=maps or MapSettings(),
            observability=observability or ObservabilitySettings(),
            entrustments=entrustments or EntrustmentSettings(),
        )
        # With the access logger `serve` uses, so tests see what production logs (never a secret);
        # TestServer ignores runner options given to its constructor, start_server takes them.
        running = TestServer(create_app(settings, store_schema=schema))
        await running.start_server(access_log_class=AccessLogger)
        client = await aiohttp_client(running)
        world = World(client)
        restarted = bool(await world.store.list_users(None))  # a second app on the database of a first
        if not restarted:
            await import_courts(world.store, COURTS_FILE)
        # One person of each role at the Harbin intermediate court, and a unit of a basic court below it.
        for role in Role:
            if restarted:
                world.passwords[role.value] = DEFAULT_PASSWORD
            else:
                await world.add_user(role.value, role, "HLJ01")
            world.tokens[role.value] = await world.login(role.value)
        if restarted:
            return world  # the unit is registered already; its secret stayed with the first world
        world.device_secret = new_device_secret()
        await world.store.add_unit(
            unit_id=UnitId("HLJ0102-U01"),
            name="道里一号",
            kind=UnitKind.BODY_CAMERA,
            court_id=CourtId("HLJ0102"),
            secret_hash=lookup_hash(world.device_secret),
        )
        world.tokens["device"] = world.device_secret
        return world

    return make


@pytest.fixture
async def world(make_world: AppFactory) -> World:
    return await make_world()
