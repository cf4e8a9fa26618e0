"""Imports flow one way: a module imports its own package or a lower layer, components never import each
other, and no two modules of a package import each other, lazily or not (shared/reference/style.md, Layers).

Every module of every layered package is read with `ast`: module-level imports and imports inside functions,
methods and `try` blocks alike. Only imports under `if TYPE_CHECKING:` may point up a layer, and they do not
count towards cycles (they never run); they still may not cross between packages on one floor. Imports of
third-party and standard-library modules are not looked at. Tests and benchmarks are outside the layers.
"""

from __future__ import annotations

import ast
import functools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The layers, lowest first. A package may import its own modules and any package on a lower floor.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("wxarchive",)),  # config, errors, logs, net, kafka clients, topics, clickhouse, ops http
    ("schemas", ("schemas",)),  # event and payload models shared by all
    # text fold + matcher, E云 kit, broker launcher, the door (served by the sink), tokens + roles + audit
    ("libraries", ("moderation", "eyun", "deploy", "door", "access")),
    ("components", ("ingest", "streams", "sinks", "api", "alerts")),  # never import each other
    ("composition root", ("commands",)),  # CLI, `up`, demo: the only package that imports across everything
]

# Packages on one floor that may import each other, as (importer, imported). None do today: eyun, deploy and
# moderation each import only schemas and the core. Components may never be listed here.
SAME_FLOOR_ALLOWED: set[tuple[str, str]] = set()

# Not packages of the product: they may import anything, and no layered package may import them.
OUTSIDE = ("tests", "benchmarks")

# Violations that exist only while a move is in flight, each "FILE imports MODULE" (any number of statements)
# or "cycle: MODULE, MODULE". An entry that no longer occurs fails the test, so the set only shrinks; never add
# to it. Empty: issue 12 moved wxarchive/cli.py, stack.py and demo.py (21 imports up from the core) to
# commands/, and run() out of sinks/sink.py and streams/worker.py into service.py.
KNOWN_UNTIL_MOVED: set[str] = set()

LAYER_OF: dict[str, str] = {pkg: layer for layer, pkgs in LAYERS for pkg in pkgs}
FLOOR: dict[str, int] = {layer: i for i, (layer, _) in enumerate(LAYERS)}


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository, e.g. "sinks/sink.py"
    line: int
    importer: str  # the importing module, e.g. "sinks.sink"
    target: str  # the imported module as far as it exists in the repository, else as written
    type_checking: bool  # under `if TYPE_CHECKING:`: never runs

    @property
    def from_pkg(self) -> str:
        return self.importer.split(".")[0]

    @property
    def to_pkg(self) -> str:
        return self.target.split(".")[0]


def layered_packages(root: Path = ROOT) -> list[str]:
    """Every top-level package in the repository except tests and benchmarks."""
    return sorted(p.parent.name for p in root.glob("*/__init__.py") if p.parent.name not in OUTSIDE)


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every module of every layered package."""
    modules: dict[str, Path] = {}
    for pkg in layered_packages(root):
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST, type_checking: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement anywhere in the tree (functions, classes, try blocks), with whether it sits in
    the body of an `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_checking
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _statements(ast.Module(body=[child], type_ignores=[]), True)
            for child in node.orelse:
                yield from _statements(ast.Module(body=[child], type_ignores=[]), type_checking)
        else:
            yield from _statements(node, type_checking)


def _existing(name: str, modules: dict[str, Path]) -> str:
    """The longest prefix of a dotted name that is one of our modules (`sinks.rows.rows_for` -> `sinks.rows`)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return name


def from_source(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a `from ... import` reads from; a relative one is resolved against the importing module's
    package (`from . import c` in sinks/b.py reads `sinks`)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path], root: Path = ROOT) -> list[Import]:
    """The imports of our own packages (layered or not) that one module makes."""
    ours = set(LAYER_OF) | set(layered_packages(root)) | set(OUTSIDE)
    is_package = path.name == "__init__.py"
    rel = path.relative_to(root).as_posix()
    found: list[Import] = []
    for node, type_checking in _statements(ast.parse(path.read_text(encoding="utf-8"), rel)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            source = from_source(node, module, is_package)
            # `from pkg import sub` imports the module pkg.sub; `from pkg.mod import name` imports pkg.mod
            names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                     for alias in node.names]
        for name in dict.fromkeys(names):
            if name.split(".")[0] in ours:
                found.append(Import(rel, node.lineno, module, _existing(name, modules), type_checking))
    return found


