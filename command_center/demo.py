"""A first look at the query desk and the field page: a demo judge, a case with two debtors, and a demo unit
for a phone, created once.

Used by ``run.sh`` (``python -m command_center demo``) together with the agency simulator, so the query
desk has someone to log in as and something to query on a fresh machine, and /field a device secret to
stream with. The judge's password and the unit's secret are random, printed, and kept (readable by the owner
only) in the data directory, like the first admin's.
"""

from __future__ import annotations

import contextlib
import time
from datetime import date
from pathlib import Path

from command_center.bootstrap import read_private, write_private
from command_center.credentials import Passwords, lookup_hash, new_device_secret, new_password
from core.errors import Conflict, NotFound
from core.ids import CourtId, UnitId
from persistence.models import Role, UnitKind
from persistence.port import Store
from persistence.query_models import PartyKind
from query_control.identifiers import make_credit_code, make_id_number

DEMO_JUDGE = "demo-judge"
DEMO_JUDGE_FILE = "demo-judge-password"
DEMO_COURT = CourtId("HLJ0102")
DEMO_CASE = "(2026)黑0102执1号"
DEMO_UNIT = UnitId("HLJ0102-F01")
DEMO_UNIT_FILE = "demo-unit-secret"


async def ensure_demo(store: Store, passwords: Passwords, data_dir: Path) -> tuple[str, str] | None:
    """Create the demo judge and case when missing; the judge's login while its password file exists."""
    secret_file = data_dir / DEMO_JUDGE_FILE
    judge = await store.find_user(DEMO_JUDGE)
    if judge is None:
        password = new_password()
        judge = await store.add_user(username=DEMO_JUDGE, display_name="演示执行法官",
                                     password_hash=passwords.hash(password), role=Role.JUDGE,
                                     court_id=DEMO_COURT)  # fmt: skip
        write_private(secret_file, password)
    parties = [
        (PartyKind.PERSON, "王某某", make_id_number("230102", date(1978, 5, 17), 123)),
        (PartyKind.ORGANISATION, "哈尔滨某某建材有限公司", make_credit_code("91230102MA1B2C3D4")),
    ]
    with contextlib.suppress(Conflict):  # created on an earlier run
        await store.add_case(case_number=DEMO_CASE, court_id=DEMO_COURT, title="买卖合同纠纷执行（演示）",
                             created_by=judge.id, created_ms=int(time.time() * 1000), parties=parties,
                             judge_ids=[judge.id])  # fmt: skip
    kept = read_private(secret_file)
    if kept is not None and passwords.verify(judge.password_hash, kept):
        return DEMO_JUDGE, kept
    return None


async def ensure_demo_unit(store: Store, data_dir: Path) -> tuple[str, str] | None:
    """Create the demo phone unit when missing; its id and device secret while the secret file exists."""
    secret_file = data_dir / DEMO_UNIT_FILE
    try:
        unit = await store.get_unit(DEMO_UNIT)
    except NotFound:
        secret = new_device_secret()
        unit = await store.add_unit(unit_id=DEMO_UNIT, name="演示单兵（手机）", kind=UnitKind.HANDHELD,
                                    court_id=DEMO_COURT, secret_hash=lookup_hash(secret))  # fmt: skip
        write_private(secret_file, secret)
    kept = read_private(secret_file)
    if kept is None or unit.revoked_at is not None or await store.find_unit_by_secret(lookup_hash(kept)) is None:
        return None
    return unit.id, kept
