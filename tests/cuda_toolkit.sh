#!/usr/bin/env bash
# The CUDA toolkit for eoslab's `cuda` build, from NVIDIA's PyPI wheels, in a project-local venv.
#
#   tests/cuda_toolkit.sh            install (first time only) and print `export` lines:
#                                    eval "$(tests/cuda_toolkit.sh)"
#
# Why CUDA 13.0 and not 12.x: the CUDA 12 wheel `nvidia-cuda-nvcc-cu12` (12.9.86 and earlier)
# ships only ptxas, libnvvm and headers; it has no `nvcc` driver, no `cicc`, no `fatbinary`, so
# candle-kernels' build (cudaforge, which runs nvcc) cannot use it. The CUDA 13 wheels
# (`nvidia-cuda-nvcc` 13.x + `nvidia-nvvm` + `nvidia-cuda-crt`) are a complete nvcc. 13.0 matches
# the driver (580, CUDA 13.0) and the cu13 libraries of the GPU machines we test on; a newer nvcc
# emits PTX that an older driver refuses, so keep CUDA_WHEELS at the GPU driver's version or below.
#
# Knobs (environment):
#   CUDA_VENV          where the venv goes (default: <repo>/.venv-cuda, gitignored)
#   PYTHON             interpreter for the venv (default: python3)
#   CUDA_COMPUTE_CAP   GPU architecture to compile kernels for (default 90: H100/H200; there is
#                      no GPU here to ask). 80 = A100, 89 = L4/RTX 40xx, 120 = RTX 50xx.
#
# What it provides beyond the wheels: unversioned `lib*.so` links for the linker (the wheels
# ship only `libcublas.so.13` etc.) and a stub `libcuda.so` (SONAME libcuda.so.1) generated from
# cuda.h, like the toolkit's own lib/stubs: the driver library exists only on a machine with a
# GPU, and is what the binary loads there at run time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CUDA_VENV:-$ROOT/.venv-cuda}"
PYTHON="${PYTHON:-python3}"
WHEELS=(
  "nvidia-cuda-nvcc==13.0.88" "nvidia-nvvm==13.0.88" "nvidia-cuda-crt==13.0.88"
  "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cccl==13.0.85" "nvidia-cuda-nvrtc==13.0.88"
  "nvidia-cublas==13.0.2.14" "nvidia-curand==10.4.5.25"
)
STAMP="$VENV/.cuda-toolkit-installed"
want="${WHEELS[*]}"

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "cuda_toolkit: installing the CUDA 13.0 toolkit wheels into $VENV (~1.2 GB)" >&2
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" >&2
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet --no-input \
    "${WHEELS[@]}" >&2
  home="$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
  [ -x "$home/bin/nvcc" ] || { echo "cuda_toolkit: no nvcc in $home/bin" >&2; exit 1; }
  # Unversioned names for the linker.
  for lib in "$home"/lib/lib{cublas,cublasLt,curand,nvrtc,cudart}.so.*; do
    case "$lib" in *.alt.*|*builtins*) continue ;; esac
    base="$(basename "$lib")"; ln -sf "$base" "$home/lib/${base%%.so.*}.so"
  done
  # Stub driver library: every cu* function that cuda.h declares (after its _v2 renames).
  mkdir -p "$home/lib/stubs"
  gcc -E -P -I"$home/include" -x c "$home/include/cuda.h" \
    | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u \
    | sed 's/.*/int &(void) { return 999; }/' > "$home/lib/stubs/libcuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$home/lib/stubs/libcuda.so" \
    "$home/lib/stubs/libcuda_stub.c"
  echo "$want" > "$STAMP"
fi
home="$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
cat <<ENV
export CUDA_HOME="$home" CUDA_ROOT="$home" CUDA_PATH="$home" CUDA_TOOLKIT_ROOT_DIR="$home"
export PATH="$home/bin:\$PATH"
export CPATH="$home/include\${CPATH:+:\$CPATH}"
export LIBRARY_PATH="$home/lib:$home/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
ENV
