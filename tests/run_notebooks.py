#!/usr/bin/env python3
"""Execute the eoslab notebooks headless with the evcxr (Rust) Jupyter kernel.

For every selected notebook, in sorted order and strictly one at a time, this script:
  * starts a fresh `rust` kernel (evcxr_jupyter) whose working directory is the notebook's own
    directory, runs all code cells, and stops at the first cell that errors;
  * writes the executed notebook (`<name>.ipynb`) and, unless --no-html, an HTML rendering
    (`<name>.html`) into the output directory -- also when the notebook failed, so the error is
    visible in the report;
  * collects the notebook's claim lines: every output line containing `CLAIM <name>: HOLDS` or
    `CLAIM <name>: FAILS` (stream output, rich text output and error tracebacks), verbatim;
  * marks the notebook failed when a cell errors, when a claim line says FAILS (unless the
    notebook records that outcome for its scale in its markdown: "Recorded outcome:
    `CLAIM <name>: FAILS`", and then also when it says HOLDS), when a claim the notebook
    declares in its text (`CLAIM <name>:`) printed no verdict, or when a cell panicked (evcxr
    reports `?` errors and panics as successful cells: see `science_failure`).
After each notebook it (re)writes `index.html` (unless --no-html) and `summary.json` in the output
directory: one row per notebook with its claim lines, status (ok / error) and run time.
It exits with status 1 if any notebook errored, 2 on a usage/setup problem, 0 otherwise.

Working directory and `:dep eoslab = { path = "../crate" }`
-----------------------------------------------------------
evcxr 0.22 turns a relative `path` in `:dep` into an absolute one with `Path::canonicalize`, i.e.
against the *kernel process's* current directory (evcxr/src/crate_config.rs,
`make_paths_absolute`), not against the notebook file (a kernel never learns the notebook's path).
Under Jupyter Lab/Notebook the server starts kernels in the notebook's directory, so
`../crate` works there. nbclient does the same only when told: it starts the kernel with
`cwd = resources["metadata"]["path"]`. This driver always passes the notebook's directory there,
so notebooks can keep `:dep eoslab = { path = "../crate" }` and relative data paths such as
`../data/digits.csv.gz`, whatever directory the driver itself runs from. (Started from another
directory the same `:dep` fails with "No such file or directory".) evcxr also reads an
`evcxr.toml` from that working directory if one exists: do not put one in notebooks/.

Environment given to the kernel (each only if not already set, so it can be overridden):
  CARGO_PROFILE_DEV_DEBUG_ASSERTIONS=false, CARGO_PROFILE_DEV_OVERFLOW_CHECKS=false,
  CARGO_PROFILE_DEV_OPT_LEVEL=3
      evcxr compiles notebook code (and every dependency) in the `dev` profile of a generated
      Cargo.toml with opt-level 2, debug assertions and overflow checks; cargo's environment
      configuration overrides the manifest profile (DESIGN.md section 3: 2.6x faster compute).
  EVCXR_TMPDIR=<repo>/target/evcxr  (--evcxr-tmpdir)
      evcxr's build directory (generated crate + cargo target dir). Persistent, so only the first
      kernel on a machine compiles the dependencies. Only one kernel may use it at a time: this
      driver runs notebooks sequentially and holds an exclusive lock `<EVCXR_TMPDIR>.lock` for the
      whole run, so two concurrent drivers (e.g. `make test` and `make reports`) queue up.
      Keep it under <repo>/target: cargo reads <repo>/.cargo/config.toml only below <repo>, and
      the workspace's `exclude = ["target"]` is what stops cargo from taking evcxr's generated
      crate for an undeclared workspace member (evcxr then dies at start with "Failed to load
      the project"). Never delete it while a kernel runs.
  EVCXR_CONFIG_DIR=<repo>/tests/evcxr  (--evcxr-config-dir)
      where evcxr looks for init.evcxr / prelude.rs (default ~/.config/evcxr), so a user's own
      evcxr start-up files cannot change what the notebooks compute. tests/evcxr/init.evcxr runs
      `:cache 8192` in every kernel before the first cell.
  EOSLAB_RUNS=<output dir>/runs
      where the notebooks keep their runs (eoslab::report::runs_root). Notebooks share runs of
      identical configuration through it (a content-keyed, resumable directory per
      configuration), so a run several notebooks read is computed once. It is emptied at the
      start of every invocation (unless --keep-runs), so results of older code are never reused.
  XDG_CACHE_HOME=<repo>/.cache
      `:cache` keeps a copy of every compiled registry crate in `$XDG_CACHE_HOME/evcxr` (LRU,
      8 GiB cap), keyed by the exact rustc command line. On top of the persistent EVCXR_TMPDIR it
      changes nothing while that directory is intact (cargo's own fingerprints already make the
      dependencies fresh), but it turns a lost build dir (`cargo clean` wipes target/, including
      target/evcxr) into a restore of a few minutes instead of a full cold rebuild (measured on
      2 busy cores: `:dep eoslab` 3.3 min from the cache vs ~25 min cold; build scripts, their C
      code and eoslab itself still run/compile). It lives outside target/ for that reason (1.1 GB
      for eoslab's dependencies). Enabling it does not invalidate an existing build dir.
The Jupyter paths (JUPYTER_PATH etc.) are set by the Makefile; this script prints which `rust`
kernelspec it resolved.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as _dt
import fcntl
import fnmatch
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# `CLAIM <name>: HOLDS` / `CLAIM <name>: FAILS`, anywhere in a line; the whole line is reported.
CLAIM_RE = re.compile(r"CLAIM [^\s:]+: (?:HOLDS|FAILS)\b")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

KERNEL_ENV_DEFAULTS = {
    "CARGO_PROFILE_DEV_DEBUG_ASSERTIONS": "false",
    "CARGO_PROFILE_DEV_OVERFLOW_CHECKS": "false",
    "CARGO_PROFILE_DEV_OPT_LEVEL": "3",
    # The shipped-data experiments multiply matrices of a few hundred rows: candle's multi-threaded
    # GEMM spends more on synchronisation than it saves there (measured 4.5x slower GD steps with 2
    # threads on a loaded 2-core machine than with 1).
    "RAYON_NUM_THREADS": "1",
    # Show every column of the per-run and per-group tables (polars elides beyond 8 by default).
    "POLARS_FMT_MAX_COLS": "24",
    "POLARS_TABLE_WIDTH": "220",
    # Independent runs (seeds, configurations) side by side, one core each: results do not
    # depend on it (eoslab::parallel), run time nearly halves on two cores.
    "EOSLAB_JOBS": str(os.cpu_count() or 1),
}


def log(msg: str) -> None:
    stamp = _dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", flush=True)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Execute Rust (evcxr) notebooks headless; write executed notebooks, HTML "
        "reports and an index with claim lines, status and run time.",
    )
    p.add_argument("--notebooks-dir", type=Path, default=REPO_ROOT / "notebooks",
                   help="directory holding the *.ipynb notebooks (default: notebooks/)")
    p.add_argument("--output-dir", type=Path, required=True,
                   help="where executed notebooks, HTML, index.html and summary.json go")
    p.add_argument("notebooks", nargs="*",
                   help="notebooks to run: file names, stems or glob patterns relative to "
                   "--notebooks-dir (default: all *.ipynb, sorted)")
    p.add_argument("--no-html", action="store_true",
                   help="only executed .ipynb + summary.json (no HTML export, no index.html)")
    p.add_argument("--kernel", default="rust", help="kernelspec name (default: rust)")
    p.add_argument("--cell-timeout", type=int,
                   default=int(os.environ.get("NB_CELL_TIMEOUT", "10800")),
                   help="seconds a single cell may run (default 10800 = 3 h, env NB_CELL_TIMEOUT;"
                   " at least 1800: the first cell compiles all dependencies)")
    p.add_argument("--startup-timeout", type=int,
                   default=int(os.environ.get("NB_STARTUP_TIMEOUT", "900")),
                   help="seconds for the kernel to start (default 900, env NB_STARTUP_TIMEOUT)")
    p.add_argument("--evcxr-tmpdir", type=Path,
                   default=Path(os.environ.get("EVCXR_TMPDIR", REPO_ROOT / "target" / "evcxr")),
                   help="persistent evcxr build directory (default: $EVCXR_TMPDIR or "
                   "target/evcxr)")
    p.add_argument("--evcxr-config-dir", type=Path,
                   default=Path(os.environ.get("EVCXR_CONFIG_DIR", REPO_ROOT / "tests" / "evcxr")),
                   help="evcxr config dir with init.evcxr (default: $EVCXR_CONFIG_DIR or "
                   "tests/evcxr)")
    p.add_argument("--keep-runs", action="store_true",
                   help="keep <output-dir>/runs from an earlier invocation (its runs are reused "
                   "where the configuration is identical; only safe if the code is unchanged)")
    args = p.parse_args(argv)
    if args.cell_timeout < 1800:
        p.error("--cell-timeout must be at least 1800 s (the first cell compiles dependencies)")
    return args


def select_notebooks(nb_dir: Path, patterns: list[str]) -> list[Path]:
    all_nbs = sorted(
        q for q in nb_dir.glob("*.ipynb") if q.is_file() and not q.name.startswith(".")
    )
    if not patterns:
        return all_nbs
    chosen: list[Path] = []
    for pat in patterns:
        name = Path(pat).name
        hits = [q for q in all_nbs
                if fnmatch.fnmatch(q.name, name) or fnmatch.fnmatch(q.stem, name)]
        if not hits:
            raise SystemExit(f"error: no notebook in {nb_dir} matches {pat!r}")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen)


def setup_environment(args: argparse.Namespace) -> dict[str, str]:
    """Set the kernel's environment (inherited by the kernel process); return what was used."""
    for k, v in KERNEL_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    tmpdir = args.evcxr_tmpdir.resolve()
    tmpdir.mkdir(parents=True, exist_ok=True)
    if not tmpdir.is_relative_to(REPO_ROOT / "target"):
        log(f"warning: EVCXR_TMPDIR={tmpdir} is not under {REPO_ROOT / 'target'}: "
            ".cargo/config.toml does not apply there (see the module docstring)")
    os.environ["EVCXR_TMPDIR"] = str(tmpdir)
    os.environ["EVCXR_CONFIG_DIR"] = str(args.evcxr_config_dir.resolve())
    runs = args.output_dir.resolve() / "runs"
    if runs.exists() and not args.keep_runs:
        shutil.rmtree(runs)
    runs.mkdir(parents=True, exist_ok=True)
    os.environ["EOSLAB_RUNS"] = str(runs)
    os.environ.setdefault("XDG_CACHE_HOME", str(REPO_ROOT / ".cache"))
    # jupyter_core warns about its platformdirs migration on every start otherwise.
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    keys = [*KERNEL_ENV_DEFAULTS, "EVCXR_TMPDIR", "EVCXR_CONFIG_DIR", "EOSLAB_RUNS",
            "XDG_CACHE_HOME",
            "JUPYTER_PATH", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR"]
    return {k: os.environ[k] for k in keys if k in os.environ}


def check_kernel(name: str) -> str:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise SystemExit(
            f"error: no Jupyter kernel named {name!r} (JUPYTER_PATH="
            f"{os.environ.get('JUPYTER_PATH', '')!r}); run `make setup` to install evcxr_jupyter "
            "and register it") from None
    exe = spec.argv[0] if spec.argv else "?"
    if not Path(exe).exists():
        raise SystemExit(f"error: kernel {name!r} points at {exe}, which does not exist; "
                         "run `make setup` again to re-register it")
    return f"{spec.resource_dir} -> {exe}"


def tool_versions() -> dict[str, str]:
    out = {}
    for key, cmd in (("rustc", ["rustc", "--version"]),
                     ("git commit", ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])):
        try:
            out[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                                      check=True).stdout.strip()
        except Exception:  # noqa: BLE001 - informational only
            pass
    try:
        listed = subprocess.run(["cargo", "install", "--list"], capture_output=True, text=True,
                                timeout=30).stdout
        m = re.search(r"^evcxr_jupyter (v\S+)", listed, re.M)
        if m:
            out["evcxr_jupyter"] = m.group(1).rstrip(":")
    except Exception:  # noqa: BLE001
        pass
    return out


