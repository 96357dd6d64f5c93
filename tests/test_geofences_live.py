"""Geofences on the live position path: created and imported as GeoJSON (bad shapes refused precisely),
evaluated on every unit's newest position, debounced so drift along an edge never flaps, and a unit that
enters a no-go zone raises exactly one alarm on the wall's alarm topic."""

from __future__ import annotations

from typing import Any

from config.settings import TrackingSettings
from tests.conftest import AppFactory, World
from tests.test_live_tracking import fix, open_screen, open_unit, send

# a small no-go square in 道里区 (lon/lat): 126.600–126.610 E, 45.750–45.756 N
SQUARE = [[[126.600, 45.750], [126.610, 45.750], [126.610, 45.756], [126.600, 45.756], [126.600, 45.750]]]
EDGE_LAT = 45.756


def no_go(**props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": SQUARE},
            "properties": {"name": "被执行人住所禁入区", "kind": "no_go"} | props}  # fmt: skip


async def test_drift_along_an_edge_never_flaps_and_entering_raises_one_alarm(make_world: AppFactory) -> None:
    world = await make_world(tracking=TrackingSettings(geofence_fixes=3, geofence_seconds=4))
    created = await world.client.post("/api/geofences", json=no_go(), headers=world.auth("operator"))
    assert created.status == 201, await created.text()
    fence = (await created.json())["features"][0]
    assert fence["properties"]["alarm_on"] == "enter" and fence["properties"]["court_id"] == "HLJ01"
    screen = await open_screen(world, "operator", "alarms")
    unit = await open_unit(world)
    seq = 0

    async def report(lat: float, age_s: float) -> None:
        nonlocal seq
        seq += 1
        await send(unit, fix(seq, age_ms=int(age_s * 1000), lat=lat, lon=126.605))

    # GPS drift across the northern edge, in and out every fix for 40 s: never 3 fixes over 4 s inside
    for i in range(20):
        await report(EDGE_LAT + (0.00002 if i % 2 else -0.00002), age_s=100 - 2 * i)
    # then well inside for 4 fixes over 6 s: one crossing
    for i in range(4):
        await report(45.753, age_s=50 - 2 * i)
    raised = await screen.next("alarm", event="raised")
    assert raised["alarm"]["kind"] == "geofence" and raised["alarm"]["details"]["fence"] == "被执行人住所禁入区"
    assert raised["alarm"]["subject"] == f"HLJ0102-U01|{fence['id']}"
    # and out again: the condition clears, the alarm waits for a person
    for i in range(4):
        await report(45.760, age_s=30 - 2 * i)
    cleared = await screen.next("alarm", event="cleared")
    assert cleared["alarm"]["id"] == raised["alarm"]["id"] and cleared["alarm"]["state"] == "open"
    geofence_messages = [m for m in screen.messages if m["type"] == "alarm"]
    assert [m["event"] for m in geofence_messages] == ["raised", "cleared"]  # nothing from the drift


async def test_bad_shapes_are_refused_and_imports_are_all_or_nothing(world: World) -> None:
    headers = world.auth("operator")
    bowtie = no_go() | {"geometry": {"type": "Polygon", "coordinates": [
        [[126.60, 45.75], [126.61, 45.76], [126.61, 45.75], [126.60, 45.76], [126.60, 45.75]]]}}  # fmt: skip
    lat_first = [[[45.75, 126.60], [45.75, 126.61], [45.76, 126.61], [45.75, 126.60]]]
    swapped = no_go() | {"geometry": {"type": "Polygon", "coordinates": lat_first}}
    circle_without_radius = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [126.6, 45.75]},
                             "properties": {"name": "圆形", "kind": "target"}}  # fmt: skip
    for feature, words in [
        (bowtie, "Self-intersection"),
        (swapped, "lon first"),
        (circle_without_radius, "radius_m"),
        (no_go(kind="moat"), "kind must be one of"),
        (no_go(alarm_on="sometimes"), "alarm_on must be one of"),
        (no_go(name=""), "properties.name is required"),
    ]:
        response = await world.client.post("/api/geofences", json=feature, headers=headers)
        assert response.status == 422 and words in (await response.json())["error"]["message"], words
    circle = circle_without_radius | {"properties": {"name": "圆形", "kind": "target", "radius_m": 300}}
    mixed = {"type": "FeatureCollection", "features": [no_go(), circle, bowtie]}
    refused = await world.client.post("/api/geofences/import", json=mixed, headers=headers)
    message = (await refused.json())["error"]["message"]
    assert refused.status == 422 and "nothing imported; 1 of 3" in message and "features[2]" in message
    assert (await (await world.client.get("/api/geofences", headers=headers)).json())["features"] == []
    good = {"type": "FeatureCollection", "features": [no_go(), circle]}
    imported = await world.client.post("/api/geofences/import", json=good, headers=headers)
    assert imported.status == 201
    listed = (await (await world.client.get("/api/geofences", headers=headers)).json())["features"]
    by_kind = {f["properties"]["kind"]: f for f in listed}  # imported together: same time, any order
    assert sorted(by_kind) == ["no_go", "target"] and len(listed) == 2
    assert by_kind["target"]["properties"]["radius_m"] == 300 and by_kind["target"]["properties"]["alarm_on"] == "none"
    gone = await world.client.delete(f"/api/geofences/{by_kind['no_go']['id']}", headers=headers)
    assert gone.status == 204
    again = await world.client.delete(f"/api/geofences/{by_kind['no_go']['id']}", headers=headers)
    assert again.status == 404
    judge = await world.client.post("/api/geofences", json=no_go(), headers=world.auth("judge"))
    assert judge.status == 403
