#!/usr/bin/env bash
# GPU check for eoslab's `cuda` build, at paper scale, in a few minutes on one GPU.
#
#   tests/gpu_check.sh              GPU (cuda:0) against the CPU, identical inputs, f32
#   tests/gpu_check.sh --cpu-only   no GPU: CPU f32 against CPU f64 (checks the comparison and
#                                   its tolerances; runs anywhere)
#
# What it does:
#   1. finds the binary: $EOSLAB_BIN, else target/cuda/release/eoslab, else
#      target/cuda/eoslab-cuda.xz (`make check-cuda` writes it: the stripped binary, xz, 11 MB,
#      small enough to carry to a GPU machine that has no Rust), else builds it with cargo
#      (CUDA_COMPUTE_CAP, default 90); --cpu-only uses/builds target/release/eoslab.
#   2. puts the CUDA 13 libraries the binary links (libcublas.so.13, libcublasLt.so.13,
#      libcurand.so.10, libnvrtc.so.13, libcudart.so.13) on LD_LIBRARY_PATH, from python3's
#      nvidia wheels (nvidia/cu13/lib), .venv-cuda, or /usr/local/cuda; names any still missing.
#   3. data: $CIFAR_DIR (CIFAR-10 binary batches) or synthetic CIFAR-format data of the paper's
#      shape ($PER_CLASS images per class, default 5000: n = 10,000 after the 1-vs-9 selection).
#   4. `eoslab train --preset paper-cifar10` (MLP 3072-512-512-2, η = 0.01, groups injected) for
#      $STEPS steps (default 40) with λ_max every $EVERY steps (default 10), once on each side.
#   5. compares per-step losses and λ_max; prints a summary and exits 1 on a mismatch.
#   6. if python3 has a CUDA build of PyTorch: prints its GD step, gradient-graph and HVP times
#      on the same GPU and shapes (tests/gpu_torch_step.py), for context.
#
# Tolerances (relative): loss 1e-4 (LOSS_RTOL), λ_max 1e-3 (LAMBDA_RTOL). Why: f32 GEMMs on
# different hardware sum in different orders (~1e-6 relative per product); before the edge of
# stability GD does not amplify such differences, and λ_max comes from a Lanczos solve stopped at
# relative residual 1e-4, so two correct runs agree to ~1e-5 in loss and ~1e-4 in λ_max. The
# --cpu-only mode measures the f32-vs-f64 gap under the same tolerances (README "Paper scale on a
# GPU" gives the measured numbers). Wrong kernels, a CPU fallback or a different data pipeline
# differ by orders of magnitude more.
#
# Environment: EOSLAB_BIN, CIFAR_DIR, PER_CLASS, STEPS, EVERY, DEVICE (default cuda:0), DTYPE
# (default f32), LOSS_RTOL, LAMBDA_RTOL, WORK (scratch dir, default a new temp dir), OUT (where
# JSON and the summary are copied, if set).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CPU_ONLY=0
[ "${1:-}" = "--cpu-only" ] && CPU_ONLY=1
STEPS="${STEPS:-40}"; EVERY="${EVERY:-10}"; PER_CLASS="${PER_CLASS:-5000}"
DEVICE="${DEVICE:-cuda:0}"; DTYPE="${DTYPE:-f32}"
LOSS_RTOL="${LOSS_RTOL:-1e-4}"; LAMBDA_RTOL="${LAMBDA_RTOL:-1e-3}"
WORK="${WORK:-$(mktemp -d -t eoslab-gpu-check.XXXXXX)}"
mkdir -p "$WORK"
t_start=$(date +%s)
say() { echo "== gpu_check: $*"; }

# 1. The binary: given, built here before, carried compressed (make check-cuda writes
#    target/cuda/eoslab-cuda.xz, 11 MB, to carry to a GPU machine), or built now.
if [ -n "${EOSLAB_BIN:-}" ]; then
  BIN="$EOSLAB_BIN"
