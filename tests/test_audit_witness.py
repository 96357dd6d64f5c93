"""上下一体 for the audit chain: the upper court's centre keeps its lower courts' signed checkpoints.

The witness route admits a checkpoint only under the key the upper centre pinned for that court, appends it,
and refuses one that forks or goes backwards. End to end: a lower centre (its own process, the CLI) sends its
checkpoints, the upper centre exports what it holds, and the lower centre's `audit verify` finds against that
export the tail its database lost. The background signer signs in the leader process only.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.harness import free_port
from cluster.port import LEADER
from cluster.redis import RedisCoordinator
from command_center.keys import AUDIT
from config.settings import AuditSettings, StoreSettings
from core.checkpoint import Checkpoint, public_key_hex, sign
from persistence.factory import build_store
from persistence.port import Store
from query_control.audit import AuditLog
from query_control.audit_key import load_or_create_key
from query_control.checkpoints import Checkpointer, read_witness_file, verify_with_witnesses
from tests.conftest import POSTGRES_DSN, REDIS_URL, AppFactory, fresh_pg_schema

ROOT = Path(__file__).resolve().parent.parent
LOWER = "HLJ0102"
WITNESS = "/api/audit/witness"


def _head(n: int) -> str:
    return f"{n:02x}" * 32


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def upper_store(request: pytest.FixtureRequest) -> AsyncIterator[tuple[StoreSettings | None, str | None]]:
    """The upper centre's database: the default SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "postgres":
        async with fresh_pg_schema() as schema:
            yield StoreSettings(url=POSTGRES_DSN, pool_min=1, pool_max=4), schema
    else:
        yield None, None


