"""Checking recordings against the audit log: every segment the chain vouches for must exist with the same
SHA-256 and size, and no segment file may exist that the chain does not know of. Blocking (reads files)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media.recording import sha256_of

SEGMENT_ACTION = "media.recording.segment"


@dataclass
class EvidenceReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class SegmentCheck:
    """One audited segment re-read: ``ok``, ``mismatch`` (its SHA-256 or size differ from the chain's) or
    ``missing`` (no file where the chain says it is)."""

    file: str
    result: str
    problem: str | None = None


def check_segment(details: dict[str, Any], root: Path) -> SegmentCheck:
    """Re-read one segment the chain vouches for (``details`` of its audit entry) and compare; blocking."""
    path = root / str(details["file"])
    if not path.is_file():
        return SegmentCheck(details["file"], "missing", f"{details['file']}: missing (audited {details['bytes']} "
                            f"bytes, sha256 {details['sha256']})")  # fmt: skip
    size = path.stat().st_size
    digest = sha256_of(path)
    if digest != details["sha256"] or size != details["bytes"]:
        return SegmentCheck(details["file"], "mismatch", f"{details['file']}: altered (sha256 {digest}, {size} bytes; "
                            f"the audit log says {details['sha256']}, {details['bytes']} bytes)")  # fmt: skip
    return SegmentCheck(details["file"], "ok")


def check_recordings(
    audited: Iterable[dict[str, Any]], root: Path, *, session: str | None = None, unit: str | None = None
) -> EvidenceReport:
    """``audited``: the details of the chain's segment entries. Limited to one session or unit if given."""
    report = EvidenceReport()
    known: set[Path] = set()
    for details in audited:
        if session is not None and details.get("session_id") != session:
            continue
        if unit is not None and details.get("unit_id") != unit:
            continue
        known.add((root / str(details["file"])).resolve())
        report.checked += 1
        if (checked := check_segment(details, root)).problem is not None:
            report.problems.append(checked.problem)
    pattern = f"{unit or '*'}/{session or '*'}/*.mkv"
    for path in sorted(root.glob(pattern)):
        if path.resolve() not in known:
            report.problems.append(f"{path.relative_to(root)}: not in the audit log (added or renamed)")
    return report