def output_texts(nb) -> list[str]:
    """All text a reader sees in the outputs, in order."""
    texts: list[str] = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                texts.append(out.get("text", ""))
            elif kind in ("execute_result", "display_data"):
                data = out.get("data", {})
                if "text/plain" in data:
                    t = data["text/plain"]
                    texts.append("".join(t) if isinstance(t, list) else t)
            elif kind == "error":
                texts.append(f"{out.get('ename', '')}: {out.get('evalue', '')}")
                texts.extend(out.get("traceback", []))
    return texts


def claim_lines(nb) -> list[str]:
    seen: list[str] = []
    for text in output_texts(nb):
        for line in ANSI_RE.sub("", text).splitlines():
            line = line.strip()
            if CLAIM_RE.search(line) and line not in seen:
                seen.append(line)
    return seen


def declared_claims(nb) -> list[str]:
    """Claim names the notebook says it prints (`CLAIM <name>:` anywhere in its source)."""
    names: list[str] = []
    for cell in nb.cells:
        for m in re.finditer(r"CLAIM ([^\s:`]+):", cell.get("source", "")):
            if m.group(1) not in names:
                names.append(m.group(1))
    return names


# A notebook records the outcome it reproduces when a claim does not hold at its scale, visibly in
# its markdown: "Recorded outcome: `CLAIM <name>: FAILS`". Without a record, HOLDS is expected.
RECORDED_RE = re.compile(r"Recorded outcome[^`\n]*`CLAIM ([^\s:`]+): (HOLDS|FAILS)`")


