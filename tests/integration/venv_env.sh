# Sourced by the tests that run the pinned .venv (transformers, peft, tokenizers; launch/venv.sh):
# sets SRC (the repository), PY (the venv's python) and OUT (a temporary folder, removed on exit
# unless KEEP_OUT is set), and keeps the Hugging Face libraries offline.
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY="$SRC/.venv/bin/python"
if [ ! -x "$PY" ]; then
  echo "FAIL: $PY is missing: run 'bash launch/venv.sh' (it makes .venv with transformers and peft)" >&2
  exit 1
fi
OUT=$(mktemp -d)
trap '[ -n "${KEEP_OUT:-}" ] || rm -rf "$OUT"' EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
