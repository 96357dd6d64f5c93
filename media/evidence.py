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
        path = root / str(details["file"])
        known.add(path.resolve())
        report.checked += 1
        if not path.is_file():
            report.problems.append(f"{details['file']}: missing (audited {details['bytes']} bytes, "
                                   f"sha256 {details['sha256']})")  # fmt: skip
            continue
        size = path.stat().st_size
        digest = sha256_of(path)
        if digest != details["sha256"] or size != details["bytes"]:
            report.problems.append(f"{details['file']}: altered (sha256 {digest}, {size} bytes; the audit log says "
                                   f"{details['sha256']}, {details['bytes']} bytes)")  # fmt: skip
    pattern = f"{unit or '*'}/{session or '*'}/*.mkv"
    for path in sorted(root.glob(pattern)):
        if path.resolve() not in known:
            report.problems.append(f"{path.relative_to(root)}: not in the audit log (added or renamed)")
    return report
