#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python scripts/check_imports.py  # no import circles, stages below flows/CLI/render
.venv/bin/mypy
# on every core (pytest-xdist; an idle worker takes tests queued for another: the suite has a few long ones);
# each test has its own temporary folders, ports and servers
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-auto}" --dist worksteal "$@"
