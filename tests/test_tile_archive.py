"""The tile archive reader: XYZ rows flipped to MBTiles' TMS rows, nothing outside the archive, and archives it
cannot serve refused at start with the reason (a vector archive, a file that is not MBTiles)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from maps.tile_archive import TileArchive, TileArchiveError
from tests.tile_support import make_mbtiles, png, tile_of

HARBIN = (45.757, 126.642)


async def test_a_tile_is_found_by_its_xyz_address(tmp_path: Path) -> None:
    path = make_mbtiles(tmp_path / "city.mbtiles", lat=HARBIN[0], lon=HARBIN[1], zooms=range(15, 17), rgb=(1, 2, 3),
                        reach=0)  # fmt: skip
    archive = TileArchive(path)
    try:
        assert (archive.info.min_zoom, archive.info.max_zoom, archive.info.media_type) == (15, 16, "image/png")
        assert archive.info.attribution == "测试街道图"
        x, y = tile_of(*HARBIN, 16)
        assert await archive.tile(16, x, y) == png((1, 2, 3))
        assert await archive.tile(16, x, y + 1) is None  # the row below is not in the archive
        flipped = (1 << 16) - 1 - y  # a reader that forgot the TMS flip would look here
        assert await archive.tile(16, x, flipped) is None
        assert await archive.tile(16, -1, y) is None and await archive.tile(40, x, y) is None
    finally:
        archive.close()
        archive.close()  # idempotent
    assert await archive.tile(16, x, y) is None  # closed: nothing, no crash


def test_archives_that_cannot_be_served_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(TileArchiveError, match="does not exist"):
        TileArchive(tmp_path / "missing.mbtiles")
    (tmp_path / "junk.mbtiles").write_bytes(b"not a database" * 100)
    with pytest.raises(TileArchiveError, match="not an MBTiles file"):
        TileArchive(tmp_path / "junk.mbtiles")
    vector = make_mbtiles(tmp_path / "vector.mbtiles", lat=HARBIN[0], lon=HARBIN[1], zooms=range(14, 15),
                          rgb=(0, 0, 0), reach=0, fmt="pbf")  # fmt: skip
    with pytest.raises(TileArchiveError, match="only raster archives"):
        TileArchive(vector)
    empty = tmp_path / "empty.mbtiles"
    db = sqlite3.connect(empty)
    db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
    db.commit()
    db.close()
    with pytest.raises(TileArchiveError, match="holds no tiles"):
        TileArchive(empty)


async def test_a_flood_of_slow_tile_reads_leaves_the_loops_thread_pool_free(tmp_path: Path) -> None:
    """Found in the session review: each tile was read with ``asyncio.to_thread``, so requests waiting on the
    one connection (a slow disk, held here by taking its lock) took every thread of the loop's default pool,
    and work queued there behind them (a recording's stop, the audit witness, track simplification) waited."""
    path = make_mbtiles(tmp_path / "city.mbtiles", lat=HARBIN[0], lon=HARBIN[1], zooms=range(16, 17), rgb=(1, 2, 3),
                        reach=0)  # fmt: skip
    archive = TileArchive(path)
    x, y = tile_of(*HARBIN, 16)
    slow_disk = archive._lock  # the reader waits on it as on a disk that does not answer
    slow_disk.acquire()
    try:
        flood = [asyncio.ensure_future(archive.tile(16, x, y)) for _ in range(64)]
        await asyncio.sleep(0)
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "pool free"), 10) == "pool free"
        assert not any(request.done() for request in flood)
    finally:
        slow_disk.release()
    assert await asyncio.gather(*flood) == [png((1, 2, 3))] * 64
    archive.close()