@functools.cache
def all_imports(root: Path = ROOT) -> tuple[Import, ...]:
    modules = module_files(root)
    return tuple(imp for module, path in modules.items() for imp in imports_of(module, path, modules, root))


def layer_problem(imp: Import) -> str | None:
    """Why an import between two packages breaks the layering, or None when it may stand."""
    src, dst = imp.from_pkg, imp.to_pkg
    if src == dst:
        return None
    if src not in LAYER_OF or (dst not in LAYER_OF and dst not in OUTSIDE):
        return f"{src} -> {dst}: a package with no layer; give it one in LAYERS"
    if dst in OUTSIDE:
        return f"{LAYER_OF[src]} -> {dst}: the product never imports {dst}"
    src_floor, dst_floor = FLOOR[LAYER_OF[src]], FLOOR[LAYER_OF[dst]]
    if src_floor > dst_floor:
        return None
    if src_floor < dst_floor:
        return None if imp.type_checking else f"{LAYER_OF[src]} -> {LAYER_OF[dst]}: up a layer"
    if LAYER_OF[src] == "components":
        return "components -> components: components never import each other"
    if (src, dst) in SAME_FLOOR_ALLOWED:
        return None
    return f"{LAYER_OF[src]} -> {LAYER_OF[dst]}: same floor, not in SAME_FLOOR_ALLOWED"


def layer_violations(imports: tuple[Import, ...]) -> dict[str, list[str]]:
    """Known-set key ("file imports module") -> the offending import lines."""
    out: dict[str, list[str]] = {}
    for imp in imports:
        why = layer_problem(imp)
        if why is not None:
            out.setdefault(f"{imp.file} imports {imp.target}", []).append(
                f"{imp.file}:{imp.line} imports {imp.target} ({why})")
    return out


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
    return found


def cycles(imports: tuple[Import, ...]) -> dict[str, list[str]]:
    """Known-set key ("cycle: a, b") -> the imports that close it, for every cycle between the modules of one
    package. Lazy (in-function) imports count: they run; TYPE_CHECKING imports do not."""
    graph: dict[str, set[str]] = {}
    lines: dict[tuple[str, str], list[Import]] = {}
    for imp in imports:
        if imp.type_checking or imp.from_pkg != imp.to_pkg or imp.importer == imp.target:
            continue
        graph.setdefault(imp.importer, set()).add(imp.target)
        graph.setdefault(imp.target, set())
        lines.setdefault((imp.importer, imp.target), []).append(imp)
    out: dict[str, list[str]] = {}
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        members = set(component)
        out[f"cycle: {', '.join(component)}"] = [
            f"{imp.file}:{imp.line} imports {imp.target} (cycle among {', '.join(component)})"
            for (a, b), imps in sorted(lines.items()) if a in members and b in members for imp in imps]
    return out


def _check(found: dict[str, list[str]], kind: str) -> list[str]:
    known = {k for k in KNOWN_UNTIL_MOVED if k.startswith("cycle: ") == (kind == "cycles")}
    problems = [line for key, where in sorted(found.items()) if key not in known for line in where]
    problems += [f"KNOWN_UNTIL_MOVED lists {key!r}, which no longer occurs: remove it" for key in sorted(known - set(found))]
    return problems


def test_every_package_has_a_layer() -> None:
    missing = [pkg for pkg in layered_packages() if pkg not in LAYER_OF]
    assert not missing, f"top-level packages with no place in LAYERS (tests/unit/test_layers.py): {missing}"
    assert not {pair for pair in SAME_FLOOR_ALLOWED if LAYER_OF[pair[0]] == "components"}, \
        "components never import each other: no allowance can say otherwise"


