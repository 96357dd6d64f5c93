"""Map reports with folium: one self-contained HTML file for an operation, a set of units or a case —
tracks, stops, geofences, targets and asset locations on the offline basemap — that opens with no network.

folium links Leaflet, jQuery, Bootstrap and Font Awesome from CDNs by default. Court networks are closed
and a report is evidence that must open years later, so the report carries Leaflet itself (inlined from
``node_modules``, installed by setup), uses only plain Leaflet layers (no icon fonts or plugins), draws the
shipped district outlines instead of a tile layer unless a (local) tile server is configured, and is
checked to contain no external URL before it is handed out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import folium

LEAFLET = Path(__file__).resolve().parent.parent / "node_modules" / "leaflet" / "dist"
CST = timezone(timedelta(hours=8))
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
FENCE_COLORS = {"no_go": "#d62728", "jurisdiction": "#1f77b4", "target": "#ff7f0e"}
_JS, _CSS = "LEAFLET-JS-INLINE", "LEAFLET-CSS-INLINE"
# what would load something from elsewhere (a hyperlink a person may click, like Leaflet's credit, is fine)
EXTERNAL = re.compile(r"""(?:\bsrc\s*=|<link\b[^>]*\bhref\s*=|url\()\s*["']?(?:https?:)?//""", re.IGNORECASE)


class ReportNotOffline(RuntimeError):
    """The rendered report still points outside itself (a folium upgrade added a CDN link)."""


@dataclass
class Track:
    label: str
    points: list[tuple[int, float, float]]  # (fix_time_ms, lat, lon), oldest first
    stops: list[tuple[int, int, float, float]] = field(default_factory=list)  # (from_ms, to_ms, lat, lon)


@dataclass
class Place:
    lat: float
    lon: float
    label: str
    radius_m: float | None = None  # drawn as a circle (a target's geofence) when given
    color: str = "#ff7f0e"


@dataclass
class Report:
    title: str
    subtitle: str
    tracks: list[Track] = field(default_factory=list)
    places: list[Place] = field(default_factory=list)
    fences: list[dict[str, Any]] = field(default_factory=list)  # GeoJSON Features (properties.kind, name)
    timeline: list[tuple[int, str]] = field(default_factory=list)  # (at_ms, text)
    notes: list[str] = field(default_factory=list)  # shown under the title (e.g. a track was simplified)


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, CST).strftime("%Y-%m-%d %H:%M:%S")


