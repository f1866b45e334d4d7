#!/usr/bin/env bash
# Install, then lint (ruff), type-check (mypy) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_system.sh    # Chromium (browser tests), promtool (alert-rule tests)
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports
echo "== docs site"; NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
# About 8 minutes on an idle 2-core machine (about 12 with the first install and Chromium).
# The longest single test is the OpenAPI fuzzer, about 50 s; none runs much past a minute.
echo "== pytest: about 8 minutes on 2 idle cores; a dot per test"
.venv/bin/pytest -q "$@"
