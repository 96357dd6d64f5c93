"""The case source (立案): cases, their parties and assigned judges as the court's case-management system
registers them, upserted by case number.

The case-management system is the source of truth, so what it sends replaces the title, the status and
the judges, and adds the parties it names. Parties it no longer names stay on the case: queries, assets
and follow-ups refer to them, and the record of what was asked about whom must not lose its subject.
Re-sending the same case changes nothing. Every upsert is audited (who sent it, and what changed).

``read_case_file`` turns a JSON or CSV file (``case import``) into numbered rows for the same upsert.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.ids import CaseId, CourtId, UserId
from event_bus.port import EventBus
from persistence.models import Role
from persistence.port import Store
from persistence.query_models import Case, CaseSource, CaseStatus, PartyKind
from query_control.audit import AuditLog
from query_control.broker import now_ms
from query_control.cases import InvalidCaseNumber, InvalidIdentifier, validate_case_number, validate_party_identifier
from query_control.views import query_topic

log = logging.getLogger(__name__)

Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """One case as the source states it (fields already shaped; identifiers and judges not yet checked)."""

    case_number: str
    court_id: CourtId
    title: str
    status: CaseStatus
    parties: Sequence[tuple[PartyKind, str, str]] = ()  # kind, name, identifier as sent
    judges: Sequence[str] = ()  # usernames


@dataclass(frozen=True, slots=True)
class Upserted:
    case: Case
    outcome: Outcome
    changes: dict[str, Any] = field(default_factory=dict)


class CaseSourceDesk:
    """Applies a case record to the store; ``within`` bounds the courts a source may register cases of."""

    def __init__(self, store: Store, audit: AuditLog, bus: EventBus | None = None) -> None:
        self._store = store
        self._audit = audit
        self._bus = bus  # None (the shell's import): open screens learn of a removal when they resubscribe

    async def upsert(
        self,
        record: CaseRecord,
        *,
        source: CaseSource,
        within: CourtId | None,
        audit_details: dict[str, Any],
    ) -> Upserted:
        """Validate everything first (422 naming each problem), then create or bring the case up to date."""
        store = self._store
        problems: list[dict[str, str]] = []
        try:
            number = validate_case_number(record.case_number)
        except InvalidCaseNumber as exc:
            problems.append({"field": "case_number", "problem": str(exc)})
            number = record.case_number
        try:
            await store.get_court(record.court_id)
        except NotFound:
            raise ValidationFailed(f"court_id: court {record.court_id} does not exist") from None
        reach = None if within is None else await store.court_subtree(within)
        if reach is not None and record.court_id not in reach:
            raise Forbidden(f"court {record.court_id} is neither {within} nor a court below it")
        parties = _checked_parties(record.parties, problems)
        judges = await self._judges(record.court_id, record.judges, problems, reach)
        if problems:
            raise ValidationFailed("; ".join(f"{p['field']}: {p['problem']}" for p in problems), details=problems)

        existing = await store.find_case(number)
        if existing is None:
            try:
                case = await store.add_case(
                    case_number=number,
                    court_id=record.court_id,
                    title=record.title,
                    created_by=None,
                    created_ms=now_ms(),
                    parties=parties,
                    judge_ids=judges,
                    status=record.status,
                    source=source,
                )
                outcome: Outcome = "created"
                changes: dict[str, Any] = {"parties": len(parties), "judge_ids": list(judges)}
            except Conflict:  # registered meanwhile by a concurrent upsert of the same case: update it
                existing = await store.find_case(number)
                if existing is None:
                    raise
        if existing is not None:
            if reach is not None and existing.court_id not in reach:
                # case numbers are unique, so that it exists cannot be hidden; which court holds it can
                raise Conflict(f"case {number} is registered to a court outside your jurisdiction")
            case, changes = await self._update(existing, record, parties, judges)
            outcome = "updated" if changes else "unchanged"
            if changes.get("judges_removed") and self._bus is not None:
                await revoke_screens(store, self._bus, case.id, changes["judges_removed"])
        await self._audit.record(
            "case.upsert",
            None,
            case_id=case.id,
            details={**audit_details, "source": source.value, "case_number": number, "outcome": outcome,
                     "changes": changes},
        )  # fmt: skip
        return Upserted(case, outcome, changes)

    async def _update(
        self, case: Case, record: CaseRecord, parties: list[tuple[PartyKind, str, str]], judges: list[UserId]
    ) -> tuple[Case, dict[str, Any]]:
        if case.court_id != record.court_id:
            raise Conflict(f"case {case.case_number} is registered to court {case.court_id}, not {record.court_id}")
        store = self._store
        changes: dict[str, Any] = {}
        if case.title != record.title or case.status is not record.status:
            await store.update_case(case.id, title=record.title, status=record.status)
            if case.title != record.title:
                changes["title"] = record.title
            if case.status is not record.status:
                changes["status"] = record.status.value
        known = {p.identifier for p in case.parties}
        added = []
        for kind, name, identifier in parties:
            if identifier not in known:
                with_id = await store.add_party(case.id, kind, name, identifier)
                added.append(with_id.id)
        if added:
            changes["parties_added"] = added
        if set(judges) != set(case.judge_ids):
            await store.set_case_judges(case.id, judges)
            changes["judges_added"] = sorted(set(judges) - set(case.judge_ids))
            changes["judges_removed"] = sorted(set(case.judge_ids) - set(judges))
        return (await store.get_case(case.id) if changes else case), changes

    async def _judges(
        self,
        court_id: CourtId,
        usernames: Sequence[str],
        problems: list[dict[str, str]],
        reach: Sequence[CourtId] | None,
    ) -> list[UserId]:
        """``reach``: the courts whose staff the source may learn of (None: all); a user of another court is
        told like one that does not exist, so a source cannot map another court's staff by trying names."""
        found: list[UserId] = []
        unknown: list[str] = []
        elsewhere: list[str] = []
        for username in dict.fromkeys(usernames):
            user = await self._store.find_user(username)
            if user is None or (reach is not None and user.court_id not in reach):
                unknown.append(username)
            elif user.role is not Role.JUDGE or user.court_id != court_id:
                elsewhere.append(f"{username} ({user.role.value} of {user.court_id})")
            else:
                found.append(user.id)
        if unknown:
            problems.append({"field": "judges", "problem": f"no such user: {', '.join(unknown)}"})
        if elsewhere:
            problems.append({"field": "judges", "problem": f"not a judge of court {court_id}: {', '.join(elsewhere)}"})
        return found


