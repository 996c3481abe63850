#!/usr/bin/env bash
# Set up a fresh machine if needed, then lint, type-check and run every test.
# Tests start the real servers they need (registry, PostgreSQL, Kafka broker) on loopback and
# stop them by PID when they finish.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export VEIL_TEST_REQUIRE_PG=1  # setup installed PostgreSQL: its tests must run, not skip
echo "== ruff";  python3 -m ruff check src tests bench
echo "== mypy";  python3 -m mypy
echo "== pytest"; python3 -m pytest "$@"