def recorded_outcomes(nb) -> dict[str, str]:
    """Claim name -> the outcome the notebook records for its own scale (see RECORDED_RE)."""
    out: dict[str, str] = {}
    for cell in nb.cells:
        if cell.get("cell_type") == "markdown":
            for m in RECORDED_RE.finditer(cell.get("source", "")):
                out[m.group(1)] = m.group(2)
    return out


def science_failure(nb) -> str | None:
    """Failures the kernel does not report as cell errors.

    evcxr 0.22 answers `ok` for a cell whose code returns an error through `?` (it prints the
    error on stderr) and even for a cell that panics (it restarts its child process). So a
    notebook fails here when a claim line says FAILS, when a declared claim printed no HOLDS
    line (e.g. an earlier `?` stopped the run), or when any cell panicked.
    """
    problems: list[str] = []
    lines = claim_lines(nb)
    recorded = recorded_outcomes(nb)
    for line in lines:
        m = CLAIM_RE.search(line)
        name, outcome = m.group(0)[len("CLAIM "):].split(": ")
        expected = recorded.get(name, "HOLDS")
        if outcome != expected:
            problems.append(
                f"claim {name}: printed {outcome}, recorded outcome {expected}: {line}"
                if name in recorded else f"claim does not hold: {line}")
    for name in declared_claims(nb):
        if not any(f"CLAIM {name}: " in line for line in lines):
            problems.append(f"claim {name}: no verdict printed (a cell returned an error? see its stderr)")
    for k, cell in enumerate(c for c in nb.cells if c.get("cell_type") == "code"):
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            if out.get("output_type") == "stream" and " panicked at " in text:
                problems.append(f"cell {k + 1} panicked: {ANSI_RE.sub('', text).strip()[:300]}")
                break
    return "\n".join(problems) or None


