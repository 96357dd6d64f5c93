"""Map reports are rendered in worker processes, a few at once, never on the event loop.

folium builds and renders a report in pure Python: a maximal one (50 units over 24 hours) takes seconds
of CPU, and on the loop that froze every unit's acknowledgements, every screen and video forwarding for
as long. A thread would still hold the GIL most of that time, so the work goes to a process pool
(``spawn``: a fork of a process running an event loop and aiortc's threads is not safe). At most
``workers`` reports are in progress at once; one more is refused with ``ReportsBusy`` (503, Retry-After)
rather than queued behind them, since a person waiting at a console would rather be told to retry.

The worker functions take and return plain data (points, labels, the report dataclasses), so what
crosses the process boundary is small: each unit's raw points once, its simplified track back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from core.errors import ServiceUnavailable
from maps.report import Report, Track, render
from maps.tracks import MAX_SHOWN_POINTS, find_stops, simplify_within

T = TypeVar("T")

RETRY_AFTER_SECONDS = 5  # about one maximal report's rendering


class ReportsBusy(ServiceUnavailable):
    """As many reports as the server renders at once are under way; try again shortly (Retry-After)."""


@dataclass(frozen=True, slots=True)
class PreparedTrack:
    unit_id: str
    track: Track
    raw_points: int  # fixes stored in the period
    tolerance_m: float  # Douglas–Peucker tolerance the shown points were simplified with (0: all shown)


def prepare_track(
    unit_id: str, label: str, points: list[tuple[int, float, float]], cap: int = MAX_SHOWN_POINTS
) -> PreparedTrack:
    """A unit's whole track for a report: stops found on every fix, then the line simplified to at most
    ``cap`` points when it has more (worker side: CPU-bound on a day of fixes)."""
    stops = find_stops(points)
    kept, tolerance = simplify_within([(lat, lon) for _, lat, lon in points], cap)
    shown = points if tolerance == 0 else [points[i] for i in kept]
    return PreparedTrack(unit_id, Track(label, shown, stops), len(points), tolerance)


def render_document(
    report: Report, centre: tuple[float, float], zoom: int, basemap_file: Path | None, tile_url: str | None
) -> str:
    """The report's HTML (worker side); the basemap is read here, not shipped across from the server."""
    basemap: dict[str, Any] | None = None
    if basemap_file is not None:
        basemap = json.loads(basemap_file.read_text(encoding="utf-8"))
    return render(report, centre=centre, zoom=zoom, basemap=basemap, tile_url=tile_url)


class ReportPool:
    """The worker processes, and counts of what they are doing (read by tests)."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        self._abandoned: set[asyncio.Future[Any]] = set()  # work whose request went away, still in a worker
        self.busy = 0  # reports in progress (reading their tracks, or rendering)
        self.running = 0  # functions handed to the workers and not yet back

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One report in progress; ``ReportsBusy`` when ``workers`` already are (counting work a worker
        is still doing for a request that went away, so a client retrying cannot pile work up)."""
        if self.busy + len(self._abandoned) >= self._workers:
            raise ReportsBusy(f"{self._workers} map reports are being rendered, the most at once; try again shortly")
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker process (it and its arguments must pickle)."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, partial(function, *args))
        self.running += 1
        future.add_done_callback(self._finished)
        try:
            return await asyncio.shield(future)  # cancelling the request cannot stop a process mid-render
        except asyncio.CancelledError:
            self._abandoned.add(future)
            raise

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self.running -= 1
        self._abandoned.discard(future)
        if not future.cancelled():
            future.exception()  # retrieved: an abandoned render's failure is nobody's to report

    async def close(self) -> None:
        """Stop the workers (waiting in a thread, not on the loop); queued work is dropped."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
