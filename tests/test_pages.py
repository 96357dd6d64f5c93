"""The pages and what they load come from the app itself: Leaflet from node_modules, the offline basemap."""

from __future__ import annotations

from pathlib import Path

import pytest
from shapely.geometry import Point, shape

from tests.conftest import AppFactory, World

HARBIN_DISTRICTS = {"道里区", "南岗区", "道外区", "香坊区", "平房区", "松北区", "呼兰区", "阿城区", "双城区"}


async def test_the_wall_page_and_leaflet_are_served(world: World) -> None:
    page = await world.client.get("/wall")
    assert page.status == 200 and 'src="/vendor/leaflet/leaflet.js"' in await page.text()
    script = await world.client.get("/vendor/leaflet/leaflet.js")
    assert script.status == 200 and "Leaflet" in (await script.text())[:300]
    assert (await world.client.get("/vendor/leaflet/leaflet.css")).status == 200
    start = await world.client.get("/")
    assert 'src="/static/app.js"' in await start.text()  # the start page lists the pages the caller's role may use
    nav = await world.client.get("/static/lib/nav.js")
    assert nav.status == 200 and 'path: "/wall"' in await nav.text()


async def test_the_basemap_covers_harbin_and_heilongjiang(world: World) -> None:
    response = await world.client.get("/static/basemap/districts.geojson")
    assert response.status == 200 and response.content_type == "application/geo+json"
    assert len(await response.read()) < 1_000_000
    features = (await response.json())["features"]
    districts = {f["properties"]["name"]: f for f in features if f["properties"]["level"] == "district"}
    cities = {f["properties"]["name"]: f for f in features if f["properties"]["level"] == "city"}
    assert districts.keys() >= HARBIN_DISTRICTS
    assert cities.keys() >= {"哈尔滨市", "齐齐哈尔市", "牡丹江市", "大庆市", "佳木斯市", "黑河市"}
    # Longitude first, in the right place: Harbin's central street (中央大街, 45.7745 N 126.6175 E) is in 道里区.
    central_street = Point(126.6175, 45.7745)
    assert shape(districts["道里区"]["geometry"]).contains(central_street)
    assert shape(cities["哈尔滨市"]["geometry"]).contains(central_street)
    for feature in features:
        assert shape(feature["geometry"]).is_valid, feature["properties"]["name"]


async def test_a_missing_leaflet_is_a_clear_404(make_world: AppFactory, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setattr("command_center.pages.LEAFLET", tmp_path / "node_modules" / "leaflet" / "dist")
    world = await make_world()
    response = await world.client.get("/vendor/leaflet/leaflet.js")
    assert response.status == 404
    assert "npm ci" in await response.text()
