"""The package layout keeps its promises: imports flow one way (clop <- theory, simulations, training), no
module imports another module's private names, every name is imported from the module that defines it, and
there are no import circles (imports inside functions included: a lazy import must not hide a loop).

Read from the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGES = ("clop", "theory", "simulations", "training")
ALLOWED = {  # which of our packages each package may import
    "clop": {"clop"},
    "theory": {"clop", "theory"},
    "simulations": {"clop", "theory", "simulations"},
    "training": {"clop", "theory", "training"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return name in MODULES and MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name of a ``from ... import`` in ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import of ours in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if target.split(".")[0] in PACKAGES:
                out += [(target, a.name, node.lineno) for a in node.names]
    return out


def _defined(module: str) -> set[str]:
    """Names bound at the top level of ``module`` by a def, class or assignment (not by an import)."""
    names: set[str] = set()
    for node in ast.parse(MODULES[module].read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.FunctionDef, ast.ClassDef)):
                    names.add(sub.name)
                elif isinstance(sub, ast.Assign):
                    names.update(n.id for t in sub.targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _edges() -> dict[str, set[str]]:
    """module -> the modules of ours it imports (``from pkg import submodule`` counts as the submodule)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for target, name, _ in _imports(m):
            sub = f"{target}.{name}" if name else None
            dest = sub if sub in MODULES else target
            if dest in MODULES and dest != m:
                graph[m].add(dest)
    return graph


def test_packages_import_only_downwards():
    bad = [f"{m}:{line} imports {t}" for m in MODULES for t, _, line in _imports(m)
           if t.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert bad == []


def test_no_private_names_cross_modules():
    bad = [f"{m}:{line} imports {t}.{n}" for m in MODULES for t, n, line in _imports(m)
           if n is not None and n.startswith("_") and t != m and f"{t}.{n}" not in MODULES]
    assert bad == []


def test_every_name_comes_from_its_defining_module():
    bad = []
    for m in MODULES:
        for t, n, line in _imports(m):
            if n is None or n == "*" or f"{t}.{n}" in MODULES or t not in MODULES:
                continue
            if n not in _defined(t):
                bad.append(f"{m}:{line} imports {n} from {t}, which does not define it")
    assert bad == []


def test_no_import_circles():
    graph = _edges()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_the_walk_sees_the_code():
    """The checks above read every package (a moved folder must not make them vacuous)."""
    assert {m.split(".")[0] for m in MODULES} == set(PACKAGES)
    assert sum(len(_imports(m)) for m in MODULES) > 50
