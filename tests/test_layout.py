"""The floor plan, checked: the server never imports the device or the simulators, the device imports none of
the server, and no two top-level packages import each other (directly or round a longer loop).

Read from the source with ``ast`` rather than by importing, so an import inside a function, under
``TYPE_CHECKING`` or on a path no test runs counts the same as one at the top of a module: each is a
dependency a newcomer (and a refactoring) must reckon with. Kept as a small script rather than
import-linter: the three rules fit in a page, and the project gains no dependency for them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The server's packages: what runs in the command centre's processes.
SERVER = (
    "command_center",
    "field_units",
    "query_control",
    "media",
    "maps",
    "alarms",
    "persistence",
    "event_bus",
    "cluster",
    "core",
    "config",
    "gb28181",
    "tasks",
    "operations",
    "entrustments",
    "consultations",
    "courts",
)
#: The unit's own code, which runs on the device.
DEVICE = ("field_device",)
#: Stand-ins for the outside world (units, partner agencies), for demos, tests and benchmarks.
SIMULATORS = ("simulators",)
FIRST_PARTY = SERVER + DEVICE + SIMULATORS


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """Every module a file imports, absolute (relative imports resolved), with its line number."""
    yield from imports_in(path.read_text(encoding="utf-8"), _module_name(path), is_package=path.name == "__init__.py")


def imports_in(source: str, module: str, *, is_package: bool) -> Iterator[tuple[int, str]]:
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            elif node.module:
                yield node.lineno, node.module


def files_of(packages: tuple[str, ...]) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def edges(packages: tuple[str, ...]) -> dict[tuple[str, str], list[str]]:
    """Top-level package -> top-level package it imports, with where (file:line -> module) as evidence."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in files_of(packages):
        source = path.relative_to(ROOT).parts[0]
        for line, name in imports_of(path):
            target = name.split(".")[0]
            if target in FIRST_PARTY and target != source:
                found.setdefault((source, target), []).append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan): each holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_package_is_named_here() -> None:
    """A new top-level package must be placed on the plan (server, device or simulator), or it escapes it."""
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert on_disk == set(FIRST_PARTY), f"place these on the plan in tests/test_layout.py: {on_disk ^ set(FIRST_PARTY)}"


def test_the_server_never_imports_the_device_or_the_simulators() -> None:
    bad = [
        where
        for (source, target), evidence in edges(SERVER).items()
        if target in DEVICE + SIMULATORS
        for where in evidence
    ]
    assert not bad, "the server imports device or simulator code:\n" + "\n".join(bad)


def test_the_device_imports_nothing_of_the_server() -> None:
    """The unit's code ships without the server: it speaks to it over the wire only."""
    bad = [where for (_, target), evidence in edges(DEVICE).items() if target in SERVER for where in evidence]
    assert not bad, "the device code imports server code:\n" + "\n".join(bad)


def test_no_import_cycle_between_top_level_packages() -> None:
    found = edges(FIRST_PARTY)
    graph: dict[str, set[str]] = {}
    for source, target in found:
        graph.setdefault(source, set()).add(target)
    report = []
    for component in cycles(graph):
        members = set(component)
        report.append(" <-> ".join(component))
        for (source, target), evidence in sorted(found.items()):
            if source in members and target in members:
                report.extend(f"    {where}" for where in evidence)
    assert not report, "import cycles between packages:\n" + "\n".join(report)


def test_storage_imports_only_records_and_ports() -> None:
    """Adapters implement the domain's ports and hold no rules of their own: besides core, config and
    themselves they may import a domain package's ``models`` (records and the pure rules the adapters apply
    as compare-and-set) and ``port``, never its desks or views, nor any service or the edge."""
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files_of(("persistence",))
        for line, name in imports_of(path)
        if name.split(".")[0] in FIRST_PARTY
        and name.split(".")[0] not in ("persistence", "core", "config")
        and name.split(".")[-1] not in ("models", "port")
    ]
    assert not bad, "storage imports beyond records and ports:\n" + "\n".join(bad)


def test_the_server_image_holds_the_server_and_nothing_else() -> None:
    """The Dockerfile copies package by package: a server package left out breaks the image at start, and
    the device or simulator code has no place in it."""
    copied = {
        line.split()[1].rstrip("/")
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and not line.startswith("COPY --")
    }
    assert set(SERVER) - copied == set(), f"the Dockerfile does not copy {sorted(set(SERVER) - copied)}"
    assert copied & set(DEVICE + SIMULATORS) == set()


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_imports_are_found_wherever_they_are_written() -> None:
    """Relative imports resolve; imports inside functions and under TYPE_CHECKING count."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from ..views import x\n"
        "from . import y\n"
        "if TYPE_CHECKING:\n    import simulators.units\n"
        "def f():\n    from field_device.client import TelemetryClient\n"
    )
    found = {name for _, name in imports_in(source, "field_units.sub.mod", is_package=False)}
    assert found == {"typing", "field_units.views", "field_units.sub", "simulators.units", "field_device.client"}
