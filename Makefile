# eoslab: Rust tests, headless notebook execution and HTML reports.
#
#   make reports        execute notebooks/*.ipynb -> reports/ (executed .ipynb, .html, index.html)
#   make test           cargo test --workspace, then execute every notebook (fails on any error)
#   make test-slurm     eoslab sweep on a real single-node Slurm (installs slurm + munge from
#                       Debian's packages when missing; root; about 2 min; see README)
#   make setup          .venv/ with the pinned nbconvert stack + evcxr_jupyter kernel `rust`
#   make clean-reports  remove reports/
#   make clean-notebook-cache   remove the evcxr build dir and :cache (next run compiles cold)
#   make check-cuda     build the `cuda` binary (CUDA 13.0 from PyPI, no GPU needed; see below)
#   make bench          eoslab vs PyTorch, every primitive (a benchmark, not a test; see below)
#   make fuzz           fuzz every file reader FUZZ_SECONDS each (nightly + cargo-fuzz; see below)
#
# Knobs (make VAR=... or environment):
#   NOTEBOOKS        subset to run: names, stems or globs in notebooks/ (default: all, sorted)
#   REPORTS_DIR      output of `make reports` (default: reports)
#   NB_TEST_DIR      output of the notebook part of `make test` (default: target/notebook-test)
#   PYTHON           interpreter used to create .venv (default: python3, >= 3.10)
#   NB_CELL_TIMEOUT  seconds per cell (default 10800, minimum 1800)
#   EVCXR_TMPDIR     evcxr build dir shared by all kernels (default: target/evcxr)
#   CARGO_PROFILE_DEV_{OPT_LEVEL,DEBUG_ASSERTIONS,OVERFLOW_CHECKS}
#                    compile settings of notebook code; tests/run_notebooks.py defaults them
#                    to 3 / false / false (DESIGN.md section 3)
#   CARGO_TEST_FLAGS extra flags for cargo test (e.g. --locked)
#   NB_ARGS          extra flags for tests/run_notebooks.py, e.g. --keep-runs (reuse the runs of
#                    the previous invocation in <output dir>/runs; only with unchanged code)
#   EOSLAB_JOBS      runs side by side in the notebooks (default: the number of cores)
# Nothing outside the project is written except the cargo-installed evcxr_jupyter binary
# (~/.cargo/bin), cargo's own registry cache, and (make test-slurm) Debian's slurm and munge
# packages and a temporary directory under /tmp.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
PYTHON ?= python3
VENV := $(ROOT)/.venv
VPY := $(VENV)/bin/python
REQUIREMENTS := $(ROOT)/requirements-notebooks.txt
VENV_STAMP := $(VENV)/.requirements-installed

EVCXR_VERSION := 0.22.0
CARGO_BIN_DIR := $(or $(CARGO_INSTALL_ROOT),$(CARGO_HOME),$(HOME)/.cargo)/bin
EVCXR_BIN := $(CARGO_BIN_DIR)/evcxr_jupyter

NOTEBOOKS ?=
REPORTS_DIR ?= $(ROOT)/reports
NB_TEST_DIR ?= $(ROOT)/target/notebook-test
CARGO_TEST_FLAGS ?=

# Project-local Jupyter: the `rust` kernelspec lives in .venv/share/jupyter/kernels/rust and
# user-level Jupyter config/kernels (~/.jupyter, ~/.local/share/jupyter) are not consulted.
# evcxr_jupyter --install writes to $JUPYTER_PATH/kernels/rust (a single directory).
export JUPYTER_PATH := $(VENV)/share/jupyter
export JUPYTER_DATA_DIR := $(VENV)/share/jupyter
export JUPYTER_CONFIG_DIR := $(VENV)/etc/jupyter
export JUPYTER_RUNTIME_DIR := $(ROOT)/target/jupyter-runtime
export JUPYTER_PLATFORM_DIRS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

NB_ARGS ?=
RUN_NOTEBOOKS := $(VPY) $(ROOT)/tests/run_notebooks.py --notebooks-dir $(ROOT)/notebooks $(NB_ARGS)

# Phase timing: $(T0) ... ; $(call T1,label)   (label without commas)
T0 := t0=$$(date +%s)
T1 = echo "== $(1): $$(( $$(date +%s) - t0 )) s"

.PHONY: help setup venv kernel reports test test-rust test-notebooks test-slurm clean-reports \
        clean-notebook-cache clean-venv

help:
	@sed -n '2,/^$$/p' $(lastword $(MAKEFILE_LIST)) | sed 's/^# \{0,1\}//'

setup: venv kernel

venv: $(VENV_STAMP)

