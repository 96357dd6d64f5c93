"""The case source from a shell: ``case import FILE`` for courts without an integration, and the
case-management system's credentials (``system-client add`` / ``revoke``).

An import row goes through the same validation (the integration route's ``CaseSync``) and the same upsert
as the integration route, so a file and the system agree on what a case is. A bad row is reported with
its row number and why, and the good rows beside it are still imported; importing the file again changes
nothing. The import is audited per case (source ``import``); its actor is the shell, not a user.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from command_center.api.case_source import CaseSync, register_system_client, revoke_client
from core.errors import AppError, NotFound
from core.ids import CourtId
from persistence.port import Store
from persistence.query_models import CaseSource
from query_control.audit import AuditLog
from query_control.case_source import CaseSourceDesk, read_case_file


async def import_cases(store: Store, path: Path) -> int:
    """Exit status 0 when every row was imported, 1 when any was refused (the others are imported)."""
    try:
        rows = read_case_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    desk = CaseSourceDesk(store, AuditLog(store))
    counts = {"created": 0, "updated": 0, "unchanged": 0, "refused": 0}
    for row in rows:
        problem = row.problem
        if problem is None and row.data is not None:
            try:
                record = CaseSync.model_validate(row.data).record(None)
                done = await desk.upsert(
                    record,
                    source=CaseSource.IMPORT,
                    within=None,
                    audit_details={"via": "case import", "file": path.name},
                )
                counts[done.outcome] += 1
                print(f"row {row.row}: {done.case.case_number} {done.outcome}")
                continue
            except ValidationError as exc:
                problem = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or '(row)'}: {err['msg']}"
                    for err in exc.errors(include_url=False, include_input=False)
                )
            except AppError as exc:
                problem = exc.message
        counts["refused"] += 1
        print(f"row {row.row}: refused: {problem}", file=sys.stderr)
    print(", ".join(f"{n} {k}" for k, n in counts.items()) + f" ({len(rows)} rows in {path})")
    return 1 if counts["refused"] else 0


async def system_client_command(store: Store, args: argparse.Namespace) -> int:
    audit = AuditLog(store)
    if args.action == "add":
        client, secret = await register_system_client(store, audit, args.name, CourtId(args.court), None)
        print(f"system client {client.name} (id {client.id}) of {client.court_id}; secret (shown once): {secret}")
        return 0
    found = await store.find_system_client_by_name(args.name)
    if found is None:
        raise NotFound(f"system client {args.name!r} does not exist")
    await revoke_client(store, audit, found, None)
    print(f"system client {found.name}: revoked")
    return 0
