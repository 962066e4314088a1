"""The engine's structure at a glance: import cycles, function-local imports,
long modules and long functions in ``src/unet_core``.

    python tools/import_graph.py            # report, exit 1 when a rule is broken
    python tools/import_graph.py --dot g.dot  # the module graph for graphviz

Rules (the house's): no import cycle between the engine's modules; imports at
module level, except optional dependencies (listed in ``OPTIONAL``); no module
over ``MAX_MODULE_LINES`` lines; no function over ``MAX_FUNCTION_LINES`` lines
(``EXEMPT_FUNCTIONS`` names the ones allowed, with the reason).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "unet_core"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
# Imported inside functions on purpose: extras that are not installed everywhere
# (setup.cfg's extras_require), or modules that exist on one platform only.
OPTIONAL = {
    "openvino",
    "onnx",
    "onnxruntime",
    "distributed",
    "dask.distributed",
    "bioimageio",
    "psutil",
    "matplotlib",
    "msvcrt",
    "fcntl",
    "resource",
    "winreg",
}
EXEMPT_FUNCTIONS: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    """What a ``from ... import ...`` may refer to: the module it names, then
    each imported name as a sub-module (``graph`` keeps the ones that exist)."""
    if node.level:
        base = mod.split(".")
        base = base if is_pkg else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    return [stem] + [f"{stem}.{alias.name}" for alias in node.names]


class Module:
    def __init__(self, path: Path):
        self.path = path
        self.name = module_name(path)
        self.is_pkg = path.name == "__init__.py"
        self.text = path.read_text()
        self.tree = ast.parse(self.text)
        self.lines = len(self.text.splitlines())
        self.top: set[tuple[str, ...]] = set()
        self.local: list[tuple[int, tuple[str, ...]]] = []
        self._walk(self.tree, depth=0)

    def _names(self, node) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        return resolve(self.name, self.is_pkg, node)

    def _walk(self, node, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = self._names(child)
                if depth == 0:
                    self.top.add(tuple(names))
                else:
                    self.local.append((child.lineno, tuple(names)))
            inner = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            self._walk(child, depth + (1 if inner else 0))

    def long_functions(self):
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    yield node.name, node.lineno, n


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def load() -> dict[str, Module]:
    mods = [Module(p) for p in sorted((ROOT / PACKAGE).rglob("*.py"))]
    return {m.name: m for m in mods}


def graph(mods: dict[str, Module], local: bool = True) -> dict[str, set[str]]:
    """Module -> engine modules it imports at module level.

    Importing a sub-package's ``__init__`` for a name defined there counts as
    an edge to the package; ``from . import x`` counts as an edge to ``x``.
    """
    edges = {}
    for name, mod in mods.items():
        deps = set()
        groups = list(mod.top)
        if local:  # a function-local import hides a cycle; it still is one
            groups += [names for _, names in mod.local]
        for names in groups:
            subs = [t for t in names[1:] if t in mods]
            deps.update(subs or [t for t in names[:1] if t in mods])
        deps.discard(name)
        edges[name] = deps
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def report(mods: dict[str, Module]) -> tuple[list[str], dict]:
    problems = []
    edges = graph(mods)
    found = cycles(edges)
    for comp in found:
        problems.append("import cycle: " + " <-> ".join(comp))
    optional_used = set()
    for mod in mods.values():
        for line, names in mod.local:
            target = names[0]
            optional = [p for p in OPTIONAL if target == p or target.startswith(p + ".")]
            if optional:
                optional_used.update(optional)
                continue
            problems.append(f"function-local import: {mod.path.relative_to(ROOT)}:{line} {target}")
        if mod.lines > MAX_MODULE_LINES:
            problems.append(
                f"module over {MAX_MODULE_LINES} lines: {mod.path.relative_to(ROOT)} ({mod.lines})"
            )
        for fname, line, n in mod.long_functions():
            if f"{mod.name}.{fname}" in EXEMPT_FUNCTIONS:
                continue
            problems.append(
                f"function over {MAX_FUNCTION_LINES} lines: {mod.path.relative_to(ROOT)}:{line} {fname} ({n})"
            )
    summary = {
        "modules": len(mods),
        "edges": sum(map(len, edges.values())),
        "cycles": len(found),
        "optional_local_imports": sorted(optional_used),
    }
    return problems, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", type=Path, help="write the module graph here (graphviz)")
    args = parser.parse_args(argv)
    mods = load()
    problems, summary = report(mods)
    if args.dot:
        edges = graph(mods)
        body = "".join(f'  "{a}" -> "{b}";\n' for a in sorted(edges) for b in sorted(edges[a]))
        args.dot.write_text("digraph unet_core {\n" + body + "}\n")
    for line in problems:
        print(line)
    print(
        f"{summary['modules']} modules, {summary['edges']} imports between them, "
        f"{summary['cycles']} cycles; function-local imports of optional "
        f"dependencies: {', '.join(summary['optional_local_imports']) or 'none'}"
    )
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
