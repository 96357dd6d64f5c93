"""Numbered forward-only migrations, one folder per SQL dialect; files are ``NNN_name.sql``."""

from __future__ import annotations

import itertools
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
    """Read the migrations of one dialect in version order; refuse duplicate numbers and stray files. Gaps
    are allowed: numbers are reserved for work developed in parallel, which may land in any order."""
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
    for earlier, migration in itertools.pairwise(found):
        if migration.version == earlier.version:
            raise ValueError(
                f"{dialect} migrations {earlier.name} and {migration.name} share number {migration.version:03d}"
            )
    return found
