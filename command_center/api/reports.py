"""Map reports (folium): one self-contained HTML file to download — an operation (its units' tracks and
stops, the target and its geofence, the court's fences, the timeline), a set of units over a period, or a
case (where the assets its queries found are). It opens offline (``maps.report``)."""

from __future__ import annotations

import functools
import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from command_center.api.params import epoch_ms, whole_number
from command_center.api.registry import Handler, Registry
from command_center.auth import Access, current_user
from command_center.keys import AUDIT, REPORTS, SETTINGS, STORE
from command_center.middleware import error_response
from command_center.pages import BASEMAP, WEB_ROOT
from core.errors import Forbidden, NotFound, ValidationFailed
from core.ids import CaseId, UnitId
from courts.visibility import require_visible
from maps.report import Place, Report, track_points
from maps.report_pool import RETRY_AFTER_SECONDS, PreparedTrack, ReportPool, ReportsBusy, prepare_track, render_document
from maps.tracks import read_track
from persistence.port import Store
from query_control.case_access import require_on_case
from query_control.views import asset_view

api = Registry()

COMMANDERS = frozenset({Access.OPERATOR, Access.SUPERVISOR, Access.ADMIN})
MAX_PERIOD_MS = 24 * 3_600_000
MAX_UNITS = 50


def _retry_later(handler: Handler) -> Handler:
    """A report refused because enough are rendering says when to come back (RFC 9110 Retry-After)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ReportsBusy as exc:
            response = error_response(exc)
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response

    return wrapped


async def _download(request: web.Request, report: Report, filename: str, tracks: list[PreparedTrack]) -> web.Response:
    """Render in a worker process and hand out the file; ``X-Tracks-Simplified`` names each track shown
    simplified (unit, fixes stored, points shown, tolerance), as the report itself does under its title."""
    settings = request.app[SETTINGS].maps
    basemap = None if settings.tile_url else WEB_ROOT / BASEMAP
    centre = (settings.center_lat, settings.center_lon)
    document = await request.app[REPORTS].run(render_document, report, centre, settings.zoom, basemap,
                                              settings.tile_url or None)  # fmt: skip
    simplified = [f"{t.unit_id};stored={t.raw_points};shown={len(t.track.points)};tolerance_m={t.tolerance_m:g}"
                  for t in tracks if t.tolerance_m > 0]  # fmt: skip
    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"}
    if simplified:
        headers["X-Tracks-Simplified"] = ", ".join(simplified)
    return web.Response(text=document, content_type="text/html", charset="utf-8", headers=headers)


async def _tracks(
    pool: ReportPool, store: Store, unit_ids: list[UnitId], since: int, until: int
) -> list[PreparedTrack]:
    """Each unit's whole track in the period (read a page at a time, never cut), prepared in a worker one
    unit at a time so no more than one unit's day of fixes is held at once."""
    tracks = []
    for unit_id in unit_ids:
        unit = await store.get_unit(unit_id)
        points = track_points(await read_track(store, unit_id, since_ms=since, until_ms=until))
        tracks.append(await pool.run(prepare_track, unit.id, f"{unit.name} ({unit.id})", points))
    return tracks


def _notes(tracks: list[PreparedTrack]) -> list[str]:
    return [f"轨迹已简化：{t.track.label} 共 {t.raw_points} 个定位点，图上显示 {len(t.track.points)} 个"
            f"（容差 {t.tolerance_m:g} 米；停留点按全部定位点计算）" for t in tracks if t.tolerance_m > 0]  # fmt: skip


@api.route("GET", "/api/reports/operations/{operation_id}", summary="Map report of an operation (HTML download)",
           tag="reports", access=COMMANDERS, errors=(NotFound, ReportsBusy))  # fmt: skip
@_retry_later
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
    pool = request.app[REPORTS]
    async with pool.slot():
        tracks = await _tracks(pool, store, list(op.unit_ids), since, until)
        report = Report(f"执行行动报告：{op.title}", f"{op.kind.value} · 现场指挥 {op.onsite_commander}",
                        tracks=[t.track for t in tracks], places=[target], fences=fences, timeline=timeline,
                        notes=_notes(tracks))  # fmt: skip
        return await _download(request, report, f"执行行动-{op.title}.html", tracks)


@api.route("GET", "/api/reports/units", summary="Map report of units over a period (?unit_ids=a,b&since_ms&until_ms)",
           tag="reports", access=COMMANDERS, errors=(NotFound, ReportsBusy))  # fmt: skip
@_retry_later
async def units_report(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    raw_ids = [u for u in request.query.get("unit_ids", "").split(",") if u]
    if not 1 <= len(raw_ids) <= MAX_UNITS:
        raise ValidationFailed(f"unit_ids: 1 to {MAX_UNITS} unit ids, comma-separated")
    since, until = epoch_ms(request, "since_ms"), epoch_ms(request, "until_ms")
    if not 0 < until - since <= MAX_PERIOD_MS:
        raise ValidationFailed("the period must be positive and at most 24 hours")
    for unit_id in raw_ids:
        await require_visible(store, current_user(request), (await store.get_unit(UnitId(unit_id))).court_id)
    pool = request.app[REPORTS]
    async with pool.slot():
        tracks = await _tracks(pool, store, [UnitId(u) for u in raw_ids], since, until)
        report = Report(
            "轨迹报告", f"{len(raw_ids)} 个执行单兵", tracks=[t.track for t in tracks], notes=_notes(tracks)
        )
        return await _download(request, report, "轨迹报告.html", tracks)


@api.route("GET", "/api/reports/cases/{case_id}", summary="Map report of a case: where its assets are (HTML)",
           tag="reports", access=frozenset({Access.JUDGE, Access.SUPERVISOR, Access.ADMIN}),
           errors=(NotFound, ReportsBusy))  # fmt: skip
@_retry_later
async def case_report(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    caller = current_user(request)
    raw = request.match_info["case_id"]
    case_id = whole_number(raw)
    if case_id is None:
        raise ValidationFailed(f"case id must be a number, got {raw!r}")
    case = await store.get_case(CaseId(case_id))
    # refusals name neither the case nor its court: the caller may be of another court (as in api/queries.py)
    if caller.access is Access.JUDGE:
        require_on_case(case, caller.user.id)
    try:
        await require_visible(store, caller, case.court_id)
    except Forbidden:
        raise Forbidden("this case is outside your jurisdiction") from None
    places: list[Place] = []
    timeline: list[tuple[int, str]] = []
    queries = await store.list_queries(case_id=case.id)
    read = 0
    for query in queries:
        timeline.append((query.created_ms, f"查询：{query.reason}"))
        assets = await store.query_assets(query.id)
        read += len(assets)
        for asset in assets:
            view: dict[str, Any] = asset_view(asset)
            where = view["details"].get("location")
            if isinstance(where, dict) and {"lat", "lon"} <= where.keys():
                color = "#ff7f0e" if asset.kind == "real_estate" else "#1f77b4"
                places.append(Place(float(where["lat"]), float(where["lon"]), asset.description, color=color))
    report = Report(f"案件财产分布：{case.case_number}", case.title, places=places, timeline=timeline)
    async with request.app[REPORTS].slot():
        response = await _download(request, report, f"案件财产分布-{case.case_number}.html", [])
    # the report shows query results: reading them is audited like every other read (query_control.audit)
    details = {"queries": len(queries), "assets": read, "located": len(places)}
    await request.app[AUDIT].record("case.report", caller.user.id, case_id=case.id, details=details)
    return response
