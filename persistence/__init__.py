"""Persistence port (``Store``) and its adapters: PostgreSQL via asyncpg (production), SQLite (embedded)."""

from persistence.factory import build_store
from persistence.models import Court, CourtLevel, Role, Session, Unit, UnitKind, User
from persistence.port import Store

__all__ = ["Court", "CourtLevel", "Role", "Session", "Store", "Unit", "UnitKind", "User", "build_store"]
