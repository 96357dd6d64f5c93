"""Taking over the asset queries of a process that died: their leases lapse, another process resumes them.

Only with several processes (a shared cluster); a single process resumes its own pending work once at start.
"""

from __future__ import annotations

import asyncio
import logging

from query_control.broker import Broker
from query_control.followups import FollowUps

log = logging.getLogger(__name__)


async def adopt_forever(broker: Broker, followups: FollowUps, period: float) -> None:
    """Every lease period, resume the queries and follow-ups whose owner stopped renewing their lease."""
    while True:
        await asyncio.sleep(period)
        try:
            adopted = await broker.resume_pending()
            adopted_followups = await followups.resume_pending()
        except Exception:
            log.exception("asset queries: looking for queries to take over failed")
            continue
        if adopted or adopted_followups:
            log.warning("asset queries: took over %d queries and %d follow-ups of a stopped process",
                        adopted, adopted_followups)  # fmt: skip
