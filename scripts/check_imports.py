"""The import-layer check: no circles, stages never import the layers above them, no privates.

Builds the module import graph of the production packages (``pipeline``, ``rules``,
``schemas``, ``flows``) from the source with :mod:`ast` alone — nothing is imported, so
the check is fast and sees what lazy imports hide: an import inside a function (kept
there so ``billing --help`` stays fast) counts exactly like one at the top of the
module. It fails (exit 1, one line per problem naming the edge) on

1. a cycle between modules;
2. a layer violation: a stage (``pipeline.calc``, ``pipeline.allocate``,
   ``pipeline.penalties``, ``pipeline.ingest``, ``schemas``, ``rules``) importing
   ``flows``, ``pipeline.cli``, ``pipeline.app``, ``pipeline.demo`` or ``pipeline.render``;
   ``pipeline.render`` importing ``flows``, ``pipeline.cli``, ``pipeline.app`` or
   ``pipeline.demo``; ``flows`` importing ``pipeline.cli``, ``pipeline.app`` or
   ``pipeline.demo``; ``pipeline.close`` importing any of them (the receipts are a
   step the flow hands to ``seal``);
3. ``from X import _name`` where ``X`` is another production module (a private name
   is that module's own business; tests may still import privates).

Run as ``python scripts/check_imports.py [ROOT]`` (``scripts/check.sh`` does).
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("pipeline", "rules", "schemas", "flows")

#: Layer rules: modules under a prefix on the left must not import a module under any
#: prefix on the right.
STAGES = ("pipeline.calc", "pipeline.allocate", "pipeline.penalties", "pipeline.ingest",
          "schemas", "rules")
ABOVE_RENDER = ("flows", "pipeline.cli", "pipeline.app", "pipeline.demo")
FORBIDDEN: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (STAGES, (*ABOVE_RENDER, "pipeline.render")),
    (("pipeline.render",), ABOVE_RENDER),
    # The application layer runs the flows; the flows import nothing above themselves.
    (("flows",), ("pipeline.cli", "pipeline.app", "pipeline.demo")),
    # The close takes the receipts as a callable (`seal(..., render)`), never imports them.
    (("pipeline.close",), (*ABOVE_RENDER, "pipeline.render")),
)

#: Cycles accepted on purpose, as frozensets of module names, each with the reason.
#: Empty: every circle found so far has been removed, not excused.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    names: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (строка {self.line})"


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def discover(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Module name -> source file for every ``.py`` file of the packages under ``root``."""
    modules: dict[str, Path] = {}
    for package in packages:
        base = root / package
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module ``name`` is or lies in (``pipeline.close.seal`` -> ``pipeline.close``)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def edges(modules: dict[str, Path]) -> list[Edge]:
    """Every import between known modules, at module level or inside functions alike."""
    found: list[Edge] = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _owner(alias.name, modules)
                    if target and target != module:
                        found.append(Edge(module, target, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, is_package, node)
                for alias in node.names:
                    # `from pipeline import progress` imports the module pipeline.progress
                    target = _owner(f"{base}.{alias.name}", modules) or _owner(base, modules)
                    if target and target != module:
                        names = () if target == f"{base}.{alias.name}" else (alias.name,)
                        found.append(Edge(module, target, node.lineno, names))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def _path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One concrete circle through the component: its first module back to itself."""
    start = min(component)
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return [*reversed(chain), start]
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return [start]


def check(root: Path, packages: Iterable[str] = PACKAGES) -> list[str]:
    """The problems of the tree under ``root``, one Russian line each (empty: all is well)."""
    modules = discover(root, packages)
    found = edges(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    first: dict[tuple[str, str], Edge] = {}
    for edge in found:
        graph[edge.source].add(edge.target)
        first.setdefault((edge.source, edge.target), edge)
    problems: list[str] = []
    for component in _cycles(graph):
        if frozenset(component) in ALLOWED_CYCLES:
            continue
        chain = _path(graph, set(component))
        steps = ", ".join(str(first[a, b]) for a, b in itertools.pairwise(chain))
        members = ", ".join(component)
        problems.append(f"круг импортов: {' -> '.join(chain)}: {steps}; в круге модули: {members}")
    for edge in found:
        for sources, targets in FORBIDDEN:
            if any(under(edge.source, s) for s in sources) and any(
                    under(edge.target, t) for t in targets):
                problems.append(f"нарушение слоёв: {edge}")
        for name in edge.names:
            if name.startswith("_") and not name.startswith("__"):
                problems.append(f"импорт чужого закрытого имени {name}: {edge}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    problems = check(root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"проверка импортов: проблем — {len(problems)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
