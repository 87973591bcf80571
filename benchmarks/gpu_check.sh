#!/usr/bin/env bash
# The GPU check in one command (see benchmarks/README.md, "GPU check"):
#
#   bash benchmarks/gpu_check.sh RESULTS_DIR [--dry-run] [--wheels DIR] [--fixtures DIR] [options]
#
# --wheels DIR: install every wheel in DIR first (no index, no dependencies) into a private folder put
# ahead on PYTHONPATH, for a machine whose Python lacks the project's packages (benchmarks/gpu_wheels.sh
# downloads them). Python: $PYTHON, else .venv/bin/python, else python3. Every other option goes to
# `python -m benchmarks.gpu` (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi

args=()
wheels=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheels) [[ $# -ge 2 ]] || { echo "error: --wheels needs a folder" >&2; exit 2; }; wheels=$2; shift 2 ;;
    --wheels=*) wheels=${1#--wheels=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

if [[ -n "$wheels" ]]; then
  shopt -s nullglob
  files=("$wheels"/*.whl)
  if [[ ${#files[@]} -eq 0 ]]; then echo "error: no .whl files in $wheels" >&2; exit 2; fi
  site=${NEXTCHAT_SITE:-$(mktemp -d /tmp/nextchat_site.XXXXXX)}
  echo "[gpu check] installing ${#files[@]} wheels from $wheels into $site"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${files[@]}"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

export PYTHONUNBUFFERED=1
exec "$python" -m benchmarks.gpu "${args[@]}"
