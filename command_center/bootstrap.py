"""First-run setup: the court hierarchy from a TOML file and the first administrator.

The first administrator's password is generated, never shipped: it is written once to a 0600 file in the
data directory so the run command can show it again until the administrator changes it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from command_center.credentials import Passwords, new_password
from core.errors import ValidationFailed
from core.ids import CourtId
from core.private_files import private_file
from persistence.models import Court, CourtLevel, Role
from persistence.port import Store

FIRST_ADMIN = "admin"
FIRST_ADMIN_FILE = "first-admin-password"


def read_courts(path: Path) -> list[Court]:
    """Courts from the file, parents before children; refuse unknown parents and bad levels."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    courts: list[Court] = []
    known: set[str] = set()
    for entry in data.get("court", []):
        try:
            court = Court(CourtId(entry["id"]), entry["name"], CourtLevel(entry["level"]), entry.get("parent"))
        except (KeyError, ValueError) as exc:
            raise ValidationFailed(f"{path}: bad court entry {entry!r}: {exc}") from None
        if court.parent_id is not None and court.parent_id not in known:
            raise ValidationFailed(f"{path}: court {court.id} names parent {court.parent_id} before it is defined")
        known.add(court.id)
        courts.append(court)
    return courts


async def import_courts(store: Store, path: Path) -> int:
    courts = read_courts(path)
    for court in courts:
        await store.upsert_court(court)
    return len(courts)


async def ensure_first_admin(store: Store, passwords: Passwords, data_dir: Path) -> tuple[str, str] | None:
    """Create ``admin`` at the top court when there are no users; return the login while its file exists."""
    secret_file = data_dir / FIRST_ADMIN_FILE
    if await store.count_users() == 0:
        roots = [c for c in await store.list_courts() if c.parent_id is None]
        if not roots:
            raise ValidationFailed("no court exists yet: import the court hierarchy first")
        password = new_password()
        await store.add_user(
            username=FIRST_ADMIN,
            display_name="系统管理员",
            password_hash=passwords.hash(password),
            role=Role.ADMIN,
            court_id=roots[0].id,
        )
        write_private(secret_file, password)
    kept = read_private(secret_file)
    if kept is not None:
        admin = await store.find_user(FIRST_ADMIN)
        if admin is not None and passwords.verify(admin.password_hash, kept):
            return FIRST_ADMIN, kept
    return None


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (a file left readable by an older version is tightened)."""
    private_file(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def read_private(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None
