"""Per-call cost of the storage hot paths: the raw driver, our shim (``persistence.database``) and
SQLAlchemy Core 2.x async, measured in the same run, rounds interleaved.

    python -m bench.storage_paths                      # PostgreSQL (CC_BENCH_POSTGRES) and SQLite
    python -m bench.storage_paths --calls 200 --batch 500

Paths: ``telemetry`` (one batch of positions into ``positions`` + ``unit_latest``; the shim and the raw
path both send it as one JSON parameter to one statement on PostgreSQL, SQLAlchemy uses its multi-row
INSERT … ON CONFLICT DO NOTHING RETURNING),
``status`` (the ``unit_state`` upsert) and ``job`` (the compare-and-set ``query_jobs`` attempt count).
Prints the median microseconds per call of each; SQLAlchemy rows are skipped when it is not installed
(``pip install -e .[bench]``). The figures chose the shim (docs/storage.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import msgspec

from bench.harness import fresh_store_url
from config.settings import StoreSettings
from core.ids import CourtId, JobId, QueryId, UnitId, UserId
from persistence.database import POSITION_COLUMNS, position_row
from persistence.factory import build_store
from persistence.models import Court, CourtLevel, Duty, Position, Role, UnitKind, UnitState
from persistence.port import Store
from persistence.query_models import Job, JobStatus, PartyKind, Query, submit_audit

Call = Callable[[int], Awaitable[Any]]
UNITS = 200
JOBS = 20


async def _seed(store: Store) -> list[JobId]:
    """Units to report, and one query's jobs to count attempts of."""
    await store.upsert_court(Court(CourtId("B01"), "bench", CourtLevel.INTERMEDIATE, None))
    for i in range(UNITS):
        await store.add_unit(unit_id=UnitId(f"u{i}"), name=f"u{i}", kind=UnitKind.HANDHELD, court_id=CourtId("B01"),
                             secret_hash=f"s{i}")  # fmt: skip
    judge = await store.add_user(username="j", display_name="j", password_hash="x", role=Role.JUDGE,
                                 court_id=CourtId("B01"))  # fmt: skip
    case = await store.add_case(case_number="(2026)B01执1号", court_id=CourtId("B01"), title="t",
                                created_by=judge.id, created_ms=1, parties=[(PartyKind.PERSON, "p", "x")])  # fmt: skip
    query = Query(QueryId("q"), case.id, UserId(judge.id), "r", 1, 2**40)
    jobs = [Job(JobId(f"j{i}"), query.id, case.parties[0].id, f"a{i}", JobStatus.PENDING, 0, None, 1, 1)  # type: ignore[arg-type]
            for i in range(JOBS)]  # fmt: skip
    await store.add_query(query, jobs, audit=submit_audit(query, jobs))
    return [j.id for j in jobs]


