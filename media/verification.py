"""Evidence re-checked while the server runs: every recorded segment the audit chain vouches for is re-read and
its SHA-256 and size compared with the chain's, off the event loop (``media.evidence.check_segment``).

``recording verify`` does the same from the command line, once; this runs in the leader every
``media.verify_interval_seconds`` and on demand (``POST /api/ops/verify-recordings``), so an altered or lost
segment shows on the 运维 page and in ``cc_recording_segment_verifications_total{result}`` without anyone
running the CLI. A mismatch or a missing file is logged as an error naming the file and handed to
``on_problem`` (the composition root raises an alarm for the unit's or the room's court: 录像校验异常).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media.evidence import SegmentCheck, check_segment

log = logging.getLogger(__name__)

RESULTS = ("ok", "mismatch", "missing")
MAX_PROBLEMS = 20  # problems kept from the last run for the 运维 page (the log has them all)

#: The details of the chain's segment entries, oldest first (``media.evidence.SEGMENT_ACTION``).
Audited = Callable[[], Awaitable[list[dict[str, Any]]]]
#: Told of each segment found altered or missing, with its audit details.
OnProblem = Callable[[dict[str, Any], SegmentCheck], Awaitable[None]]


@dataclass(frozen=True)
class VerificationRun:
    """What one pass found."""

    finished: float  # Unix time
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)


class SegmentVerifier:
    """Re-hashes the recorded segments under ``root`` against the chain; one pass at a time, shared."""

    def __init__(self, audited: Audited, root: Path, *, on_problem: OnProblem | None = None) -> None:
        self._audited = audited
        self._root = root
        self._on_problem = on_problem
        self.totals = dict.fromkeys(RESULTS, 0)  # since this process started, for the metrics
        self.last: VerificationRun | None = None
        self._running: asyncio.Future[VerificationRun] | None = None

    async def run(self) -> VerificationRun:
        """One pass over every audited segment; a call while a pass runs gets that pass's result (single
        flight: each pass re-reads every file, so callers must not be able to queue them)."""
        if self._running is not None:
            return await asyncio.shield(self._running)
        running = self._running = asyncio.get_running_loop().create_future()
        running.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if nobody waits
        try:
            result = await self._pass()
        except Exception as exc:
            running.set_exception(exc)
            raise
        except BaseException:
            running.cancel()
            raise
        finally:
            self._running = None
        running.set_result(result)
        return result

    async def _pass(self) -> VerificationRun:
        segments = await self._audited()
        checks = await asyncio.to_thread(lambda: [check_segment(d, self._root) for d in segments])
        counts = dict.fromkeys(RESULTS, 0)
        problems = []
        for details, check in zip(segments, checks, strict=True):
            counts[check.result] += 1
            if check.problem is not None:
                log.error("recording: evidence segment %s: %s", check.result, check.problem)
                problems.append(check.problem)
                await self._tell(details, check)
        for result, n in counts.items():
            self.totals[result] += n
        self.last = VerificationRun(time.time(), counts, problems[:MAX_PROBLEMS])
        if problems:
            log.error("recording: %d of %d segments do not match the audit chain", len(problems), len(checks))
        else:
            log.info("recording: %d segments match the audit chain", len(checks))
        return self.last

    async def _tell(self, details: dict[str, Any], check: SegmentCheck) -> None:
        if self._on_problem is None:
            return
        try:
            await self._on_problem(details, check)
        except Exception:  # the count and the log line stand; the alarm is raised again at the next pass
            log.exception("recording: could not report %s", check.file)

    async def run_forever(self, interval: float, leading: Callable[[], bool]) -> None:
        """Every ``interval`` seconds, while ``leading()`` (one process re-reads the shared recordings)."""
        while True:
            await asyncio.sleep(interval)
            if not leading():
                continue
            try:
                await self.run()
            except Exception:  # the store away: the next pass tries again
                log.exception("recording: verification pass failed")
