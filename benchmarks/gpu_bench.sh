#!/usr/bin/env bash
# GPU figures for the README, in one go on a CUDA host, from the repository root (about 8 minutes at most):
#   OUT=/some/dir bash benchmarks/gpu_bench.sh
# 1. a fresh venv: `pip install -r requirements.lock -e .` (the lock's torch is the CPU build, so when the host's
#    python3 already has a CUDA torch the venv reuses it through --system-site-packages and skips the lock's torch);
# 2. benchmarks/gpu_bench.py: whole SciFact ingestion docs/s on CUDA fp16 (Chroma writes included) and raw fp16
#    encode texts/s. Everything lands in $OUT (gpu_bench.json, install.log, run.log); a failed install says so.
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
VENV=${VENV:-/tmp/rag-gpu-venv}
DATA=${DATA:-../shared/datasets}
log() { echo "[gpu_bench $(date +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || log "nvidia-smi failed (no driver?)"
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  log "host python3 has a CUDA torch: venv with --system-site-packages, lock installed without torch"
  python3 -m venv --system-site-packages "$VENV"
  grep -v -E '^(torch|nvidia-|triton)' requirements.lock > "$OUT/requirements.notorch.txt"
  REQ="$OUT/requirements.notorch.txt"
else
  log "host python3 has no CUDA torch: plain venv from the lock"
  python3 -m venv "$VENV"
  REQ=requirements.lock
fi
if ! timeout 300 "$VENV/bin/pip" install -q -r "$REQ" > "$OUT/install.log" 2>&1 \
   || ! timeout 60 "$VENV/bin/pip" install -q --no-deps -e . >> "$OUT/install.log" 2>&1; then
  log "INSTALL FAILED (no package registry reachable?): see install.log; last lines:"
  tail -5 "$OUT/install.log" | tee -a "$OUT/summary.txt"
  exit 2
fi
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  log "torch in the venv cannot see CUDA ($("$VENV/bin/python" -c 'import torch; print(torch.__version__)')): a CUDA build of torch==2.13.0 is needed"
fi
log "running benchmarks/gpu_bench.py"
timeout 360 "$VENV/bin/python" benchmarks/gpu_bench.py --data "$DATA" --out "$OUT" 2>&1 | grep -v '^Loading weights' | tee "$OUT/run.log"
rc=${PIPESTATUS[0]}
log "gpu_bench.py exit status $rc"
exit "$rc"
