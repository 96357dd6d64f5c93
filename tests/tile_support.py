"""A small MBTiles archive made by the tests themselves: street-level raster tiles around a point, each a plain
colour crossed by a white "street", written as PNG with the standard library (zlib) so nothing is downloaded."""

from __future__ import annotations

import math
import sqlite3
import struct
import zlib
from pathlib import Path

TILE = 256
STREET = (255, 255, 255)


def png(rgb: tuple[int, int, int], size: int = TILE) -> bytes:
    """An RGB PNG of one colour with a white horizontal band through the middle (a street)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    plain, street = bytes(rgb) * size, bytes(STREET) * size
    rows = b"".join(b"\x00" + (street if size // 2 - 6 <= y < size // 2 + 6 else plain) for y in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def tile_of(lat: float, lon: float, zoom: int) -> tuple[int, int]:
    """The XYZ tile (web Mercator) holding a point."""
    n = 1 << zoom
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def make_mbtiles(path: Path, *, lat: float, lon: float, zooms: range, rgb: tuple[int, int, int],
                 reach: int = 4, fmt: str = "png") -> Path:  # fmt: skip
    """An MBTiles 1.3 file with the tiles within `reach` of the point at each zoom (rows stored TMS, from the south)."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
    meta = {"name": "test streets", "format": fmt, "attribution": "测试街道图"}
    db.executemany("INSERT INTO metadata VALUES (?, ?)", meta.items())
    image = png(rgb)
    for z in zooms:
        cx, cy = tile_of(lat, lon, z)
        for x in range(cx - reach, cx + reach + 1):
            for y in range(cy - reach, cy + reach + 1):
                db.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, (1 << z) - 1 - y, image))
    db.commit()
    db.close()
    return path
