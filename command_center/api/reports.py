"""Map reports (folium): one self-contained HTML file to download — an operation (its units' tracks and
stops, the target and its geofence, the court's fences, the timeline), a set of units over a period, or a
case (where the assets its queries found are). It opens offline (``maps.report``)."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from command_center.api.params import whole_number
from command_center.api.registry import Registry
from command_center.auth import Access, current_user
from command_center.keys import SETTINGS, STORE
from command_center.pages import BASEMAP, WEB_ROOT
from command_center.visibility import require_visible
from core.errors import Forbidden, NotFound, ValidationFailed
from core.ids import CaseId, UnitId
from maps.report import Place, Report, Track, render, track_points
from maps.tracks import find_stops
from persistence.port import Store
from query_control.views import asset_view

api = Registry()

COMMANDERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
MAX_PERIOD_MS = 24 * 3_600_000
MAX_UNITS = 50


def _download(request: web.Request, report: Report, filename: str) -> web.StreamResponse:
    settings = request.app[SETTINGS].maps
    basemap = None if settings.tile_url else json.loads((WEB_ROOT / BASEMAP).read_text(encoding="utf-8"))
    document = render(report, centre=(settings.center_lat, settings.center_lon), zoom=settings.zoom,
                      basemap=basemap, tile_url=settings.tile_url or None)  # fmt: skip
    return web.Response(
        text=document, content_type="text/html", charset="utf-8",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
    )  # fmt: skip


async def _tracks(store: Store, unit_ids: list[UnitId], since: int, until: int) -> list[Track]:
    tracks = []
    for unit_id in unit_ids:
        unit = await store.get_unit(unit_id)
        points = track_points(await store.track(unit_id, since_ms=since, until_ms=until))
        tracks.append(Track(f"{unit.name} ({unit.id})", points, find_stops(points)))
    return tracks


@api.route("GET", "/api/reports/operations/{operation_id}", summary="Map report of an operation (HTML download)",
           tag="reports", access=COMMANDERS, errors=(NotFound,))  # fmt: skip
async def operation_report(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    op = await store.get_operation(request.match_info["operation_id"])
    await require_visible(store, current_user(request), op.court_id)
    since = op.started_ms or op.created_ms
    until = min(op.ended_ms or int(time.time() * 1000), since + MAX_PERIOD_MS)
    fences = [{"type": "Feature", "geometry": f.geometry, "properties": {"name": f.name, "kind": f.kind,
               "radius_m": f.radius_m}} for f in await store.list_geofences([op.court_id])]  # fmt: skip
    target = Place(op.target["lat"], op.target["lon"], f"目标：{op.target.get('address') or op.title}",
                   radius_m=op.target.get("radius_m"), color="#d62728")  # fmt: skip
    timeline = [(e.at_ms, f"{e.kind} {e.text}".strip()) for e in await store.operation_events(op.id)]
    report = Report(f"执行行动报告：{op.title}", f"{op.kind.value} · 现场指挥 {op.onsite_commander}",
                    tracks=await _tracks(store, list(op.unit_ids), since, until), places=[target], fences=fences,
                    timeline=timeline)  # fmt: skip
    return _download(request, report, f"执行行动-{op.title}.html")


@api.route("GET", "/api/reports/units", summary="Map report of units over a period (?unit_ids=a,b&since_ms&until_ms)",
           tag="reports", access=COMMANDERS, errors=(NotFound,))  # fmt: skip
async def units_report(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    raw_ids = [u for u in request.query.get("unit_ids", "").split(",") if u]
    if not 1 <= len(raw_ids) <= MAX_UNITS:
        raise ValidationFailed(f"unit_ids: 1 to {MAX_UNITS} unit ids, comma-separated")
    try:
        since, until = int(request.query["since_ms"]), int(request.query["until_ms"])
    except (KeyError, ValueError):
        raise ValidationFailed("since_ms and until_ms are required epoch milliseconds") from None
    if not 0 < until - since <= MAX_PERIOD_MS:
        raise ValidationFailed("the period must be positive and at most 24 hours")
    for unit_id in raw_ids:
        await require_visible(store, current_user(request), (await store.get_unit(UnitId(unit_id))).court_id)
    report = Report("轨迹报告", f"{len(raw_ids)} 个执行单兵", tracks=await _tracks(store, [UnitId(u) for u in raw_ids],
                    since, until))  # fmt: skip
    return _download(request, report, "轨迹报告.html")


@api.route("GET", "/api/reports/cases/{case_id}", summary="Map report of a case: where its assets are (HTML)",
           tag="reports", access=frozenset({Access.JUDGE, Access.SUPERVISOR, Access.ADMIN}),
           errors=(NotFound,))  # fmt: skip
async def case_report(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    caller = current_user(request)
    raw = request.match_info["case_id"]
    case_id = whole_number(raw)
    if case_id is None:
        raise ValidationFailed(f"case id must be a number, got {raw!r}")
    case = await store.get_case(CaseId(case_id))
    if caller.access is Access.JUDGE and caller.user.id not in case.judge_ids:
        raise Forbidden(f"you are not a judge of case {case.case_number}")
    await require_visible(store, caller, case.court_id)
    places: list[Place] = []
    timeline: list[tuple[int, str]] = []
    for query in await store.list_queries(case_id=case.id):
        timeline.append((query.created_ms, f"查询：{query.reason}"))
        for asset in await store.query_assets(query.id):
            view: dict[str, Any] = asset_view(asset)
            where = view["details"].get("location")
            if isinstance(where, dict) and {"lat", "lon"} <= where.keys():
                color = "#ff7f0e" if asset.kind == "real_estate" else "#1f77b4"
                places.append(Place(float(where["lat"]), float(where["lon"]), asset.description, color=color))
    report = Report(f"案件财产分布：{case.case_number}", case.title, places=places, timeline=timeline)
    return _download(request, report, f"案件财产分布-{case.case_number}.html")
