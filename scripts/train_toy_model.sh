#!/usr/bin/env bash
# Reproduce the shipped toy NExT-Chat (weights/nextchat-toy) from random weights: about 48 minutes on two
# idle CPU cores. docs/toy-model.md says what each stage does.
#   bash scripts/train_toy_model.sh [OUT]      (default runs/toy-model; the checkpoint is OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/toy-model}
# stages 1-2 with SAM alongside (8000 steps of 16 of 24000 scenes, from random weights, a checkpoint every 1000),
# then stage 3 with the project's fine-tuning trainer on an export of other scenes, merged into the weights
.venv/bin/python -m model.toy_model --out "$OUT" --save-every 1000
echo "the toy checkpoint: $OUT (compare: .venv/bin/python -m benchmarks.toy_quality --checkpoint $OUT)"
