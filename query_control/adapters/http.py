"""The agencies' JSON protocol over HTTP (docs/protocols.md, "Partner agencies"), one adapter per kind.

The transport is shared; what differs per kind is the record its answers hold (``kinds.py``). A whole
attempt — connect, send, read every byte of the answer — is bounded by the agency's timeout, so a
slow-drip answer cannot hold a job past it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from pydantic import ValidationError

from persistence.query_models import AssetDraft
from query_control.adapters.kinds import MAPPERS, AssetMapper
from query_control.adapters.port import (
    AgencyAdapter,
    AgencyThrottled,
    FollowUpOrder,
    FollowUpReceipt,
    MalformedReply,
    PermanentAgencyError,
    Subject,
    TransientAgencyError,
)
from query_control.agencies import AgencyConfig, AgencyKind

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class HttpAgencyAdapter:
    def __init__(self, session: aiohttp.ClientSession, mapper: AssetMapper) -> None:
        self.kind: AgencyKind = mapper.kind
        self._session = session
        self._mapper = mapper

    async def _post(
        self, agency: AgencyConfig, path: str, key: str, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        headers = {"Authorization": f"Bearer {agency.api_key}", "Idempotency-Key": key}
        try:
            async with asyncio.timeout(agency.timeout_seconds):
                async with self._session.post(f"{agency.endpoint}{path}", json=payload, headers=headers) as response:
                    raw = await response.read()
                    status = response.status
                    replayed = response.headers.get("Idempotent-Replayed") == "true"
        except TimeoutError:
            raise TransientAgencyError(f"no complete answer within {agency.timeout_seconds:g} s") from None
        except aiohttp.ClientError as exc:
            raise TransientAgencyError(f"connection failed: {type(exc).__name__}: {exc}") from None
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if status != 200:
            detail = data.get("message") if isinstance(data, dict) else None
            text = f"HTTP {status}" + (f": {detail}" if detail else "")
            if status == 429:
                raise AgencyThrottled(text)
            if status in TRANSIENT_STATUSES:
                raise TransientAgencyError(text)
            raise PermanentAgencyError(text)
        if not isinstance(data, dict):
            raise MalformedReply(f"malformed reply: not a JSON object ({raw[:40]!r})")
        if data.get("request_id") != key:
            raise MalformedReply("malformed reply: request_id does not echo the Idempotency-Key")
        return data, replayed

    async def query(self, agency: AgencyConfig, subject: Subject, key: str) -> list[AssetDraft]:
        payload = {"request_id": key, "subject": {"kind": subject.kind.value, "name": subject.name,
                                                   "identifier": subject.identifier}}  # fmt: skip
        data, _ = await self._post(agency, "/v1/query", key, payload)
        status, records = data.get("status"), data.get("assets")
        if status not in ("found", "none") or not isinstance(records, list):
            raise MalformedReply("malformed reply: expected status found|none and an assets list")
        if status == "none" and records:
            raise MalformedReply("malformed reply: status none with assets")
        assets: list[AssetDraft] = []
        for index, item in enumerate(records):
            try:
                record = self._mapper.record.model_validate(item)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"]) or "(record)"
                raise MalformedReply(f"malformed reply: assets[{index}].{where}: {first['msg']}") from None
            assets.append(self._mapper.to_asset(record))
        return assets

    async def followup(self, agency: AgencyConfig, order: FollowUpOrder, key: str) -> FollowUpReceipt:
        payload = {
            "request_id": key,
            "action": order.action.value,
            "asset_ref": order.asset_ref,
            "amount_cents": order.amount_cents,
            "case_number": order.case_number,
            "subject": {"kind": order.subject.kind.value, "name": order.subject.name,
                        "identifier": order.subject.identifier},
        }  # fmt: skip
        data, replayed = await self._post(agency, "/v1/followups", key, payload)
        ref, status = data.get("agency_ref"), data.get("status")
        if status != "confirmed" or not isinstance(ref, str) or not ref:
            raise MalformedReply("malformed reply: expected status confirmed and an agency_ref")
        return FollowUpReceipt(ref, status, replayed)


def build_adapters(session: aiohttp.ClientSession) -> dict[AgencyKind, AgencyAdapter]:
    """One adapter per agency kind, sharing the client session (its connection pool)."""
    return {kind: HttpAgencyAdapter(session, mapper) for kind, mapper in MAPPERS.items()}
