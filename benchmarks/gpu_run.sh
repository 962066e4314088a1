#!/usr/bin/env bash
# The prepared run on a CUDA GPU machine (one command, results under $OUT):
#   1. the scale-augmented training stage (weights/nuclei.stage2.train.json)
#      with --device cuda, the trained model as stage.tgz;
#   2. bench_gpu.py: predict / segment throughput on a 16384 px image;
#   3. the fine-tuning benchmark (bench_finetune.py --seconds 300) on the GPU.
# INIT: the first stage's model (weights/nuclei.train.json; it was the bundled `nuclei`
# when this ran, 2026-11-27).  Needs the project's dependencies that the machine lacks,
# as wheels in .whl/, and the DSB2018 sample in benchmarks/data/ (python -c "from realdata import dsb2018_sample; dsb2018_sample()").
set -u
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
# the package as installed (the bundled weights are the package unet_core.weights)
mkdir -p /tmp/pkg && cp -r src/unet_core /tmp/pkg/ && cp -r weights /tmp/pkg/unet_core/weights
export PYTHONPATH=/tmp/pkg:$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
log() { echo "=== $(date +%T) $*"; }
{
  log machine; nvidia-smi -L; nproc; python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
  log smoke; python3 -c "
import numpy as np
from unet_core import Predictor
p = Predictor('nuclei', device='cuda', diameter=None)
im = (np.random.default_rng(0).random((700, 900)) * 1000).astype(np.uint16)
print(p.backend, p.precision, p.predict(im).shape, int(p.segment(im).max()))"
  log train stage
  timeout 200 python3 -m unet_core.commands.cli train --config weights/nuclei.stage2.train.json \
    --synthetic 3000 --synthetic-size 256 --seed 1 --init "${INIT:-nuclei}" --device cuda -o /tmp/stage -q
  echo "rc $?"; tar czf "$OUT/stage.tgz" -C /tmp stage
  log throughput
  (cd benchmarks && timeout 300 python3 bench_gpu.py --json "$OUT/gpu.json"); echo "rc $?"
  log finetune
  (cd benchmarks && timeout 330 python3 bench_finetune.py --seconds 300 --steps 3000 --real-only \
    --json "$OUT/finetune_gpu.json"); echo "rc $?"
  log end
} > "$OUT/run.log" 2>&1