async def test_the_upper_centre_keeps_signed_checkpoints_and_refuses_forks_and_going_back(
    upper_store: tuple[StoreSettings | None, str | None], make_world: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Ed25519PrivateKey.generate()
    monkeypatch.setenv("CC_AUDIT__LOWER_COURTS", json.dumps({LOWER: public_key_hex(key)}))
    world = await make_world(store=upper_store[0], schema=upper_store[1])

    async def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = await world.client.post(WITNESS, json=body)
        return response.status, await response.json()

    first = sign(key, court=LOWER, seq=5, head=_head(5), at_ms=1)
    assert await post(first.to_dict()) == (200, {"court": LOWER, "seq": 5, "new": True})
    assert await post(first.to_dict()) == (200, {"court": LOWER, "seq": 5, "new": False})  # a resend is no harm

    status, answer = await post(sign(key, court=LOWER, seq=5, head=_head(55), at_ms=2).to_dict())
    assert status == 409 and answer["error"]["code"] == "checkpoint_fork", answer
    assert "seq 5" in answer["error"]["message"]

    assert (await post(sign(key, court=LOWER, seq=9, head=_head(9), at_ms=3).to_dict()))[0] == 200
    status, answer = await post(sign(key, court=LOWER, seq=7, head=_head(7), at_ms=4).to_dict())
    assert status == 409 and answer["error"]["code"] == "checkpoint_backwards", answer
    assert "older than the one witnessed at seq 9" in answer["error"]["message"]

    unsigned = sign(key, court=LOWER, seq=12, head=_head(12), at_ms=5).to_dict()
    del unsigned["sig"]
    status, answer = await post(unsigned)
    assert status == 422 and answer["error"]["message"].startswith("sig:"), answer

    impostor = Ed25519PrivateKey.generate()
    refused = {
        "another key": sign(impostor, court=LOWER, seq=12, head=_head(12), at_ms=6).to_dict(),
        "another key, claiming the pinned one": {
            **sign(impostor, court=LOWER, seq=12, head=_head(12), at_ms=6).to_dict(),
            "key": public_key_hex(key),
        },
        "head changed after signing": {
            **sign(key, court=LOWER, seq=12, head=_head(12), at_ms=7).to_dict(),
            "head": _head(13),
        },
        "a court with no pinned key": sign(key, court="HLJ0103", seq=12, head=_head(12), at_ms=8).to_dict(),
    }
    for label, body in refused.items():
        status, answer = await post(body)
        assert status == 401 and answer["error"]["code"] == "unauthenticated", (label, answer)
    messages = [(await post(body))[1]["error"]["message"] for body in refused.values()]
    assert "pinned to" in messages[0] and "does not verify" in messages[1] and "does not verify" in messages[2]
    assert "no key is pinned for court HLJ0103" in messages[3]

    held = await world.store.witnessed_checkpoints(LOWER)
    assert [(c.seq, c.head) for c in held] == [(5, _head(5)), (9, _head(9))]  # nothing refused was kept


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "command_center", "audit", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _record(url: str, count: int) -> None:
    store = build_store(StoreSettings(url=url))
    await store.open()
    await store.migrate()
    try:
        for i in range(count):
            await AuditLog(store).record("query.view", None, reason=f"查看 {i}")
    finally:
        await store.close()


async def test_a_lower_centre_sends_its_checkpoints_and_verifies_against_the_upper_centres_export(
    make_world: AppFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    lower_db = tmp_path / "lower" / "lower.db"
    lower_db.parent.mkdir()
    lower = {**base, "CC_STORE__URL": f"sqlite:///{lower_db}", "CC_DATA_DIR": str(lower_db.parent),
             "CC_AUDIT__COURT_ID": LOWER}  # fmt: skip
    code, out, _ = await _cli(lower, "key")
    assert code == 0
    monkeypatch.setenv("CC_AUDIT__LOWER_COURTS", json.dumps({LOWER: out.strip()}))
    world = await make_world()  # the upper centre
    lower["CC_AUDIT__UPPER_URL"] = str(world.client.make_url("/")).rstrip("/")

    await _record(lower["CC_STORE__URL"], 4)
    assert (await _cli(lower, "checkpoint"))[0] == 0
    await _record(lower["CC_STORE__URL"], 3)
    code, out, err = await _cli(lower, "checkpoint")
    assert code == 0 and "signed at entry 7" in out, (out, err)
    assert [c.seq for c in await world.store.witnessed_checkpoints(LOWER)] == [4, 7]

    upper = {**base, "CC_STORE__URL": f"sqlite:///{tmp_path / 'app.db'}", "CC_DATA_DIR": str(tmp_path)}
    code, exported, _ = await _cli(upper, "witness-export", "--court", LOWER)
    assert code == 0 and len(exported.splitlines()) == 2
    export = tmp_path / "from-upper.jsonl"
    export.write_text(exported)

    # The lower centre's database loses its tail, its own checkpoints with it.
    with sqlite3.connect(lower_db) as db:
        db.execute("DELETE FROM audit_log WHERE seq > 5")
        db.execute("DELETE FROM audit_checkpoints")
    assert (await _cli(lower, "verify"))[0] == 0  # nothing on the lower centre itself shows it ...
    code, _, err = await _cli(lower, "verify", "--witness", str(export))
    assert code == 1  # ... the upper centre's export does
    assert f"witness file {export} witnessed a checkpoint at seq 7: entries 6 to 7 were deleted" in err, err

    # Re-signing the shortened chain and sending it up is refused by the upper centre: it went backwards.
    code, out, err = await _cli(lower, "checkpoint")
    assert code == 1 and "signed at entry 5" in out
    assert "REFUSED checkpoint 5" in err and "checkpoint_backwards" in err, err
    assert [c.seq for c in await world.store.witnessed_checkpoints(LOWER)] == [4, 7]


@pytest.mark.redis
async def test_only_the_leader_signs_and_each_checkpoint_reaches_the_witness_file(
    store: Store, redis_namespace: str, tmp_path: Path
) -> None:
    settings = AuditSettings(court_id="HLJ01", checkpoint_entries=3, checkpoint_seconds=3600,
                             witness_file=tmp_path / "witness.jsonl",
                             upper_url=f"http://127.0.0.1:{free_port()}")  # fmt: skip  # an upper centre that is down
    nodes = [
        RedisCoordinator(
            REDIS_URL, node_id=f"n{i}", node_url=f"http://n{i}", lease_seconds=3, namespace=redis_namespace
        )
        for i in (1, 2)
    ]
    async with aiohttp.ClientSession() as http:
        signers = [Checkpointer(store, settings, tmp_path / f"data{i}", node, http) for i, node in enumerate(nodes)]
        for node in nodes:
            await node.start()
            node.want(LEADER)
        try:
            for _ in range(200):  # until the election settles (each node tries in the background)
                if any(node.holds(LEADER) for node in nodes):
                    break
                await asyncio.sleep(0.05)
            leader = next(i for i, node in enumerate(nodes) if node.holds(LEADER))
            follower = 1 - leader
            await _log(store, 3)
            assert await signers[follower].tick() is None
            made = await signers[leader].tick()
            assert made is not None and (made.seq, made.court) == (3, "HLJ01")
            await _log(store, 1)
            assert await signers[leader].tick() is None  # one new entry, and less than an hour since
            await _log(store, 2)
            assert await signers[follower].tick() is None
            made = await signers[leader].tick()
            assert made is not None and made.seq == 6
        finally:
            for node in nodes:
                await node.close()
    assert not (tmp_path / f"data{follower}").exists()  # the follower never even made a key
    lines = (tmp_path / "witness.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [3, 6]  # once each, while the upper centre is retried
    assert [c.seq for c in await store.audit_checkpoints()] == [3, 6]
    assert all(isinstance(c, Checkpoint) and c.court == "HLJ01" for c in await store.audit_checkpoints())


async def _log(store: Store, count: int) -> None:
    for i in range(count):
        await AuditLog(store).record("query.view", None, reason=f"查看 {i}")


async def test_the_server_signs_checkpoints_in_the_background(
    make_world: AppFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    witness = tmp_path / "witness-volume.jsonl"
    monkeypatch.setenv("CC_AUDIT__COURT_ID", "HLJ01")
    monkeypatch.setenv("CC_AUDIT__CHECKPOINT_SECONDS", "0.2")
    monkeypatch.setenv("CC_AUDIT__WITNESS_FILE", str(witness))
    world = await make_world()
    audit = world.client.app[AUDIT]
    for i in range(3):
        await audit.record("query.view", None, reason=f"查看 {i}")
    head = await world.store.audit_head()
    assert head is not None
    for _ in range(200):  # the leader's signer runs on its own; wait until the witness holds the head
        if witness.exists() and any(json.loads(line)["seq"] == head[0] for line in witness.read_text().splitlines()):
            break
        await asyncio.sleep(0.05)
    found, problems = read_witness_file(witness)
    assert problems == [] and found[-1].checkpoint.seq == head[0] and found[-1].checkpoint.head == head[1]
    public_key = public_key_hex(load_or_create_key(tmp_path))  # the key the server made in its data dir
    report = await verify_with_witnesses(world.store, found, public_key=public_key, court="HLJ01")
    assert report.ok and report.witnessed_to == head[0], report