$(VENV_STAMP): $(REQUIREMENTS)
	@echo "== venv: $(VENV)"
	@$(T0); \
	  $(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is needed for .venv (set PYTHON=...)")'; \
	  if [ ! -x "$(VPY)" ]; then \
	    $(PYTHON) -m venv "$(VENV)" || { rm -rf "$(VENV)"; $(PYTHON) -m venv --without-pip "$(VENV)"; }; \
	  fi; \
	  if "$(VPY)" -m pip --version >/dev/null 2>&1; then pip=("$(VPY)" -m pip); \
	  else pip=($(PYTHON) -m pip --python "$(VPY)"); fi; \
	  "$${pip[@]}" install --quiet --no-input -r "$(REQUIREMENTS)"; \
	  touch "$@"; \
	  $(call T1,venv + pip install)

# Install evcxr_jupyter only if `cargo install --list` does not show this version, then register
# the kernel for this machine (kernel.json holds the absolute path of the binary).
kernel: venv
	@$(T0); \
	  installed=$$(cargo install --list); \
	  if grep -q '^evcxr_jupyter v$(EVCXR_VERSION):' <<<"$$installed"; then \
	    echo "evcxr_jupyter v$(EVCXR_VERSION) already installed"; \
	  else \
	    echo "installing evcxr_jupyter $(EVCXR_VERSION) with cargo (about 10 min on 2 cores)"; \
	    cargo install evcxr_jupyter --version $(EVCXR_VERSION) --locked; \
	  fi; \
	  $(call T1,evcxr_jupyter $(EVCXR_VERSION))
	@test -x "$(EVCXR_BIN)" || { echo "error: $(EVCXR_BIN) not found (CARGO_HOME/CARGO_INSTALL_ROOT?)"; exit 1; }
	@"$(EVCXR_BIN)" --install >/dev/null
	@"$(VPY)" -c 'from jupyter_client.kernelspec import KernelSpecManager as M; \
	  s = M().get_kernel_spec("rust"); print("kernel rust:", s.resource_dir, "->", s.argv[0])'

reports: setup
	@$(T0); rc=0; \
	  $(RUN_NOTEBOOKS) --output-dir "$(REPORTS_DIR)" $(NOTEBOOKS) || rc=$$?; \
	  $(call T1,notebooks to $(REPORTS_DIR)); exit $$rc

test:
	@$(MAKE) --no-print-directory test-rust
	@$(MAKE) --no-print-directory test-notebooks

test-rust:
	@$(T0); cargo test --workspace $(CARGO_TEST_FLAGS); $(call T1,cargo test --workspace)

test-slurm:
	@$(T0); bash "$(ROOT)/tests/slurm.sh"; $(call T1,test-slurm)

test-notebooks: setup
	@$(T0); rc=0; \
	  $(RUN_NOTEBOOKS) --output-dir "$(NB_TEST_DIR)" $(NOTEBOOKS) || rc=$$?; \
	  $(call T1,notebooks to $(NB_TEST_DIR)); exit $$rc

clean-reports:
	rm -rf "$(REPORTS_DIR)"

clean-notebook-cache:
	rm -rf "$(ROOT)/target/evcxr" "$(ROOT)/target/evcxr.lock" "$(ROOT)/.cache/evcxr" "$(NB_TEST_DIR)"

clean-venv:
	rm -rf "$(VENV)"

# ---- CUDA build check (not part of `make test`) -------------------------------------------------
#   make check-cuda     CUDA 13.0 toolkit from NVIDIA's PyPI wheels into .venv-cuda (first time,
#                       ~1.2 GB), then `cargo build --release --features cuda --target-dir
#                       target/cuda`: compiles candle's CUDA kernels with nvcc and links the
#                       binary target/cuda/release/eoslab, and target/cuda/eoslab-cuda.xz
#                       (stripped, compressed: to carry to a GPU machine). No GPU needed.
#   make gpu-check      tests/gpu_check.sh: that binary on cuda:0 against the CPU (needs a GPU)
# Knobs: CUDA_COMPUTE_CAP (default 90 = H100/H200; 80 = A100, 89 = L4/RTX 40xx).
CUDA_COMPUTE_CAP ?= 90

.PHONY: check-cuda gpu-check

check-cuda:
	@$(T0); eval "$$(CUDA_COMPUTE_CAP=$(CUDA_COMPUTE_CAP) $(ROOT)/tests/cuda_toolkit.sh)"; \
	  $(call T1,CUDA toolkit in .venv-cuda); \
	  echo "nvcc $$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), kernels for sm_$$CUDA_COMPUTE_CAP"; \
	  t0=$$(date +%s); \
	  cargo build --release --features cuda --target-dir "$(ROOT)/target/cuda" --bin eoslab; \
	  $(call T1,cargo build --release --features cuda); \
	  strip -o "$(ROOT)/target/cuda/eoslab-cuda" "$(ROOT)/target/cuda/release/eoslab"; \
	  xz -f -T0 -6 "$(ROOT)/target/cuda/eoslab-cuda"; \
	  ls -l "$(ROOT)/target/cuda/release/eoslab" "$(ROOT)/target/cuda/eoslab-cuda.xz"; \
	  du -sh "$(ROOT)/.venv-cuda" "$(ROOT)/target/cuda"

gpu-check:
	@bash "$(ROOT)/tests/gpu_check.sh"

# ---- Benchmark against PyTorch (a benchmark, not a test: not in `make test` or CI) ------------
#   make bench          first the GEMM calibration (bench/gemm: the exact products of a step
#                       and an HVP at paper and CIFAR-subset size with every candidate library:
#                       the gemm crate's AVX2 and AVX-512 kernels, faer, OpenBLAS and BLIS where
#                       Debian's libopenblas0-pthread / libblis4-openmp are installed, MKL from
#                       PyPI; against torch.matmul), then eoslab's bench (crate/examples/bench.rs,
#                       release) against the PyTorch reference bench/reference.py doing the
#                       identical work, alternating; prints medians, spread and eoslab / PyTorch
#                       per primitive, size and dtype, and writes target/bench/results-*.json.
#                       The bench is built with the `blas` feature: a third worker times eoslab
#                       with its products by the venv's MKL (column "products by libmkl_rt").
#                       First time: .venv-bench with bench/requirements.txt (~3 GB of wheels)
#                       and the problems in target/bench/data (~270 MB). Full run ≈ 40 min on
#                       2 cores; quiet machine!
#   BENCH_ARGS          e.g. --quick (fewer repetitions), --threads 1, --sizes cifar,digits,
#                       --calibrate none (skip the calibration) or --calibrate 2,
#                       --dtypes f32, --prims gd_step,hvp, --derivatives autodiff, --batch 1
BENCH_VENV := $(ROOT)/.venv-bench
BENCH_STAMP := $(BENCH_VENV)/.requirements-installed
BENCH_ARGS ?=

.PHONY: bench bench-venv

bench-venv: $(BENCH_STAMP)

$(BENCH_STAMP): $(ROOT)/bench/requirements.txt
	@test -x "$(BENCH_VENV)/bin/python" || $(PYTHON) -m venv "$(BENCH_VENV)"
	@"$(BENCH_VENV)/bin/python" -m pip install --quiet --no-input -r "$(ROOT)/bench/requirements.txt"
	@touch "$@"

GEMM_CAL := cargo build --release --quiet --manifest-path $(ROOT)/bench/gemm/Cargo.toml --target-dir $(ROOT)/target/bench/gemm-build

bench: bench-venv
	@cargo build --release -p eoslab --example bench --features blas
	@$(GEMM_CAL)/avx2 --features faer
	@$(GEMM_CAL)/avx512 --features avx512
	@"$(BENCH_VENV)/bin/python" "$(ROOT)/bench/run.py" $(BENCH_ARGS)

# ---- Fuzzing (not part of `make test`; needs the nightly toolchain) ----------------------------
#   make fuzz           every target of fuzz/ (cargo-fuzz, libFuzzer; one per file reader) for
#                       FUZZ_SECONDS each, installing cargo-fuzz if missing. New inputs are added
#                       to fuzz/corpus/<target>/ (minimise with `cargo +nightly fuzz cmin <target>`
#                       before committing); a crash stops the run and leaves its input in
#                       fuzz/artifacts/<target>/: fix the reader, then keep the input under a
#                       telling name in fuzz/regressions/<target>/, which crate/tests/
#                       fuzz_regressions.rs replays in `make test` (on stable, without libFuzzer).
#   FUZZ_SECONDS        seconds per target (default 60)
#   FUZZ_TARGETS        targets to run (default: all, from `cargo fuzz list`)
#   FUZZ_ARGS           extra libFuzzer flags (e.g. -jobs=2 -workers=2)
# Limits: -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10: a reader that allocates what a
# header claims, or loops, fails like a crash.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_ARGS ?=
CARGO_FUZZ := cargo +nightly fuzz

.PHONY: fuzz

fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@cd "$(ROOT)" && targets="$(FUZZ_TARGETS)"; \
	  if [ -z "$$targets" ]; then targets=$$($(CARGO_FUZZ) list); fi; \
	  for t in $$targets; do \
	    $(T0); mkdir -p "fuzz/corpus/$$t"; \
	    extra=""; if [ -d "fuzz/regressions/$$t" ]; then extra="fuzz/regressions/$$t"; fi; \
	    $(CARGO_FUZZ) run "$$t" "fuzz/corpus/$$t" $$extra -- \
	      -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 \
	      -print_final_stats=1 $(FUZZ_ARGS); \
	    $(call T1,fuzz $$t); \
	  done
