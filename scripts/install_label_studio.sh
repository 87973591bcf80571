#!/usr/bin/env bash
# Install Label Studio 1.23.2 into its own venv, .venv-ls (idempotent: does nothing when it is there).
# Label Studio pins its own dependencies (Django, DRF, pandas, ...), so it never shares .venv; the demo
# and the end-to-end tests start it as a separate process (.venv-ls/bin/label-studio).
#   PYTHON=python3.11 bash scripts/install_label_studio.sh      # first install: about 4 minutes, ~1 GB
set -euo pipefail
cd "$(dirname "$0")/.."
LS_VERSION=1.23.2
VENV=${LABEL_STUDIO_VENV:-.venv-ls}
PYTHON=${PYTHON:-python3}

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("label-studio"))' 2>/dev/null || true
}

if [ -x "$VENV/bin/label-studio" ] && [ "$(installed_version)" = "$LS_VERSION" ]; then
  echo "Label Studio $LS_VERSION already installed in $VENV"
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check "label-studio==$LS_VERSION"
echo "Label Studio $(installed_version) installed in $VENV"
