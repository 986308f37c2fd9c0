#!/usr/bin/env bash
# Makes .venv/ (ignored): PyTorch 2.11.0 (the GPU machine's LibTorch, CUDA 13, cxx11 ABI) and
# the Hugging Face libraries the interoperability tests and the peer benchmark use, all pinned
# in launch/requirements-venv.txt. The wheels are fetched once into .cache/wheels/ (ignored); a
# second run installs from there without the network, and a venv made from the same pins is
# left as it is.
#
# The torch wheel's LibTorch (.venv/.../torch/share/cmake) is what the second build of
# launch/setup.sh compiles against. The wheel is installed without its nvidia-* dependencies
# (several GB): the CUDA 13 toolkit at /usr/local/cuda provides cudart, cuBLAS, cuDNN, NCCL,
# cuFFT, cuRAND, cuSOLVER, cuSPARSE and CUPTI; the three libraries it lacks (cuSPARSELt, cuFile,
# NVSHMEM) come from their own wheels into .venv's site-packages/nvidia/, where the wheel's
# RPATH looks for them.
#
# Usage: bash launch/venv.sh            (prints the venv's python on its last line)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
WHEELS=$ROOT/.cache/wheels
PY=${MORE_PYTHON:-python3}
REQS=$ROOT/launch/requirements-venv.txt
STAMP=$VENV/.more-pins

if [ -f "$STAMP" ] && cmp -s "$STAMP" "$REQS" && [ -x "$VENV/bin/python" ]; then
  echo "$VENV/bin/python"
  exit 0
fi
if ! "$PY" -m venv --help >/dev/null 2>&1; then
  echo "venv.sh: '$PY -m venv' is unavailable (apt install python3-venv)" >&2
  exit 1
fi
mkdir -p "$WHEELS"
# Every package is pinned in $REQS, dependencies included, and installed with --no-deps: the
# resolver would otherwise pull torch's nvidia-* wheels, or a newer torch for peft/accelerate.
# pip download skips wheels already in the folder.
"$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$WHEELS" -r "$REQS" >&2
# An existing venv is updated in place (pip skips what is already installed at its pin), so a
# changed pin does not delete the torch that a build tree links against.
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-index --no-deps \
  --find-links "$WHEELS" -r "$REQS" >&2
"$VENV/bin/python" - >&2 <<'PYEOF'
import torch, transformers, peft, safetensors
assert torch.__version__.startswith("2.11.0"), torch.__version__
x = torch.randn(4, 4)
assert torch.allclose(x @ torch.eye(4), x)
print(f"venv: torch {torch.__version__} (cuda {torch.version.cuda}, cxx11 abi "
      f"{torch.compiled_with_cxx11_abi()}), transformers {transformers.__version__}, "
      f"peft {peft.__version__}, safetensors {safetensors.__version__}")
PYEOF
cp "$REQS" "$STAMP"
echo "$VENV/bin/python"
