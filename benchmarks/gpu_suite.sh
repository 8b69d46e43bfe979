#!/usr/bin/env bash
# The GPU benchmark suite (issue 16), one command, under 8 minutes on one GPU, offline (no data/, no network):
#
#   bash benchmarks/gpu_suite.sh                     # on a GPU machine
#   bash benchmarks/gpu_suite.sh --cpu-smoke         # tiny variants, a few steps, on the CPU (also: HMA_GPU_SUITE_CPU=1)
#
# Prints, each part measured in this one run:
#   1. generation FPS of hma-vq-b and hma-mar-b (random weights, world model only, no tokenizer decode) at batch 1 and
#      16 in bf16, eager and with CUDA graphs (torch.compile mode reduce-overhead per trunk block), against the
#      paper's 22.7 FPS; mar with its 100-step DDPM head and the 8- and 4-step DDIM head; peak memory per row.
#   2. training throughput and MFU of hma-vq-b in bf16 against a dense bf16 matmul timed in the same run (target
#      >= 40%), with peak memory.
#   3. a 200-step FSDP2 run of the GPU recipe's path (ModelParallelStrategy, one device, bf16, synthetic frames
#      tokenised on the fly).
# PYTHON picks the interpreter (default .venv/bin/python if present, else python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
CPU=${HMA_GPU_SUITE_CPU:-0}
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) CPU=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_suite.sh: unknown argument $arg (use --cpu-smoke or nothing)" >&2; exit 2 ;;
  esac
done
export HF_HUB_OFFLINE=1
START=$(date +%s)

if [ "$CPU" = "1" ]; then
  echo "== gpu_suite: CPU smoke mode (tiny variants, few steps; figures mean nothing) =="
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  GEN=(--variants hma-vq-test hma-mar-test --device cpu --threads 1 --batches 1 2 --steps 2 --repeats 1 --no-full
       --samplers ddpm ddim:4)
  GEN_COMPILED=()
  TRAIN=(--variants hma-vq-test --device cpu --threads 1 --precision fp32 --batch 2 --steps 1 --warmup 0)
  FSDP=(--variant hma-vq-test --tokenizer tok-vq-test --image-size 64 --window 3 --batch 2 --steps 3 --device cpu
        --precision 32-true)
else
  echo "== gpu_suite on $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))') =="
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true
  GEN=(--variants hma-vq-b hma-mar-b --device cuda --bf16 --batches 1 16 --steps 2 --repeats 7 --no-full
       --samplers ddpm:100 ddim:8 ddim:4 --paper-fps 22.7)
  GEN_COMPILED=(--variants hma-vq-b hma-mar-b --device cuda --bf16 --batches 1 16 --steps 2 --repeats 7 --no-full
                --samplers ddim:8 --paper-fps 22.7 --compile reduce-overhead)
  TRAIN=(--variants hma-vq-b --device cuda --precision bf16 --batch 16 --steps 10 --warmup 3)
  FSDP=(--variant hma-vq-b --tokenizer tok-vq-f8-1k --image-size 64 --batch 8 --steps 200 --device cuda
        --precision bf16-mixed)
fi

echo "-- 1. generation FPS (paper: 22.7 FPS for HMA-Base) --"
"$PY" benchmarks/generation_speed.py "${GEN[@]}"
if [ ${#GEN_COMPILED[@]} -gt 0 ]; then
  echo "-- 1b. the same with CUDA graphs (torch.compile reduce-overhead per trunk block) --"
  "$PY" benchmarks/generation_speed.py "${GEN_COMPILED[@]}" || echo "compiled generation failed (eager rows above stand)"
fi
echo "-- 2. training throughput and MFU (target >= 40% in bf16) --"
"$PY" benchmarks/train_throughput.py "${TRAIN[@]}"
echo "-- 3. FSDP2 smoke run of the GPU recipe's path --"
"$PY" benchmarks/fsdp_smoke.py "${FSDP[@]}"
echo "== gpu_suite done in $(( $(date +%s) - START )) s =="