elif [ "$CPU_ONLY" = 1 ]; then
  BIN="$ROOT/target/release/eoslab"
  if command -v cargo >/dev/null; then
    say "building the CPU binary (cargo build --release)"
    cargo build --release --bin eoslab
  fi
else
  BIN="$ROOT/target/cuda/release/eoslab"
  XZ="$ROOT/target/cuda/eoslab-cuda.xz"
  if [ ! -x "$BIN" ] && [ -f "$XZ" ]; then
    BIN="$WORK/eoslab-cuda"
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$XZ" "$BIN"
    chmod +x "$BIN"
    say "binary: unpacked $XZ"
  elif [ ! -x "$BIN" ] && command -v cargo >/dev/null; then
    if ! command -v nvcc >/dev/null; then eval "$("$ROOT/tests/cuda_toolkit.sh")"; fi
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
    say "building the cuda binary (nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), sm_${CUDA_COMPUTE_CAP})"
    cargo build --release --features cuda --target-dir target/cuda --bin eoslab
  fi
fi
[ -x "$BIN" ] || { say "no binary at $BIN (run \`make check-cuda\` and carry target/cuda/eoslab-cuda.xz, or set EOSLAB_BIN)"; exit 2; }

# 2. CUDA libraries at run time.
if [ "$CPU_ONLY" = 0 ]; then
  dirs=()
  if command -v python3 >/dev/null; then
    while IFS= read -r d; do [ -n "$d" ] && dirs+=("$d"); done < <(python3 - <<'PY' 2>/dev/null || true
import glob, os, site, sys
roots = list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path
seen = set()
for r in roots:
    for d in glob.glob(os.path.join(r, "nvidia", "cu13", "lib")) + glob.glob(os.path.join(r, "nvidia", "*", "lib")):
        if os.path.isdir(d) and d not in seen:
            seen.add(d); print(d)
PY
)
  fi
  for d in "$ROOT"/.venv-cuda/lib/python3*/site-packages/nvidia/cu13/lib /usr/local/cuda/lib64; do
    [ -d "$d" ] && dirs+=("$d")
  done
  for d in "${dirs[@]}"; do LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; done
  export LD_LIBRARY_PATH
  missing="$(ldd "$BIN" | grep 'not found' || true)"
  if [ -n "$missing" ]; then
    say "the binary's libraries are missing:"; echo "$missing"; exit 2
  fi
  ldd "$BIN" | grep -E 'libcu|libnvrtc' | sed 's/^/   /'
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/   GPU: /'
fi

say "binary: $BIN ($("$BIN" --version))"

# 3. Data.
if [ -n "${CIFAR_DIR:-}" ]; then
  DATA="$CIFAR_DIR"; say "data: CIFAR-10 from $DATA"
else
  DATA="$WORK/cifar"
  if [ ! -f "$DATA/test_batch.bin" ]; then
    "$BIN" synthetic-cifar "$DATA" --train-per-class "$PER_CLASS" --test-per-class 100
  fi
  say "data: synthetic CIFAR-format, $PER_CLASS per class ($DATA)"
fi

# 4. The two runs.
train() { # device dtype json
  local t0; t0=$(date +%s)
  "$BIN" train --preset paper-cifar10 --data-dir "$DATA" --steps "$STEPS" \
    --sharpness-every "$EVERY" --device "$1" --dtype "$2" --json "$3" >/dev/null
  say "$1 $2: $(( $(date +%s) - t0 )) s"
}
if [ "$CPU_ONLY" = 1 ]; then
  REF=("cpu" "f64"); CAND=("cpu" "$DTYPE")
else
  REF=("cpu" "$DTYPE"); CAND=("$DEVICE" "$DTYPE")
fi
GPU_MEM="$WORK/gpu-mem.txt"
if [ "$CPU_ONLY" = 0 ] && command -v nvidia-smi >/dev/null; then
  ( while sleep 0.5; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) >"$GPU_MEM" 2>/dev/null &
  SMI=$!
