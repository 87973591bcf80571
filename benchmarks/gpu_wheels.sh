#!/usr/bin/env bash
# Prepare what the GPU check needs on a machine that has PyTorch (and a CUDA GPU) but not this
# project's other packages and no network: wheels into .wheels/ and, with --fixtures, a copy of the
# nextchat-tiny fixture (without its stage3 folder) into .gpu_fixtures/nextchat-tiny. Both are ignored
# by git; take them along to that machine with the working tree.
#
#   bash benchmarks/gpu_wheels.sh [--dest .wheels] [--python-version 3.12] [--fixtures ../shared/fixtures/nextchat-tiny]
#
# Then, there: bash benchmarks/gpu_check.sh RESULTS_DIR --wheels .wheels --fixtures .gpu_fixtures/nextchat-tiny
#
# The wheels are the packages such a machine was seen to lack (segment-anything, Flask and its small
# dependencies, gunicorn, pycocotools, label-studio-sdk with what its brush module imports), plus
# transformers and Pillow at this project's versions: transformers 5.17 (as found on one such machine)
# breaks model.session's cache copies, and Pillow's resampling feeds the parity check. Installed with
# --no-deps: that machine's own torch, numpy, tokenizers, huggingface-hub, safetensors, sentencepiece,
# requests, OpenCV and lxml are used as they are (regex is carried: transformers 5.24 checks its
# version at import).
set -euo pipefail
cd "$(dirname "$0")/.."

dest=.wheels
python_version=3.12
fixtures=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dest) dest=$2; shift 2 ;;
    --python-version) python_version=$2; shift 2 ;;
    --fixtures) fixtures=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-}
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi

# pinned in requirements.txt: take those versions
pinned() { grep -i -E "^$1==" requirements.txt | head -1; }
packages=()
for name in transformers segment-anything pillow flask gunicorn pycocotools label-studio-sdk; do
  spec=$(pinned "$name")
  [[ -n "$spec" ]] || { echo "error: $name is not pinned in requirements.txt" >&2; exit 2; }
  packages+=("$spec")
done
# their dependencies that such a machine lacks (versions as in the project's environment)
packages+=(werkzeug==3.1.9 itsdangerous==2.2.0 blinker==1.9.0 appdirs==1.4.4 defusedxml==0.7.1 ijson==3.6.0
           pyjwt==2.13.0 nltk==3.10.4 ujson==6.1.0 regex==2026.11.19)

platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done

rm -rf "$dest"
mkdir -p "$dest"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
  "${platforms[@]}" -d "$dest" "${packages[@]}"
echo "wheels in $dest: $(ls "$dest" | wc -l) files, $(du -sh "$dest" | cut -f1)"

if [[ -n "$fixtures" ]]; then
  [[ -d "$fixtures/cases" && -d "$fixtures/weights" ]] || { echo "error: $fixtures has no cases/ and weights/" >&2; exit 2; }
  rm -rf .gpu_fixtures/nextchat-tiny
  mkdir -p .gpu_fixtures/nextchat-tiny
  cp -r "$fixtures/cases" "$fixtures/weights" .gpu_fixtures/nextchat-tiny/
  [[ -f "$fixtures/README.md" ]] && cp "$fixtures/README.md" .gpu_fixtures/nextchat-tiny/
  echo "fixture copied to .gpu_fixtures/nextchat-tiny: $(du -sh .gpu_fixtures/nextchat-tiny | cut -f1)"
fi
