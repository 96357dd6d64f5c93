"""Numbered forward-only migrations, one folder per SQL dialect; files are ``NNN_name.sql``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """Read the migrations of one dialect in version order; refuse duplicate numbers and stray files."""
    folder = resources.files(__package__).joinpath(dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise ValueError(f"migration file name must be NNN_name.sql: {entry.name}")
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions) or (versions and versions[0] != 1):
        raise ValueError(f"{dialect} migrations must be numbered from 001, each number once")
    # Gaps are allowed: numbers are reserved per branch of parallel work, and each version is applied and
    # recorded on its own (``schema_migrations``), so a later-merged lower number is still applied.
    return found
