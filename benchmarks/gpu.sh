#!/usr/bin/env bash
# The CUDA path, checked and measured: benchmarks/gpu.py's four sections, within 8 minutes.
#
#   bash benchmarks/gpu.sh [TESTDATA] [OUT.json]
#
# Run from the project root on a machine with an NVIDIA GPU and a CUDA build of torch. It
# installs nothing but flowkit itself (`pip install --no-deps -e .`, the machine's torch, numpy,
# h5py, OpenCV and click kept as they are). TESTDATA is ../shared/testdata by default; on a
# machine where that folder is not beside the project, copy it in and name it here.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/testdata}"
out="${2:-${OUT:-/tmp}/gpu.json}"
python3 -c "import flowkit" 2>/dev/null || python3 -m pip install -q --no-deps --no-build-isolation -e .
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv || true
export PYTHONUNBUFFERED=1
timeout 480 python3 benchmarks/gpu.py --data "$data" --out "$out"
echo "figures written to $out"
