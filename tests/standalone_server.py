"""A server run as its own process (``python -m command_center serve``) on a SQLite store in a temporary
folder, with a registered unit and an operator: for the tests that put it in a network namespace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "command_center"]


def run(*command: str, stdin: str = "", env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
    return result.stdout


def prepare(folder: Path, *, unit: str, watcher_password: str, **settings: str) -> tuple[dict[str, str], str]:
    """The server's environment (``settings``: extra CC_ variables) and the unit's device secret; the operator
    ``watcher`` of the Harbin intermediate court can watch the unit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    env |= {"CC_DATA_DIR": str(folder), "CC_STORE__URL": f"sqlite:///{folder / 'app.db'}", "CC_CONFIG": "",
            "CC_AUTH__ARGON2_MEMORY_KIB": "8", "CC_AUTH__ARGON2_TIME_COST": "1",
            "CC_AUTH__ARGON2_PARALLELISM": "1", **settings}  # fmt: skip
    run(*CLI, "init", env=env)
    added = run(*CLI, "device", "add", "--id", unit, "--name", unit, "--kind", "body_camera", "--court", "HLJ0102",
                env=env)  # fmt: skip
    run(*CLI, "user", "add", "--username", "watcher", "--display-name", "watcher", "--role", "operator", "--court",
        "HLJ01", stdin=watcher_password + "\n", env=env)  # fmt: skip
    return env, added.rsplit(" ", 1)[-1].strip()
