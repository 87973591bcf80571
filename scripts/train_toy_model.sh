#!/usr/bin/env bash
# Reproduce the shipped toy NExT-Chat (weights/nextchat-toy) from random weights: about an hour on two CPU
# cores. docs/toy-model.md says what each step does.
#   bash scripts/train_toy_model.sh [OUT]      (default runs/toy-model; the checkpoint is OUT/final)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/toy-model}
PY=.venv/bin/python
# stages 1-2 with SAM alongside: 1600 steps from random weights, then 1000 more at a lower peak rate
$PY -m model.toy_model --out "$OUT/stage12-a" --steps 1600 --stage3-steps 0
$PY -m model.toy_model --out "$OUT/stage12-b" --resume "$OUT/stage12-a" --steps 1000 --lr 6e-4 --warmup 50 \
    --stage3-steps 0
# stage 3 with the project's fine-tuning trainer on an export of other scenes, merged into the weights
$PY -m model.toy_model --out "$OUT/final" --resume "$OUT/stage12-b" --steps 0 --scenes 16
echo "the toy checkpoint: $OUT/final (compare: python -m benchmarks.toy_quality --checkpoint $OUT/final)"
