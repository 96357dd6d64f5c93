"""Helpers of the asset-query integration tests: the real agency simulator on ephemeral ports and an
app pointed at it (on a store that can outlive the app, to kill and resume)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from bench.harness import ROOT
from command_center.app import create_app
from command_center.bootstrap import import_courts
from config.settings import QuerySettings, Settings, StoreSettings
from persistence.models import Role
from query_control.adapters.kinds import MAPPERS
from query_control.agencies import AgencyConfig, SimulatorProfile, load_agencies, with_endpoints
from simulators.agencies.data import holdings
from simulators.agencies.server import SimulatorFleet
from tests.conftest import COURTS_FILE, FAST_AUTH, World

PERSON = ("张三", "11010519491231002X")
ORG = ("哈尔滨某某贸易有限公司", "91350100M000100Y43")
CASE_NUMBER = "(2026)黑01执123号"
FAST = SimulatorProfile(latency_median_ms=30, latency_sigma=0.3, seed=1)


def test_agencies(profiles: dict[str, dict[str, Any]] | None = None, **settings: Any) -> list[AgencyConfig]:
    """The shipped 18 agencies, quick by default (tests set slow or faulty ones explicitly)."""
    agencies = []
    unknown = set(profiles or {}) - {a.id for a in load_agencies()}
    assert not unknown, f"no such agencies: {sorted(unknown)}"  # a typo would silently test nothing
    for agency in load_agencies():
        profile = FAST.model_copy(update=(profiles or {}).get(agency.id, {}))
        base = {"timeout_seconds": 2.0, "retries": 1, "backoff_ms": 50.0, "simulator": profile}
        agencies.append(agency.model_copy(update={**base, **settings}))
    return agencies


test_agencies.__test__ = False  # type: ignore[attr-defined]


@asynccontextmanager
async def running_fleet(agencies: list[AgencyConfig]) -> AsyncIterator[tuple[SimulatorFleet, list[AgencyConfig]]]:
    fleet = SimulatorFleet(agencies)
    await fleet.start()
    try:
        yield fleet, with_endpoints(agencies, fleet.endpoints)
    finally:
        await fleet.close()


@asynccontextmanager
async def query_app(
    tmp_path: Path,
    agencies: list[AgencyConfig],
    *,
    deadline: float = 5.0,
    store: StoreSettings | None = None,
    schema: str | None = None,
    tokens: dict[str, str] | None = None,
    queries: QuerySettings | None = None,
) -> AsyncIterator[World]:
    """A running app; people are created (and logged in) unless ``tokens`` of an earlier app are given."""
    settings = Settings(
        store=store or StoreSettings(url=f"sqlite:///{tmp_path / 'queries.db'}"),
        auth=FAST_AUTH,
        data_dir=tmp_path,
        queries=queries or QuerySettings(deadline_seconds=deadline),
    )
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings, store_schema=schema, agencies=agencies)))
    await client.start_server()
    try:
        world = World(client)
        if tokens is None:
            await import_courts(world.store, COURTS_FILE)
            people = [(r.value, r, "HLJ01") for r in Role] + [
                ("judge2", Role.JUDGE, "HLJ01"),
                ("far_supervisor", Role.SUPERVISOR, "HLJ11"),
                ("basic_supervisor", Role.SUPERVISOR, "HLJ0102"),
            ]
            for name, role, court in people:
                await world.add_user(name, role, court)
                world.tokens[name] = await world.login(name)
        else:
            world.tokens = dict(tokens)
        yield world
    finally:
        await client.close()


async def open_case(world: World, who: str = "judge", registrar: str = "supervisor") -> dict[str, Any]:
    """The case of two debtors, registered by hand by ``registrar`` (judges do not open cases) for ``who``."""
    judge = await world.store.find_user(who)
    assert judge is not None
    response = await world.client.post(
        "/api/cases",
        json={
            "case_number": CASE_NUMBER,
            "title": "借款合同纠纷执行",
            "parties": [
                {"kind": "person", "name": PERSON[0], "identifier": PERSON[1]},
                {"kind": "organisation", "name": ORG[0], "identifier": ORG[1]},
            ],
            "judge_ids": [judge.id],
        },
        headers=world.auth(registrar),
    )
    assert response.status == 201, await response.text()
    case: dict[str, Any] = await response.json()
    return case


async def submit(world: World, case_id: int, who: str = "judge", **selection: Any) -> dict[str, Any]:
    response = await world.client.post(
        "/api/queries",
        json={"case_id": case_id, "reason": "申请执行人申请查控被执行人财产", **selection},
        headers=world.auth(who),
    )
    assert response.status == 202, await response.text()
    query: dict[str, Any] = await response.json()
    return query


async def get_query(world: World, query_id: str, who: str = "judge") -> dict[str, Any]:
    response = await world.client.get(f"/api/queries/{query_id}", headers=world.auth(who))
    assert response.status == 200, await response.text()
    query: dict[str, Any] = await response.json()
    return query


async def wait_complete(world: World, query_id: str, within: float = 15.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            query = await world.store.get_query(query_id)  # type: ignore[arg-type]
            if query.completed_ms is not None:
                return await get_query(world, query_id)
            await asyncio.sleep(0.05)


def expected_refs(agency: AgencyConfig, identifier: str) -> list[str]:
    """What the simulator's deterministic data says this agency holds for the party."""
    mapper = MAPPERS[agency.kind]
    return [mapper.to_asset(mapper.record.model_validate(r)).ref for r in holdings(agency, identifier)]


class QueryScreen:
    """The judge's screen subscribed to one query: the snapshot, then every update folded in."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.complete = False

    async def pump(self, until: Any, within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not until(self):
                message = await self.ws.receive()
                assert message.type == WSMsgType.TEXT, f"socket ended: {message}"
                data = message.json()
                self.messages.append(data)
                if data["type"] == "snapshot":
                    self.jobs = {j["job_id"]: j for j in data["query"]["jobs"]}
                    self.complete = data["query"]["complete"]
                elif data["type"] == "query_update" and data["event"] == "job":
                    self.jobs[data["job"]["job_id"]] = data["job"]
                elif data["type"] == "query_update" and data["event"] == "complete":
                    self.complete = True


async def open_query_screen(world: World, query_id: str, who: str = "judge") -> QueryScreen:
    ws = await world.client.ws_connect("/api/screen/ws", headers=world.auth(who))
    await ws.send_json({"type": "subscribe", "topics": [f"query:{query_id}"]})
    return QueryScreen(ws)


@contextmanager
def simulator_process(agencies_file: Path) -> Iterator[subprocess.Popen[str]]:
    """The agency simulator as a process of its own (``python -m simulators.agencies``), up and serving
    every agency of the file on its configured port; stopped afterwards."""
    simulator = subprocess.Popen([sys.executable, "-m", "simulators.agencies", "--agencies", str(agencies_file)],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert simulator.stdout is not None
    for line in simulator.stdout:
        if "agency simulators running" in line:
            break
    try:
        yield simulator
    finally:
        simulator.terminate()
        simulator.wait(10)
