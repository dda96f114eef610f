#!/usr/bin/env python3
"""Prints Coffer's crate graph and core's module graph, and fails if the structure regressed.

    python3 docs/structure.py          # print both graphs, then check
    python3 docs/structure.py --check  # check only (what .ci/run does)

The rules it checks (docs/ARCHITECTURE.md explains why):
  * the api and worker crates do not depend on sea-orm or entity (they talk to core's
    services, never to tables);
  * core's modules form no cycle: arrows run one way, from the types up to the services;
  * no source file outside tests is over 400 lines unless its first lines say why.

A module of core is a file or a directory under core/src, at the depth listed in NODE_DEPTH
(`services/shares.rs` is `services::shares`; `crypto/*.rs` are one module, `crypto`). Edges
come from `use` trees and from inline `crate::…`/`super::…` paths outside `#[cfg(test)]`
modules. The crate root (lib.rs: `Core`, which ties the parts together, and the re-exports) is
a node of its own; an arrow into the root through a re-export is an arrow into the module that
defines the item.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core" / "src"
# Directories whose files are modules of their own; any other directory is one module.
NODE_DEPTH = {"services": 2, "jobs": 2}
FORBIDDEN = {"coffer-api": {"sea-orm", "entity"}, "coffer-worker": {"sea-orm", "entity"}}
MAX_LINES = 400
# Files over the limit that are still to be split, at their size when they were listed: a
# ratchet (each may shrink, none may grow). Issue 16 emptied it; a file that must be longer
# says why in its first lines instead.
PENDING_SPLIT: dict[str, int] = {}


def is_test_file(path: Path) -> bool:
    """A module of unit tests (`tests.rs`, `*_tests.rs`): tests may reach anywhere."""
    return path.stem == "tests" or path.stem.endswith("_tests")


def module_of_file(path: Path) -> list[str]:
    parts = list(path.relative_to(CORE).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts == ["lib"]:
        return []
    return parts


def node(parts: list[str]) -> str:
    if not parts:
        return "lib"
    depth = NODE_DEPTH.get(parts[0], 1)
    return "::".join(parts[:depth])


def strip_tests(text: str) -> str:
    """Drops `#[cfg(test)] mod …` blocks (tests may reach anywhere) and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def use_paths(tree: str, prefix: str = "") -> list[str]:
    """Expands a use tree (`crate::{a::b, c::{d, e}}`) into full paths."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        return [prefix + re.sub(r"\s+as\s+\w+$", "", tree)] if tree else []
    head, body = tree[:brace], tree[brace + 1 : tree.rindex("}")]
    items, depth, start = [], 0, 0
    for k, c in enumerate(body):
        depth += {"{": 1, "}": -1}.get(c, 0)
        if c == "," and depth == 0:
            items.append(body[start:k])
            start = k + 1
    items.append(body[start:])
    paths = []
    for item in items:
        paths += use_paths(item, prefix + head)
    return paths


def root_reexports() -> dict[str, list[str]]:
    text = strip_tests((CORE / "lib.rs").read_text())
    names = {}
    for m in re.finditer(r"pub use\s+([^;]+);", text):
        for path in use_paths(m.group(1)):
            parts = path.split("::")
            names[parts[-1]] = parts[:-1]
    return names


def known_modules() -> set[tuple[str, ...]]:
    mods = set()
    for file in CORE.rglob("*.rs"):
        parts = module_of_file(file)
        for k in range(1, len(parts) + 1):
            mods.add(tuple(parts[:k]))
    return mods


def resolve(path: str, here: list[str], reexports, modules) -> list[str] | None:
    """The module a path names: its longest prefix that is a module of core."""
    parts = [p for p in path.split("::") if p]
    if not parts:
        return None
    if parts[0] == "crate":
        parts = parts[1:]
    elif parts[0] in ("super", "self"):
        base = here[:]
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                base = base[:-1]
            parts = parts[1:]
        parts = base + parts
    elif tuple(here + parts[:1]) in modules:
        parts = here + parts  # a child module named without `self::`
    elif (parts[0],) in modules:
        pass  # a top-level module brought in by `use crate::{…, name}`
    else:
        return None
    if len(parts) == 1 and parts[0] in reexports:
        return reexports[parts[0]]
    k = len(parts)
    while k and tuple(parts[:k]) not in modules:
        k -= 1
    return parts[:k]


def core_graph() -> dict[str, set[str]]:
    reexports = root_reexports()
    modules = known_modules()
    graph: dict[str, set[str]] = {}
    for file in sorted(CORE.rglob("*.rs")):
        if is_test_file(file):
            continue
        here = module_of_file(file)
        src = node(here)
        text = strip_tests(file.read_text())
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            paths += use_paths(m.group(1))
        paths += re.findall(r"(?<![\w:])(\w+(?:::\w+)+)", text)
        targets = graph.setdefault(src, set())
        for path in paths:
            parts = resolve(path, here, reexports, modules)
            if parts is None:
                continue
            dst = node(parts)
            if dst != src:
                targets.add(dst)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def crate_graph() -> dict[str, set[str]]:
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    return {
        p["name"]: {d["name"] for d in p["dependencies"] if d["kind"] is None}
        for p in meta["packages"]
    }


def long_files() -> tuple[list[str], list[str]]:
    """Files over the limit without a reason: (failures, files still pending their split)."""
    failures, pending = [], []
    for crate in ("core", "api", "worker", "entity", "migration", "src"):
        base = ROOT / crate
        for file in sorted(base.rglob("*.rs")) if base.exists() else []:
            if "tests" in file.parts or is_test_file(file):
                continue
            lines = file.read_text().splitlines()
            head = "\n".join(lines[:15]).lower()
            name = str(file.relative_to(ROOT))
            if len(lines) <= MAX_LINES or "longer than" in head:
                continue
            allowed = PENDING_SPLIT.get(name)
            if allowed is not None and len(lines) <= allowed:
                pending.append(f"{name}: {len(lines)} lines")
            elif allowed is not None:
                failures.append(f"{name}: {len(lines)} lines, grown past {allowed} while waiting to be split")
            else:
                failures.append(f"{name}: {len(lines)} lines (over {MAX_LINES}, with no 'longer than' reason at its top)")
    return failures, pending


def main() -> int:
    check_only = "--check" in sys.argv
    crates = crate_graph()
    graph = core_graph()
    if not check_only:
        ours = set(crates)
        print("crates (workspace dependencies only):")
        for name in sorted(crates):
            print(f"  {name} -> {', '.join(sorted(crates[name] & ours)) or '(none)'}")
        print("\ncore's modules:")
        for name in sorted(graph):
            print(f"  {name} -> {', '.join(sorted(graph[name])) or '(none)'}")
        print()
    failures = []
    # The detector itself, on a graph known to hold a cycle: a check that finds nothing
    # because it looks at nothing must not pass.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert len(graph) > 20, f"only {len(graph)} modules found under {CORE}"
    for crate, banned in FORBIDDEN.items():
        leaked = crates.get(crate, set()) & banned
        if leaked:
            failures.append(f"{crate} depends on {', '.join(sorted(leaked))}")
    for component in cycles(graph):
        failures.append("core's modules form a cycle: " + " <-> ".join(component))
    too_long, pending = long_files()
    failures += too_long
    for name in pending:
        print(f"structure: still to split: {name}")
    for failure in failures:
        print(f"structure: {failure}", file=sys.stderr)
    if not failures:
        print("structure: ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
