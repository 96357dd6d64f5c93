"""Pick the adapter from the store URL: the one place that knows both adapters exist."""

from __future__ import annotations

from config.settings import StoreSettings
from persistence.port import Store


def build_store(settings: StoreSettings, *, schema: str | None = None) -> Store:
    """Build (not yet open) the store named by ``settings.url``.

    ``sqlite:///var/cc.db`` is relative to the working directory, ``sqlite:////srv/cc.db`` absolute,
    ``sqlite:///:memory:`` in memory. ``schema`` puts every PostgreSQL table in that schema (tests).
    """
    url = settings.url
    if url.startswith("sqlite://"):
        from persistence.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite://").removeprefix("/"))
    from persistence.postgres import PostgresStore

    return PostgresStore(
        url, min_size=settings.pool_min, max_size=settings.pool_max, schema=schema, reserved=settings.pool_reserved
    )