async def revoke_screens(store: Store, bus: EventBus, case_id: CaseId, removed: Sequence[UserId]) -> int:
    """Tell the open screens of the queries of judges taken off the case that they may no longer follow
    them (``access_revoked`` on ``query:<id>``; the screens' feeds then stop sending them the query)."""
    count = 0
    for query in await store.list_queries(case_id=case_id):
        if query.judge_id in removed:
            try:
                await bus.publish(query_topic(query.id), {"event": "access_revoked", "judge_id": query.judge_id})
                count += 1
            except Exception:  # the check at every subscribe and read still holds
                log.warning("query %s: could not announce that its judge left the case", query.id, exc_info=True)
    return count


def _checked_parties(
    parties: Sequence[tuple[PartyKind, str, str]], problems: list[dict[str, str]]
) -> list[tuple[PartyKind, str, str]]:
    checked: dict[str, tuple[PartyKind, str, str]] = {}
    for index, (kind, name, raw) in enumerate(parties):
        where = f"parties.{index}.identifier"
        try:
            identifier = validate_party_identifier(kind, raw)
        except InvalidIdentifier as exc:
            problems.append({"field": where, "problem": str(exc)})
            continue
        earlier = checked.get(identifier)
        if earlier is not None and earlier != (kind, name, identifier):
            problems.append({"field": where, "problem": f"{identifier} is listed twice with different details"})
        checked[identifier] = (kind, name, identifier)
    return list(checked.values())


# the import file ----------------------------------------------------------------------------------------
CSV_COLUMNS = ("case_number", "court_id", "title", "status", "parties", "judges")


@dataclass(frozen=True, slots=True)
class FileRow:
    """One case of an import file: its row number (JSON: position from 1; CSV: line in the file, the
    header being line 1) and its fields as a JSON-shaped dict, or why it could not be read."""

    row: int
    data: dict[str, Any] | None
    problem: str | None = None


def read_case_file(path: Path) -> list[FileRow]:
    """Read ``path`` as JSON (by a ``.json`` suffix or a leading ``[``/``{``) or CSV (UTF-8, optional BOM)."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        return _json_rows(text)
    return _csv_rows(text)


def _json_rows(text: str) -> list[FileRow]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"not valid JSON: {exc}") from None
    items = document.get("cases") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ValidationFailed('a JSON import is a list of cases, or {"cases": [...]}')
    return [
        FileRow(n, item) if isinstance(item, dict) else FileRow(n, None, "a case must be a JSON object")
        for n, item in enumerate(items, start=1)
    ]


def _csv_rows(text: str) -> list[FileRow]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in ("case_number", "court_id", "title") if c not in (reader.fieldnames or [])]
    if missing:
        raise ValidationFailed(f"CSV header lacks {', '.join(missing)} (columns: {', '.join(CSV_COLUMNS)})")
    rows: list[FileRow] = []
    for record in reader:
        line = reader.line_num
        extra = record.pop(None, None)
        if extra:
            rows.append(FileRow(line, None, f"{len(extra)} more fields than the header names"))
            continue
        try:
            parties = [_csv_party(p) for p in (record.get("parties") or "").split(";") if p.strip()]
        except ValueError as exc:
            rows.append(FileRow(line, None, str(exc)))
            continue
        data: dict[str, Any] = {
            "case_number": record.get("case_number") or "",
            "court_id": record.get("court_id") or "",
            "title": record.get("title") or "",
            "parties": parties,
            "judges": [j.strip() for j in (record.get("judges") or "").split(";") if j.strip()],
        }
        if record.get("status"):
            data["status"] = record["status"]
        rows.append(FileRow(line, data))
    return rows


def _csv_party(text: str) -> dict[str, str]:
    parts = [p.strip() for p in text.split("|")]
    if len(parts) != 3:
        raise ValueError(f"parties: {text.strip()!r} is not kind|name|identifier")
    return {"kind": parts[0], "name": parts[1], "identifier": parts[2]}
