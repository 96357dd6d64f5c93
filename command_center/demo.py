"""A first look at the query desk: a demo judge and a case with two debtors, created once.

Used by ``run.sh`` (``python -m command_center demo``) together with the agency simulator, so the query
desk has someone to log in as and something to query on a fresh machine. The judge's password is random,
printed, and kept (readable by the owner only) in the data directory, like the first admin's.
"""

from __future__ import annotations

import contextlib
import time
from datetime import date
from pathlib import Path

from command_center.bootstrap import read_private, write_private
from command_center.credentials import Passwords, new_password
from core.errors import Conflict
from core.ids import CourtId
from persistence.models import Role
from persistence.port import Store
from persistence.query_models import PartyKind
from query_control.identifiers import make_credit_code, make_id_number

DEMO_JUDGE = "demo-judge"
DEMO_JUDGE_FILE = "demo-judge-password"
DEMO_COURT = CourtId("HLJ0102")
DEMO_CASE = "(2026)黑0102执1号"


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