def render(report: Report, *, centre: tuple[float, float], zoom: int, basemap: dict[str, Any] | None,
           tile_url: str | None = None) -> str:  # fmt: skip
    """The report as one HTML document; ReportNotOffline if anything in it would reach the network."""
    fmap = folium.Map(location=list(centre), zoom_start=zoom, tiles=None, control_scale=True)
    fmap.default_js = [("leaflet", _JS)]
    fmap.default_css = [("leaflet_css", _CSS)]
    if tile_url:
        folium.TileLayer(tiles=tile_url, attr="court tile server").add_to(fmap)
    elif basemap:
        folium.GeoJson(basemap, name="basemap", style_function=lambda _: {"color": "#7a8ca8", "weight": 1,
                       "fillColor": "#eef2f7", "fillOpacity": 0.6}).add_to(fmap)  # fmt: skip
    bounds: list[tuple[float, float]] = []
    for feature in report.fences:
        color = FENCE_COLORS.get(feature.get("properties", {}).get("kind", ""), "#555")
        name = html.escape(str(feature.get("properties", {}).get("name", "")))
        geometry = feature["geometry"]
        if geometry["type"] == "Point":
            lon, lat = geometry["coordinates"][:2]
            folium.Circle([lat, lon], radius=feature["properties"]["radius_m"], color=color, fill=True,
                          fill_opacity=0.08, tooltip=name).add_to(fmap)  # fmt: skip
        else:
            folium.GeoJson(feature, style_function=lambda _, c=color: {"color": c, "weight": 2, "fillOpacity": 0.08},
                           tooltip=name).add_to(fmap)  # fmt: skip
    for index, track in enumerate(report.tracks):
        color = PALETTE[index % len(PALETTE)]
        line = [(lat, lon) for _, lat, lon in track.points]
        if len(line) >= 2:
            folium.PolyLine(  # type: ignore[no-untyped-call]
                line, color=color, weight=3, opacity=0.9, tooltip=html.escape(track.label)
            ).add_to(fmap)
        if line:
            bounds.extend(line)
            start, end = track.points[0], track.points[-1]
            for (at, lat, lon), what in ((start, "起点"), (end, "终点")):
                folium.CircleMarker([lat, lon], radius=6, color=color, fill=True, fill_opacity=1,
                                    tooltip=f"{html.escape(track.label)} {what} {_time(at)}").add_to(fmap)  # fmt: skip
        for begin, finish, lat, lon in track.stops:
            minutes = (finish - begin) / 60_000
            folium.CircleMarker([lat, lon], radius=9, color=color, weight=2, fill=False,
                                tooltip=f"{html.escape(track.label)} 停留 {minutes:.0f} 分钟 "
                                        f"{_time(begin)}–{_time(finish)[11:]}").add_to(fmap)  # fmt: skip
    for place in report.places:
        bounds.append((place.lat, place.lon))
        if place.radius_m:
            folium.Circle([place.lat, place.lon], radius=place.radius_m, color=place.color, fill=True,
                          fill_opacity=0.1).add_to(fmap)  # fmt: skip
        folium.CircleMarker([place.lat, place.lon], radius=7, color=place.color, fill=True, fill_opacity=0.9,
                            tooltip=html.escape(place.label)).add_to(fmap)  # fmt: skip
    if bounds:
        lats, lons = [b[0] for b in bounds], [b[1] for b in bounds]
        fmap.fit_bounds([[min(lats), min(lons)], [max(lats), max(lons)]], padding=(30, 30), max_zoom=16)
    header = (f"<div style='font:15px sans-serif;padding:8px 12px;background:#10223d;color:#fff'>"
              f"<b>{html.escape(report.title)}</b> · {html.escape(report.subtitle)}</div>")  # fmt: skip
    page = fmap.get_root()
    assert isinstance(page, folium.Figure)
    page.html.add_child(folium.Element(header))
    for note in report.notes:
        page.html.add_child(folium.Element(f"<div style='font:13px sans-serif;padding:4px 12px;background:#fff3cd'>"
                                           f"{html.escape(note)}</div>"))  # fmt: skip
    if report.timeline:
        rows = "".join(f"<tr><td>{_time(at)}</td><td>{html.escape(text)}</td></tr>" for at, text in report.timeline)
        table = (f"<div style='font:13px sans-serif;padding:8px 12px;max-height:30vh;overflow:auto'>"
                 f"<table>{rows}</table></div>")  # fmt: skip
        page.html.add_child(folium.Element(table))
    return _offline(page.render())


def _offline(document: str) -> str:
    """Inline Leaflet where folium put its links; refuse a document that still reaches the network."""
    script = (LEAFLET / "leaflet.js").read_text(encoding="utf-8")
    css = (LEAFLET / "leaflet.css").read_text(encoding="utf-8")
    document = re.sub(rf"""<script src=["']{_JS}["']></script>""", lambda _: f"<script>{script}</script>", document)
    document = re.sub(rf"""<link[^>]*href=["']{_CSS}["'][^>]*>""", lambda _: f"<style>{css}</style>", document)
    if _JS in document or _CSS in document:
        raise ReportNotOffline("Leaflet could not be inlined where folium links it")
    found = EXTERNAL.search(document)
    if found:
        near = document[found.start() : found.start() + 80]
        raise ReportNotOffline(f"the report still loads something from outside itself: {near!r}")
    return document


def track_points(positions: Sequence[Any]) -> list[tuple[int, float, float]]:
    return [(p.fix_time_ms, p.lat, p.lon) for p in positions]