def test_imports_go_to_the_same_package_or_a_lower_layer() -> None:
    problems = _check(layer_violations(all_imports()), "imports")
    assert not problems, "imports against the layers (shared/reference/style.md):\n" + "\n".join(problems)


def test_no_import_cycle_inside_a_package() -> None:
    problems = _check(cycles(all_imports()), "cycles")
    assert not problems, "modules of one package that import each other:\n" + "\n".join(problems)


def report(imports: tuple[Import, ...]) -> str:
    """Counts of import statements from each layer to each layer, then the problems found."""
    names = [layer for layer, _ in LAYERS]
    counts: Counter[tuple[str, str]] = Counter()
    exempt = 0
    for imp in imports:
        counts[LAYER_OF.get(imp.from_pkg, imp.from_pkg), LAYER_OF.get(imp.to_pkg, imp.to_pkg)] += 1
        exempt += imp.type_checking
    width = max(map(len, names)) + 2
    lines = ["import layers, lowest first; imports counted from the layer of the row to that of the column",
             " " * width + "".join(f"{n:>{len(n) + 2}}" for n in names)]
    for src in reversed(names):
        pkgs = [p for p in dict(LAYERS)[src] if (ROOT / p / "__init__.py").exists()]
        lines.append(f"{src:<{width}}" + "".join(f"{counts[src, dst] or '.':>{len(dst) + 2}}" for dst in names)
                     + f"    {' '.join(pkgs)}")
    layer_found, cycle_found = layer_violations(imports), cycles(imports)
    upward = sum(len(v) for k, v in layer_found.items() if k not in KNOWN_UNTIL_MOVED)
    known_layer = sum(len(v) for k, v in layer_found.items() if k in KNOWN_UNTIL_MOVED)
    lines.append(f"imports against the layers: {upward} (known until moved: {known_layer}); "
                 f"cycles: {sum(k not in KNOWN_UNTIL_MOVED for k in cycle_found)} "
                 f"(known until moved: {sum(k in KNOWN_UNTIL_MOVED for k in cycle_found)}); "
                 f"TYPE_CHECKING imports, exempt: {exempt}")
    return "\n".join(lines)


def test_layer_report(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the import counts between layers, so CI's log shows the layering holds."""
    imports = all_imports()
    text = report(imports)
    with capsys.disabled():
        print("\n" + text)
    assert "imports against the layers: 0 " in text and "; cycles: 0 " in text, text


def test_the_check_sees_lazy_imports_cycles_and_sideways_components(tmp_path: Path) -> None:
    """A small tree with one of each fault, so the checks above cannot pass by seeing nothing."""
    files = {
        "wxarchive/__init__.py": "",
        "wxarchive/cli.py": "def main():\n    from sinks.b import run\n",  # lazy, core -> component
        "sinks/__init__.py": "",
        "sinks/b.py": "from . import c\n",
        "sinks/c.py": "def f():\n    import sinks.b\n",  # a lazy import closes the cycle b -> c -> b
        "ingest/__init__.py": "",
        "ingest/x.py": "try:\n    from sinks.b import y\nexcept ImportError:\n    pass\n",  # sideways
        "eyun/__init__.py": "",
        "eyun/t.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ingest.x import X\n",  # exempt
        "eyun/u.py": "import tests.support\n",
        "deploy/__init__.py": "",
        "deploy/v.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from eyun.t import T\n",  # sideways
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    imports = all_imports(tmp_path)
    found = [line for lines in layer_violations(imports).values() for line in lines]
    assert sorted(found) == [
        "deploy/v.py:3 imports eyun.t (libraries -> libraries: same floor, not in SAME_FLOOR_ALLOWED)",
        "eyun/u.py:1 imports tests.support (libraries -> tests: the product never imports tests)",
        "ingest/x.py:2 imports sinks.b (components -> components: components never import each other)",
        "wxarchive/cli.py:2 imports sinks.b (core -> components: up a layer)",
    ]
    assert cycles(imports) == {"cycle: sinks.b, sinks.c": [
        "sinks/b.py:1 imports sinks.c (cycle among sinks.b, sinks.c)",
        "sinks/c.py:2 imports sinks.b (cycle among sinks.b, sinks.c)",
    ]}
