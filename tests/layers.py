#!/usr/bin/env python3
"""Check eoslab's module layering: no module imports from a layer above its own, and no import
circle among the top-level modules of crate/src. Prints every offending `use` with file:line
and exits 1 if there is one.  Run from anywhere: python3 tests/layers.py

An import is a `crate::<module>` path in code (comments and `#[cfg(test)]` sections excluded:
tests may reach across layers). A new top-level module must be given a layer below."""
import collections, os, re, sys

LAYERS = [
    ("utilities", "error rng parallel stats atomic verdict plot overrides"),
    ("numerics", "kernels model analytic autodiff ops loss objective hessian data groups"),
    ("processes", "train sharpness monitor checkpoint metrics config"),
    ("resume", "resume"),
    ("experiments", "eos branch"),
    ("claims and report", "experiment report"),
    ("interface", "cli"),
]
LAYER = {m: i for i, (_, ms) in enumerate(LAYERS) for m in ms.split()}
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crate", "src")


def imports():
    """(source module, target module) -> [file:line] for every cross-module path in code."""
    found = collections.defaultdict(list)
    for d, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs") or f == "tests.rs":
                continue
            path = os.path.join(d, f)
            rel = os.path.relpath(path, ROOT)
            top = rel.split(os.sep)[0].removesuffix(".rs")
            if top in ("lib", "main"):
                continue
            text = open(path, encoding="utf-8").read()
            cut = text.find("#[cfg(test)]\nmod tests")
            text = text if cut < 0 else text[:cut]
            for n, line in enumerate(text.split("\n"), 1):
                code = line.split("//")[0]
                for m in re.finditer(r"crate::([a-z_]+)", code):
                    if m.group(1) != top:
                        found[(top, m.group(1))].append(f"{rel}:{n}")
    return found


def circles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    found = imports()
    edges = collections.defaultdict(set)
    bad = []
    for (a, b), where in sorted(found.items()):
        edges[a].add(b)
        edges[b]
        for m in (a, b):
            if m not in LAYER:
                bad.append(f"module `{m}` has no layer in tests/layers.py")
        if a in LAYER and b in LAYER and LAYER[b] > LAYER[a]:
            bad.append(f"{a} ({LAYERS[LAYER[a]][0]}) imports {b} ({LAYERS[LAYER[b]][0]}): "
                       + ", ".join(where))
    for comp in circles(edges):
        bad.append("import circle: " + " <-> ".join(comp))
    for line in sorted(set(bad)):
        print(line)
    mods = sorted({m for e in found for m in e})
    print(f"{len(mods)} modules, {sum(len(v) for v in edges.values())} imports between them: "
          + ("no upward import, no circle" if not bad else f"{len(set(bad))} problems"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
