#!/usr/bin/env bash
# Create .venv with the project's dependencies (idempotent). Label Studio gets its own venv
# (.venv-ls) because it pins its own dependencies; it is only needed by the demo and the e2e tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
if [ "${SKIP_LABEL_STUDIO:-0}" != "1" ] && [ -f scripts/install_label_studio.sh ]; then
  bash scripts/install_label_studio.sh
fi
