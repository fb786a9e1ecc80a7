"""The import graph of the project's packages: no circles, ``cmg_protocol`` a leaf, ``mock_site`` below ``harness``.

Every import is read from the source with ``ast``: module-level and function-level ones alike (a function-level
import is a dependency that merely arrives late), ``TYPE_CHECKING`` blocks included, relative imports resolved.
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` (its ``__init__``). Importing
``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; that implicit step is not an edge, or every module would sit
in a circle with its own package. Imports by string (``importlib.import_module``, the lazy package ``__init__``s) are
not edges either: they resolve on use, not on import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cmg_protocol", "mock_site", "harness")
#: Libraries the protocol package must never load: servers, HTTP clients, Locust and its gevent, metrics.
FORBIDDEN_IN_PROTOCOL = ("uvicorn", "starlette", "httpx", "aiohttp", "locust", "gevent", "prometheus_client")

#: Circles that exist today in parts other work is restructuring: harness.gates -> harness.load.headless (duration
#: parsing) -> harness.report -> harness.gates, and inside it harness.report.capacity <-> harness.report.html. Each
#: entry is the set of modules of one circle (a strongly connected component); a circle found is allowed while it
#: lies inside an entry (it may shrink as it is taken apart). Remove an entry once no circle is left inside it:
#: ``test_known_circles_to_remove_still_exist`` fails until then.
KNOWN_CIRCLES_TO_REMOVE: frozenset[frozenset[str]] = frozenset()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name (a package by its own name)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[_module_name(path)] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported_names(module: str, path: Path) -> Iterator[tuple[str, str | None, int]]:
    """``(module imported, name taken from it or None, line)`` for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # The package a relative import starts from: a package's own name for its __init__, else the parent package.
    here = module if _is_package(path) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[:len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                yield target, alias.name, node.lineno


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a project module (None: outside the project)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {project module it imports: first line}; no edge to itself."""
    modules = project_modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        for target, name, line in imported_names(module, path):
            resolved = _known(f"{target}.{name}", modules) if name not in (None, "*") else None
            if resolved != f"{target}.{name}":  # `from pkg import name`: the module pkg.name, else pkg itself
                resolved = _known(target, modules)
            if resolved is not None and resolved != module:
                edges.setdefault(resolved, line)
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative: the graph is deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def describe(component: Iterable[str], graph: dict[str, dict[str, int]]) -> str:
    """A circle's modules and the imports inside it (``a:line -> b``), for the failure message."""
    members = sorted(component)
    edges = [f"{source}:{graph[source][target]} -> {target}" for source in members for target in sorted(graph[source])
             if target in component]
    return "{" + ", ".join(members) + "}\n      " + "\n      ".join(edges)


def test_the_graph_sees_module_function_level_and_relative_imports() -> None:
    """The reader finds the edges this test relies on (a reader that finds nothing would pass everything)."""
    graph = import_graph()
    assert "cmg_protocol.envelope" in graph["cmg_protocol"]  # relative, from a package __init__
    assert "harness.fleet.tally" in graph["harness.load.context"]  # module level
    assert "harness.client.transport" in graph["harness.load.context"]  # also inside _client_certs
    assert "harness.client.outcome" in graph["harness.load.users"]  # `from pkg import module`


def test_the_circle_finder_finds_a_circle_and_nothing_else() -> None:
    """A made-up graph: a -> b -> c -> a is one circle, d -> a is not in it."""
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}, "e": {}}
    assert circles(graph) == [frozenset({"a", "b", "c"})]


def test_no_import_circles() -> None:
    """No module reaches itself through imports (known circles of work in progress aside)."""
    graph = import_graph()
    found = [component for component in circles(graph)
             if not any(component <= known for known in KNOWN_CIRCLES_TO_REMOVE)]
    assert not found, "import circles:\n  " + "\n  ".join(describe(c, graph) for c in found)


def test_known_circles_to_remove_still_exist() -> None:
    """An allowed circle that is gone must leave KNOWN_CIRCLES_TO_REMOVE, so it cannot come back unnoticed."""
    graph = import_graph()
    found = circles(graph)
    gone = [sorted(known) for known in KNOWN_CIRCLES_TO_REMOVE if not any(c <= known for c in found)]
    assert not gone, f"no circle is left inside these: remove them from KNOWN_CIRCLES_TO_REMOVE: {gone}"


def test_the_protocol_package_imports_nothing_of_the_project_or_of_servers_and_clients() -> None:
    """cmg_protocol is a leaf: no import of mock_site or harness, none of a server, HTTP or Locust library."""
    modules = project_modules()
    bad = []
    for module, path in modules.items():
        if module.split(".")[0] != "cmg_protocol":
            continue
        for target, name, line in imported_names(module, path):
            top = target.split(".")[0]
            if top in ("mock_site", "harness") or top in FORBIDDEN_IN_PROTOCOL:
                bad.append(f"{module}:{line} imports {target}" + (f".{name}" if name else ""))
    assert not bad, "\n".join(bad)


def test_importing_the_protocol_package_loads_no_server_http_or_locust_library() -> None:
    """In a fresh interpreter, importing cmg_protocol and all its modules loads none of the project or those libraries."""
    submodules = sorted(name for name in project_modules() if name.startswith("cmg_protocol."))
    watched = ("mock_site", "harness", *FORBIDDEN_IN_PROTOCOL)
    code = ("import sys\nimport cmg_protocol\n" + "".join(f"import {name}\n" for name in submodules)
            + f"print(sorted(m for m in sys.modules if m.split('.')[0] in {watched!r}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_the_mock_site_never_imports_the_harness() -> None:
    """mock_site sits below harness: no mock_site module imports a harness module."""
    graph = import_graph()
    bad = [f"{module}:{line} -> {target}" for module, edges in sorted(graph.items()) if module.startswith("mock_site")
           for target, line in sorted(edges.items()) if target.split(".")[0] == "harness"]
    assert not bad, "\n".join(bad)


def test_load_modules_import_their_siblings_directly() -> None:
    """A harness.load module imports a sibling by its own name, never through the (lazy) package __init__."""
    bad = [f"{module}:{line} imports {target}" + (f".{name}" if name else "")
           for module, path in sorted(project_modules().items())
           if module.startswith("harness.load.")
           for target, name, line in imported_names(module, path) if target == "harness.load"]
    assert not bad, "\n".join(bad)