fi
train "${CAND[0]}" "${CAND[1]}" "$WORK/candidate.json"
[ -n "${SMI:-}" ] && kill "$SMI" 2>/dev/null || true
train "${REF[0]}" "${REF[1]}" "$WORK/reference.json"

# 5. Compare.
set +e
python3 - "$WORK/reference.json" "$WORK/candidate.json" "$LOSS_RTOL" "$LAMBDA_RTOL" "$GPU_MEM" <<'PY' | tee "$WORK/summary.txt"
import json, os, sys
ref, cand = (json.load(open(p)) for p in sys.argv[1:3])
loss_tol, lam_tol = float(sys.argv[3]), float(sys.argv[4])
ok = True
def rel(a, b): return abs(a - b) / max(abs(b), 1e-300)
print(f"reference {ref['device']} {ref['dtype']}  vs  candidate {cand['device']} {cand['dtype']}")
print(f"n_train {ref['n_train']}, inputs {ref['inputs']}, params {ref['params']}, steps {ref['steps']}")
if ref["dataset_fingerprint"] != cand["dataset_fingerprint"]:
    print("MISMATCH: different training sets"); ok = False
hl = [rel(c["loss"], r["loss"]) for r, c in zip(ref["history"], cand["history"])]
if len(ref["history"]) != len(cand["history"]) or not hl:
    print("MISMATCH: different numbers of steps"); ok = False
worst = max(range(len(hl)), key=lambda i: hl[i]) if hl else 0
print(f"loss: max rel diff {max(hl, default=float('nan')):.2e} at step {worst} (tolerance {loss_tol:.0e}); "
      f"final {ref['history'][-1]['loss']:.6f} vs {cand['history'][-1]['loss']:.6f}")
ok &= bool(hl) and max(hl) <= loss_tol
print(f"{'step':>6} {'λ_max ref':>12} {'λ_max cand':>12} {'rel diff':>9} {'hvps':>9}")
lam = []
for r, c in zip(ref["sharpness"], cand["sharpness"]):
    d = rel(c["lambda_max"], r["lambda_max"]); lam.append(d)
    print(f"{r['step']:>6} {r['lambda_max']:>12.5f} {c['lambda_max']:>12.5f} {d:>9.1e} {r['hvps']:>4}/{c['hvps']:<4}")
print(f"λ_max: max rel diff {max(lam, default=float('nan')):.2e} (tolerance {lam_tol:.0e})")
ok &= bool(lam) and len(ref["sharpness"]) == len(cand["sharpness"]) and max(lam) <= lam_tol
for x in (ref, cand):
    print(f"{x['device']:>7} {x['dtype']}: {x['median_step_seconds']*1e3:9.2f} ms/step, "
          f"{x['median_sharpness_seconds']:8.3f} s/λ_max, data+groups {x['load_seconds']:.1f} s, "
          f"peak host RSS {x['peak_rss_mib']:.0f} MiB")
mem = sys.argv[5]
if os.path.exists(mem):
    v = [int(l) for l in open(mem) if l.strip().isdigit()]
    if v: print(f"GPU memory used (nvidia-smi, whole device): peak {max(v)} MiB")
print("GPU CHECK: " + ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
PY
rc=${PIPESTATUS[0]}
# For context (nothing asserted): PyTorch's GD step, gradient graph and HVP on the same GPU and
# shapes, when python3 has a CUDA build of torch.
if [ "$CPU_ONLY" = 0 ] && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  python3 "$ROOT/tests/gpu_torch_step.py" --device "$DEVICE" --dtype "$DTYPE" | tee -a "$WORK/summary.txt"
fi
set -e
if [ -n "${OUT:-}" ]; then cp "$WORK"/{reference.json,candidate.json,summary.txt} "$OUT"/ 2>/dev/null || true; fi
say "done in $(( $(date +%s) - t_start )) s (rc $rc)"
exit "$rc"
