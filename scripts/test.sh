#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, the Label Studio end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/lint-imports   # layering contracts in pyproject.toml ([tool.importlinter])
exec .venv/bin/python -m pytest "$@"