class Batches:
    """Fresh positions per call (new sequence numbers), the same for every contender."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seq = 0

    def next(self) -> list[Position]:
        self.seq += 1
        now = int(time.time() * 1000)
        return [
            Position(UnitId(f"u{i % UNITS}"), self.seq * self.size + i, now, 45.7, 126.6, 5.0, 1.0, 90.0, None, 80,
                     False, now)
            for i in range(self.size)
        ]  # fmt: skip


# raw drivers: the statements the adapters ran before the shim ----------------------------------------
_UNIT_STATE = (
    "INSERT INTO unit_state (unit_id, duty, sos, online, last_seen_ms) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (unit_id) DO UPDATE SET duty = excluded.duty, sos = excluded.sos, "
    "online = excluded.online, last_seen_ms = excluded.last_seen_ms"
)
_JOB = (
    "UPDATE query_jobs SET attempts = attempts + 1, updated_ms = $2 WHERE id = ANY($1)"
    " AND status = 'pending' RETURNING id, attempts"
)


def _raw_pg(pool: asyncpg.Pool, batches: Batches, jobs: list[JobId]) -> dict[str, Call]:
    from persistence.pg_database import _INSERT_POSITIONS

    async def telemetry(i: int) -> Any:
        await pool.fetch(_INSERT_POSITIONS, msgspec.json.encode(batches.next()).decode())

    async def status(i: int) -> Any:
        await pool.execute(_UNIT_STATE, f"u{i % UNITS}", "en_route", False, True, i)

    async def job(i: int) -> Any:
        await pool.fetch(_JOB, [jobs[i % JOBS]], i)

    return {"telemetry": telemetry, "status": status, "job": job}


_SQLITE_COLUMNS = ", ".join(POSITION_COLUMNS)
_SQLITE_INSERT = f"INSERT OR IGNORE INTO positions ({_SQLITE_COLUMNS}) VALUES ({', '.join('?' * 12)})"
_SQLITE_LATEST = (
    f"INSERT INTO unit_latest ({_SQLITE_COLUMNS}) VALUES ({', '.join('?' * 12)}) ON CONFLICT (unit_id) DO UPDATE"
    " SET seq = excluded.seq, fix_time_ms = excluded.fix_time_ms, lat = excluded.lat, lon = excluded.lon,"
    " accuracy_m = excluded.accuracy_m, speed_mps = excluded.speed_mps, heading_deg = excluded.heading_deg,"
    " altitude_m = excluded.altitude_m, battery_pct = excluded.battery_pct, sos = excluded.sos,"
    " received_ms = excluded.received_ms WHERE (min(excluded.fix_time_ms, excluded.received_ms), excluded.seq)"
    " > (min(unit_latest.fix_time_ms, unit_latest.received_ms), unit_latest.seq)"
)


def _raw_sqlite(db: aiosqlite.Connection, lock: asyncio.Lock, batches: Batches, jobs: list[JobId]) -> dict[str, Call]:
    """The statements the SQLite adapter ran before the shim (telemetry: existing keys read, executemany)."""
    unit_state = _UNIT_STATE.replace("$", "?")

    async def telemetry(i: int) -> Any:
        positions = batches.next()
        keys = [(p.unit_id, p.seq) for p in positions]
        existing: set[tuple[str, int]] = set()
        async with lock:
            for start in range(0, len(keys), 400):
                chunk = keys[start : start + 400]
                marks = ",".join("(?, ?)" for _ in chunk)
                cursor = await db.execute(
                    f"SELECT unit_id, seq FROM positions WHERE (unit_id, seq) IN (VALUES {marks})",
                    [v for key in chunk for v in key],
                )
                existing.update((r[0], r[1]) for r in await cursor.fetchall())
                await cursor.close()
        fresh = [p for p in positions if (p.unit_id, p.seq) not in existing]
        newest: dict[str, Position] = {}
        for p in positions:
            best = newest.get(p.unit_id)
            if best is None or (p.fix_time_ms, p.seq) > (best.fix_time_ms, best.seq):
                newest[p.unit_id] = p
        async with lock:
            await db.execute("BEGIN IMMEDIATE")
            await db.executemany(_SQLITE_INSERT, [position_row(p) for p in fresh])
            await db.executemany(_SQLITE_LATEST, [position_row(p) for p in newest.values()])
            await db.execute("COMMIT")

    async def status(i: int) -> Any:
        async with lock:
            await db.execute(unit_state, (f"u{i % UNITS}", "en_route", 0, 1, i))

    async def job(i: int) -> Any:
        async with lock:
            cursor = await db.execute(
                "UPDATE query_jobs SET attempts = attempts + 1, updated_ms = ? WHERE id IN (?)"
                " AND status = 'pending' RETURNING id, attempts",
                (i, jobs[i % JOBS]),
            )
            await cursor.fetchall()
            await cursor.close()

    return {"telemetry": telemetry, "status": status, "job": job}


def _shim(store: Store, batches: Batches, jobs: list[JobId]) -> dict[str, Call]:
    async def telemetry(i: int) -> Any:
        await store.insert_positions(batches.next())

    async def status(i: int) -> Any:
        await store.save_unit_state(UnitId(f"u{i % UNITS}"), UnitState(Duty.EN_ROUTE, False, True, i))

    async def job(i: int) -> Any:
        await store.start_job_attempts([jobs[i % JOBS]], i)

    return {"telemetry": telemetry, "status": status, "job": job}


def _sqlalchemy(engine: Any, dialect: str, batches: Batches, jobs: list[JobId]) -> dict[str, Call]:
    from sqlalchemy import column, table, update
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if dialect == "postgres" else sqlite.insert
    positions = table("positions", *(column(c) for c in POSITION_COLUMNS))
    unit_state = table("unit_state", column("unit_id"), column("duty"), column("sos"), column("online"),
                       column("last_seen_ms"))  # fmt: skip
    query_jobs = table("query_jobs", column("id"), column("attempts"), column("updated_ms"), column("status"))

    async def telemetry(i: int) -> Any:
        rows = [dict(zip(POSITION_COLUMNS, position_row(p), strict=True)) for p in batches.next()]
        async with engine.begin() as conn:
            stmt = insert(positions).on_conflict_do_nothing().returning(positions.c.unit_id, positions.c.seq)
            await conn.execute(stmt, rows)

    async def status(i: int) -> Any:
        stmt = insert(unit_state).values(unit_id=f"u{i % UNITS}", duty="en_route", sos=False, online=True,
                                         last_seen_ms=i)  # fmt: skip
        stmt = stmt.on_conflict_do_update(index_elements=["unit_id"], set_={
            "duty": stmt.excluded.duty, "sos": stmt.excluded.sos, "online": stmt.excluded.online,
            "last_seen_ms": stmt.excluded.last_seen_ms})  # fmt: skip
        async with engine.begin() as conn:
            await conn.execute(stmt)

    async def job(i: int) -> Any:
        stmt = (
            update(query_jobs)
            .where(query_jobs.c.id.in_([jobs[i % JOBS]]), query_jobs.c.status == "pending")
            .values(attempts=query_jobs.c.attempts + 1, updated_ms=i)
            .returning(query_jobs.c.id, query_jobs.c.attempts)
        )
        async with engine.begin() as conn:
            (await conn.execute(stmt)).fetchall()

    return {"telemetry": telemetry, "status": status, "job": job}


async def _measure(contenders: dict[str, dict[str, Call]], calls: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median µs per call of each (contender, path), rounds interleaved so drift hits all alike."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in contenders}
    paths = sorted({p for c in contenders.values() for p in c})
    for _ in range(rounds):
        for path in paths:
            for name, contender in contenders.items():
                if path not in contender:
                    continue
                call = contender[path]
                await call(0)  # warm (prepared statements, caches)
                started = time.perf_counter()
                for i in range(calls):
                    await call(i + 1)
                samples[name].setdefault(path, []).append((time.perf_counter() - started) / calls * 1e6)
    return {n: {p: statistics.median(v) for p, v in s.items()} for n, s in samples.items()}


def _print(dialect: str, results: dict[str, dict[str, float]], batch: int) -> None:
    paths = sorted({p for r in results.values() for p in r})
    print(f"\n{dialect}: median µs per call (telemetry: one batch of {batch})")
    print(f"{'':14}" + "".join(f"{p:>14}" for p in paths))
    for name, by_path in results.items():
        print(f"{name:14}" + "".join(f"{by_path[p]:>14.0f}" if p in by_path else f"{'-':>14}" for p in paths))


def _sqlalchemy_engine(url: str, schema: str | None = None) -> Any | None:
    try:
        from sqlalchemy.ext.asyncio import create_async_engine
    except ImportError:
        return None
    if url.startswith("sqlite"):
        return create_async_engine(url.replace("sqlite://", "sqlite+aiosqlite://"))
    return create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"), pool_size=4)


async def run(calls: int, batch: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        for kind in ("postgres", "sqlite"):
            url = await fresh_store_url(kind, Path(workdir), "bench_storage_paths")
            store = build_store(StoreSettings(url=url, pool_min=4, pool_max=4))
            await store.open()
            await store.migrate()
            jobs = await _seed(store)
            batches = Batches(batch)
            contenders: dict[str, dict[str, Call]] = {}
            raw_pool: asyncpg.Pool | None = None
            raw_db: aiosqlite.Connection | None = None
            if kind == "postgres":
                raw_pool = await asyncpg.create_pool(url, min_size=4, max_size=4)
                contenders["raw asyncpg"] = _raw_pg(raw_pool, batches, jobs)
            else:
                raw_db = await aiosqlite.connect(url.removeprefix("sqlite:///"), isolation_level=None)
                await raw_db.execute("PRAGMA busy_timeout=5000")
                contenders["raw aiosqlite"] = _raw_sqlite(raw_db, asyncio.Lock(), batches, jobs)
            contenders["shim"] = _shim(store, batches, jobs)
            engine = _sqlalchemy_engine(url)
            if engine is not None:
                contenders["sqlalchemy"] = _sqlalchemy(engine, kind, batches, jobs)
            try:
                _print(kind, await _measure(contenders, calls, rounds), batch)
            finally:
                if engine is not None:
                    await engine.dispose()
                if raw_pool is not None:
                    await raw_pool.close()
                if raw_db is not None:
                    await raw_db.close()
                await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="calls per path per round")
    parser.add_argument("--batch", type=int, default=500, help="positions per telemetry batch")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median is printed)")
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.batch, args.rounds))


if __name__ == "__main__":
    main()
