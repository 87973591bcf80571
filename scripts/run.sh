#!/usr/bin/env bash
# Set up (idempotent) and run the product.
# - With NEXTCHAT_CHECKPOINT (and NEXTCHAT_VISION_TOWER) set: serve the real model as a Label Studio ML
#   backend on $PORT (default 9090), on the GPU when one is visible (DEVICE/DTYPE override).
# - Otherwise: the no-GPU demo (Label Studio + the backend with the toy model in weights/nextchat-toy;
#   `--random`: a tiny random checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -n "${NEXTCHAT_CHECKPOINT:-}" ]; then
  if [ -z "${DEVICE:-}" ]; then
    DEVICE=$(.venv/bin/python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
  fi
  if [ -z "${DTYPE:-}" ]; then
    DTYPE=$([ "$DEVICE" = cuda ] && echo bf16 || echo fp32)
  fi
  export DEVICE DTYPE
  exec .venv/bin/python -m backend serve "$@"
fi
exec .venv/bin/python -m backend demo "$@"
