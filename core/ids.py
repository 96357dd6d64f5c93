"""Distinct id types, so a unit id is never passed where a court id is expected."""

from typing import NewType

CourtId = NewType("CourtId", str)
UserId = NewType("UserId", int)
UnitId = NewType("UnitId", str)