def error_summary(nb, exc: BaseException, code_cells: list[int]) -> str:
    """What went wrong, for the log and the index: the failing cell and its error outputs."""
    failing = None
    for idx in code_cells:
        if any(o.get("output_type") == "error" for o in nb.cells[idx].get("outputs", [])):
            failing = idx
            break
    if failing is None:  # kernel died, timeout, export problem, ...
        text = ANSI_RE.sub("", str(exc)).strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:  # e.g. a bare AssertionError inside nbclient: say where
            tb = traceback.extract_tb(exc.__traceback__)
            lines = [f"(no message) at {f.filename}:{f.lineno} in {f.name}" for f in tb[-2:]]
        return f"{type(exc).__name__}: " + "\n".join(lines[-12:])
    cell = nb.cells[failing]
    src = cell.source.strip().splitlines()
    head = src[0] if src else ""
    parts = [f"cell {code_cells.index(failing) + 1} ({head[:80]}):"]
    for out in cell.outputs:
        if out.get("output_type") == "error":
            msg = ANSI_RE.sub("", f"{out.get('ename', '')}: {out.get('evalue', '')}").strip()
            msg_lines = msg.splitlines()
            if len(msg_lines) > 12:  # e.g. "Compilation failed, but no parsable errors..."
                msg = "\n".join(msg_lines[:3] + ["..."] + msg_lines[-6:])
            if msg not in parts:
                parts.append(msg)
    if head.startswith(":dep"):
        # When a dependency fails to build, evcxr may report only some of its compiler messages,
        # sometimes a single harmless warning instead of the error.
        parts.append("hint: evcxr may show only part of a failing :dep's compiler messages "
                     "(sometimes just a warning); `cargo build -p <crate>` shows all of them")
    return "\n".join(parts[:8])


