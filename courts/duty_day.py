"""The court's day: duty rosters and "today" in statistics follow China Standard Time (UTC+8, no DST),
whatever the server's own time zone is."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from core.errors import ValidationFailed

CST = timezone(timedelta(hours=8), "CST")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FIRST_DAY, LAST_DAY = "1970-01-01", "9999-12-30"  # days whose bounds are epoch milliseconds a datetime holds


def today(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, CST).strftime("%Y-%m-%d")


def bounds(day: str) -> tuple[int, int]:
    """[start, end) of the day in ms since the epoch; ValidationFailed for anything but a real YYYY-MM-DD."""
    if not DAY.match(day):
        raise ValidationFailed(f"day must be YYYY-MM-DD, got {day!r}")
    try:
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=CST)
    except ValueError:
        raise ValidationFailed(f"{day} is not a date") from None
    if not FIRST_DAY <= day <= LAST_DAY:  # year 1 in CST is year 0 in UTC, which datetime cannot hold
        raise ValidationFailed(f"day must be from {FIRST_DAY} to {LAST_DAY}, got {day}")
    end = start + timedelta(days=1)
    return int(start.astimezone(UTC).timestamp() * 1000), int(end.astimezone(UTC).timestamp() * 1000)
