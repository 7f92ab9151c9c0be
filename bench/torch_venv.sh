#!/usr/bin/env bash
# Makes (once) and names a venv with PyPI's torch for the training comparison (bench/compare.sh):
# prints its python's path. PyPI's torch for Linux is the CUDA build, about 5 GB with its
# libraries; it runs on the CPU, with oneDNN's AVX-512 and bf16 kernels. The venv lives outside
# the clone, in ~/.cache, so every checkout shares it. TORCH_VERSION picks another release.
set -euo pipefail
version=${TORCH_VERSION:-2.15.0}
venv=${LMLAB_TORCH_VENV:-$HOME/.cache/lmlab-torch-venv}
python=$venv/bin/python
if ! "$python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$version')" 2>/dev/null; then
  echo "torch_venv.sh: installing torch $version into $venv (about 5 GB)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "torch==$version" numpy >&2
fi
echo "$python"
