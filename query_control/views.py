"""What the judge's screen and the API show of a query, and the bus topic its updates travel on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.ids import QueryId
from persistence.query_models import Asset, Job, Party, Query
from persistence.query_port import QueryStore


def query_topic(query_id: QueryId) -> str:
    return f"query.{query_id}"


def asset_view(asset: Asset) -> dict[str, Any]:
    return {
        "id": asset.id,
        "kind": asset.kind,
        "ref": asset.ref,
        "description": asset.description,
        "value_cents": asset.value_cents,
        "details": asset.details,
    }


def job_view(job: Job, query: Query, agency_name: str, party: Party | None, assets: Iterable[Asset]) -> dict[str, Any]:
    """One agency's part of a query: status pending | answered | no_assets | failed | timed_out, and why."""
    return {
        "job_id": job.id,
        "agency_id": job.agency_id,
        "agency_name": agency_name,
        "party_id": job.party_id,
        "party_name": party.name if party else None,
        "status": job.status.value,
        "error": job.error,
        "attempts": job.attempts,
        "answered_ms": job.answered_ms,
        "late": job.answered_ms is not None and job.answered_ms > query.deadline_ms,
        "assets": [asset_view(a) for a in assets if a.job_id == job.id],
    }


def query_view(
    query: Query,
    case_number: str,
    jobs: Iterable[Job],
    assets: list[Asset],
    agency_names: Mapping[str, str],
    parties: Mapping[int, Party],
) -> dict[str, Any]:
    return {
        "id": query.id,
        "case_id": query.case_id,
        "case_number": case_number,
        "judge_id": query.judge_id,
        "reason": query.reason,
        "created_ms": query.created_ms,
        "deadline_ms": query.deadline_ms,
        "completed_ms": query.completed_ms,
        "complete": query.completed_ms is not None,
        "jobs": [
            job_view(j, query, agency_names.get(j.agency_id, j.agency_id), parties.get(j.party_id), assets)
            for j in jobs
        ],
    }


async def load_query_view(store: QueryStore, query_id: QueryId, agency_names: Mapping[str, str]) -> dict[str, Any]:
    """The whole query as stored: what a screen's snapshot and ``GET /api/queries/{id}`` show."""
    query = await store.get_query(query_id)
    case = await store.get_case(query.case_id)
    jobs = await store.query_jobs(query_id)
    assets = await store.query_assets(query_id)
    return query_view(query, case.case_number, jobs, assets, agency_names, {p.id: p for p in case.parties})
