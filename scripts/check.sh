#!/usr/bin/env bash
# What a maintainer checks besides the tests: lint, format, types, layers.
# Uses the .venv made by scripts/test.sh (run that once first, or let .ci/run do it).
set -euo pipefail
cd "$(dirname "$0")/.."
SYNTHOBS_VENV=.venv
source scripts/_setup.sh "test"
echo "==> ruff check";         .venv/bin/ruff check .
echo "==> ruff format --check"; .venv/bin/ruff format --check .
echo "==> mypy (strict)";      .venv/bin/mypy
echo "==> lint-imports";       .venv/bin/lint-imports
