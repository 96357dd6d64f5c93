"""Street-level maps on a closed network: raster tiles read from one MBTiles file the court copies to the server.

MBTiles (https://github.com/mapbox/mbtiles-spec, 1.3) is an SQLite database: ``metadata`` (name, value) and
``tiles`` (zoom_level, tile_column, tile_row, tile_data) with rows counted from the south (TMS), so the XYZ row
a browser asks for is flipped. Only raster archives (png, jpg, webp) are served: a vector archive (pbf) needs a
style and a renderer in the page, and is refused at start with a reason rather than drawn blank. Reads run in
the archive's own worker thread on one read-only connection (SQLite is quick at this; the event loop never
waits on the disk). Its own thread, not the loop's default pool: the one connection serialises reads anyway,
and a flood of tile requests over a slow disk must not take every thread of the pool that recording, audit
checkpoints and track simplification wait on.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

#: Media types of the raster formats an archive may hold (metadata ``format``).
RASTER_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


class TileArchiveError(ValueError):
    """The configured archive cannot be served (missing, not MBTiles, or vector tiles)."""


@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    """What a map page needs to know about the archive: its tiles' type and the zooms it holds."""

    media_type: str
    min_zoom: int
    max_zoom: int
    attribution: str


class TileArchive:
    """One MBTiles file, opened read-only; ``tile`` answers in a worker thread. ``close`` is idempotent."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise TileArchiveError(f"maps.tile_archive: {path} does not exist")
        try:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            meta = dict(self._db.execute("SELECT name, value FROM metadata").fetchall())
            zooms = self._db.execute("SELECT min(zoom_level), max(zoom_level) FROM tiles").fetchone()
        except sqlite3.DatabaseError as exc:
            raise TileArchiveError(f"maps.tile_archive: {path} is not an MBTiles file ({exc})") from None
        fmt = str(meta.get("format", "png")).lower()
        if fmt not in RASTER_TYPES:
            self._db.close()
            raise TileArchiveError(
                f"maps.tile_archive: {path} holds {fmt!r} tiles; only raster archives (png, jpg, webp) are served"
            )
        if zooms[0] is None:
            self._db.close()
            raise TileArchiveError(f"maps.tile_archive: {path} holds no tiles")
        self.info = ArchiveInfo(RASTER_TYPES[fmt], int(zooms[0]), int(zooms[1]), str(meta.get("attribution", "")))
        self._lock = threading.Lock()  # one connection: the reader thread's, and ``close`` from any other
        self._closed = False
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tile-archive")

    def _read(self, z: int, x: int, y: int) -> bytes | None:
        row = (1 << z) - 1 - y  # XYZ (rows from the north) to TMS (rows from the south)
        with self._lock:
            if self._closed:
                return None
            found = self._db.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?", (z, x, row)
            ).fetchone()
        return None if found is None else bytes(found[0])

    async def tile(self, z: int, x: int, y: int) -> bytes | None:
        """The tile at XYZ coordinates, or None when the archive has none there."""
        if self._closed or not (0 <= z <= 30 and 0 <= x < (1 << z) and 0 <= y < (1 << z)):
            return None
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._read, z, x, y)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
        self._reader.shutdown(wait=False, cancel_futures=True)