def run_one(path: Path, out_dir: Path, args: argparse.Namespace) -> dict:
    import nbformat
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # Start from a clean slate: a notebook saved with outputs must not show stale outputs
    # below a cell that fails this time.
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    n_code = len(code_cells)
    cell_times: dict[int, float] = {}
    started: dict[int, float] = {}

    def on_execute(cell, cell_index, **_):
        started[cell_index] = time.monotonic()

    def on_executed(cell, cell_index, execute_reply=None, **_):
        dt = time.monotonic() - started.get(cell_index, time.monotonic())
        cell_times[cell_index] = dt
        k = code_cells.index(cell_index) + 1 if cell_index in code_cells else cell_index
        status = (execute_reply or {}).get("content", {}).get("status", "?")
        log(f"    cell {k}/{n_code} {status} in {fmt_seconds(dt)}")

    client = NotebookClient(
        nb,
        kernel_name=args.kernel,
        timeout=args.cell_timeout,
        startup_timeout=args.startup_timeout,
        # see module docstring: the kernel's cwd is the notebook's directory
        resources={"metadata": {"path": str(path.parent.resolve())}},
        allow_errors=False,
        record_timing=True,
        iopub_timeout=30,
        shutdown_kernel="graceful",
        on_cell_execute=on_execute,
        on_cell_executed=on_executed,
    )
    t0 = time.monotonic()
    error = None
    try:
        client.execute()
    except BaseException as exc:  # noqa: BLE001 - any failure becomes a failed report
        if isinstance(exc, KeyboardInterrupt):
            raise
        error = error_summary(nb, exc, code_cells)
        unfinished = [i for i in started if i not in cell_times]
        if unfinished and isinstance(exc, (AssertionError, RuntimeError)):
            # nbclient 0.11 reports a kernel that dies mid-cell (killed, out of memory) as a bare
            # AssertionError from its liveness poll, or as DeadKernelError (a RuntimeError).
            i = unfinished[-1]
            head = (nb.cells[i].source.strip().splitlines() or [""])[0][:80]
            error = (f"kernel died during cell {code_cells.index(i) + 1} ({head}) after "
                     f"{fmt_seconds(time.monotonic() - started[i])}\n{error}")
    finally:
        # A kernel that failed to start leaves nbclient's atexit hook behind (noisy
        # AssertionError at exit) and possibly a process that still holds EVCXR_TMPDIR.
        atexit.unregister(client._cleanup_kernel)
        km = client.km
        if km is not None and km.has_kernel:
            with contextlib.suppress(Exception):
                run_sync(km.shutdown_kernel)(now=True)
    elapsed = time.monotonic() - t0
    error = error or science_failure(nb)

    out_dir.mkdir(parents=True, exist_ok=True)
    out_nb = out_dir / path.name
    nb.metadata.setdefault("eoslab_run", {})
    nb.metadata["eoslab_run"] = {
        "status": "error" if error else "ok",
        "seconds": round(elapsed, 1),
        "finished": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    nbformat.write(nb, out_nb)
    out_html = None
    if not args.no_html:
        out_html = out_dir / (path.stem + ".html")
        try:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter(template_name="lab").from_notebook_node(
                nb, resources={"metadata": {"name": path.stem}})
            out_html.write_text(body, encoding="utf-8")
        except Exception as exc:  # noqa: BLE001
            log(f"    HTML export failed: {exc}")
            error = error or f"HTML export failed: {exc}"
            out_html = None
    first = cell_times.get(code_cells[0]) if code_cells else None
    return {
        "notebook": path.name,
        "status": "error" if error else "ok",
        "seconds": round(elapsed, 1),
        "first_cell_seconds": round(first, 1) if first is not None else None,
        "cells_executed": len(cell_times),
        "code_cells": n_code,
        "claims": claim_lines(nb),
        "error": error,
        "ipynb": out_nb.name,
        "html": out_html.name if out_html else None,
        "finished": nb.metadata["eoslab_run"]["finished"],
    }


INDEX_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 70em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 0.45em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 0.9em; }
pre { margin: 0; white-space: pre-wrap; }
.ok { color: #176b2c; font-weight: 600; }
.error { color: #b00020; font-weight: 600; }
.holds { color: #176b2c; }
.fails { color: #b00020; }
.none { color: #777; font-style: italic; }
.meta { color: #555; font-size: 0.9em; }
"""


def write_index(out_dir: Path, rows: list[dict], meta: dict, no_html: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"generated": meta["generated"], "environment": meta["env"],
               "tools": meta["tools"], "notebooks": rows}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if no_html:
        return
    e = html.escape
    trs = []
    for r in rows:
        name = Path(r["notebook"]).stem
        link = (f'<a href="{e(r["html"])}">{e(name)}</a>' if r.get("html") else e(name))
        link += f' <span class="meta">(<a href="{e(r["ipynb"])}">ipynb</a>)</span>'
        if r["claims"]:
            claims = "<br>".join(
                f'<code class="{"holds" if "HOLDS" in c else "fails"}">{e(c)}</code>'
                for c in r["claims"])
        else:
            claims = '<span class="none">no claim</span>'
        status = f'<span class="{r["status"]}">{r["status"]}</span>'
        if r.get("error"):
            status += f'<pre class="meta">{e(r["error"])}</pre>'
        cells = f'{r["cells_executed"]}/{r["code_cells"]} cells'
        if r.get("finished"):
            cells += f', {e(r["finished"][:16].replace("T", " "))}'
        trs.append(f"<tr><td>{link}</td><td>{claims}</td><td>{status}</td>"
                   f'<td>{fmt_seconds(r["seconds"])}<br><span class="meta">{cells}</span></td></tr>')
    env_items = "".join(f"<li><code>{e(k)}={e(v)}</code></li>" for k, v in meta["env"].items()
                        if not k.startswith("JUPYTER"))
    tools = ", ".join(f"{e(k)}: <code>{e(v)}</code>" for k, v in meta["tools"].items())
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>eoslab notebook reports</title><style>{INDEX_CSS}</style></head>
<body>
<h1>eoslab notebook reports</h1>
<p class="meta">Updated {e(meta["generated"])}. {tools}</p>
<table>
<thead><tr><th>Notebook</th><th>Claim</th><th>Status</th><th>Run time</th></tr></thead>
<tbody>
{chr(10).join(trs)}
</tbody></table>
<p class="meta">Each notebook ran headless in a fresh <code>rust</code> (evcxr) kernel, in sorted
order, with:</p><ul class="meta">{env_items}</ul>
</body></html>
"""
    (out_dir / "index.html").write_text(doc, encoding="utf-8")


def earlier_rows(out_dir: Path, nb_dir: Path, selected: list[Path]) -> list[dict]:
    """Rows of an earlier run into the same output dir for notebooks not run this time (e.g.
    `make reports NOTEBOOKS=01*`), so the index keeps listing every notebook that has a report.
    Dropped: notebooks run now, notebooks no longer in nb_dir, reports no longer on disk."""
    try:
        old = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))["notebooks"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    now = {p.name for p in selected}
    keep = []
    for r in old:
        name = r.get("notebook", "")
        if (isinstance(r, dict) and name not in now and (nb_dir / name).is_file()
                and (out_dir / r.get("ipynb", name)).is_file()):
            keep.append(r)
    return keep


@contextlib.contextmanager
def tmpdir_lock(tmpdir: Path):
    lock_path = tmpdir.with_name(tmpdir.name + ".lock")
    with open(lock_path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for {lock_path}: another notebook run uses {tmpdir}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    nb_dir = args.notebooks_dir.resolve()
    out_dir = args.output_dir.resolve()
    if not nb_dir.is_dir():
        print(f"error: {nb_dir} is not a directory", file=sys.stderr)
        return 2
    notebooks = select_notebooks(nb_dir, args.notebooks)
    if not notebooks:
        print(f"error: no notebooks in {nb_dir}", file=sys.stderr)
        return 2
    env = setup_environment(args)
    kernel = check_kernel(args.kernel)
    meta = {
        "generated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "env": env,
        "tools": tool_versions(),
    }
    log(f"kernel {args.kernel}: {kernel}")
    for k, v in env.items():
        log(f"  {k}={v}")
    log(f"{len(notebooks)} notebook(s) from {nb_dir} -> {out_dir}")

    rows: list[dict] = []
    kept = earlier_rows(out_dir, nb_dir, notebooks)
    if kept:
        log(f"index keeps earlier results of {', '.join(r['notebook'] for r in kept)}")
    t_all = time.monotonic()
    with tmpdir_lock(Path(env["EVCXR_TMPDIR"])):
        for i, path in enumerate(notebooks, 1):
            log(f"[{i}/{len(notebooks)}] START {path.name}")
            row = run_one(path, out_dir, args)
            rows.append(row)
            write_index(out_dir, sorted(kept + rows, key=lambda r: r["notebook"]), meta,
                        args.no_html)
            log(f"[{i}/{len(notebooks)}] END   {path.name}: {row['status']} in "
                f"{fmt_seconds(row['seconds'])} (first cell {fmt_seconds(row['first_cell_seconds'])})")
            for c in row["claims"] or ["no claim"]:
                log(f"    {c}")
            if row["error"]:
                for line in row["error"].splitlines():
                    log(f"    | {line}")
    failed = [r["notebook"] for r in rows if r["status"] != "ok"]
    log(f"done in {fmt_seconds(time.monotonic() - t_all)}: {len(rows) - len(failed)} ok, "
        f"{len(failed)} error" + (f" ({', '.join(failed)})" if failed else ""))
    if not args.no_html:
        log(f"index: {out_dir / 'index.html'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
