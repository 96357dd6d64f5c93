#!/usr/bin/env bash
# Set up and run every check: lint (ruff), types (mypy), and the whole test suite, which talks to the real
# PostgreSQL (127.0.0.1:5432, database "test") and Redis (127.0.0.1:6379) servers.
# Usage: ./test.sh [pytest arguments]   (CC_TEST_WORKERS=0 runs the suite in one process)
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh --dev
echo "== ruff";  .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy";  .venv/bin/mypy .
echo "== pytest"
# Two workers by default (README: most tests wait on servers, browsers and links rather than on a core).
exec .venv/bin/pytest -n "${CC_TEST_WORKERS:-2}" --dist worksteal "$@"
