"""A declared surface: a layered package takes from another package only names that the module lists in its
`__all__` (shared/reference/style.md, Modules and names: names other packages import are in the module's
`__all__`; the rest is `_private`).

Every module of every layered package is read with `ast`, as tests/unit/test_layers.py reads them: imports at
module level, inside functions and under `if TYPE_CHECKING:` alike (a type-only import still leans on the name).
A name is taken by `from pkg.mod import name`, and by `mod.name` where `mod` is bound by `from pkg import mod` or
`import pkg.mod [as mod]`. Importing a submodule is not taking a name. Inside one package any name may be
imported. Tests and benchmarks are outside the layers and are not checked: they may reach into the private
helpers they test. The public names they take are listed in `__all__` all the same; only `_private` ones are not.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

from tests.unit.test_layers import ROOT, from_source, module_files


@dataclass(frozen=True)
class Taken:
    file: str  # relative to the repository, e.g. "sinks/sink.py"
    line: int
    module: str  # the module the name is taken from, e.g. "wxarchive.topics"
    name: str


@functools.cache
def declared_all(path: Path) -> list[str] | None:
    """A module's `__all__`, or None when it has none. It must be a literal list or tuple of strings."""
    rel = path.as_posix()
    for node in ast.parse(path.read_text(encoding="utf-8"), rel).body:
        value: ast.expr | None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            names = ast.literal_eval(value) if value is not None else None
            assert isinstance(names, list | tuple) and all(isinstance(n, str) for n in names), \
                f"{rel}:{node.lineno}: write __all__ as a literal list of strings"
            return list(names)
    return None


def _chain(node: ast.Attribute) -> tuple[str, list[str]] | None:
    """`a.b.c` -> ("a", ["b", "c"]), or None when the chain does not start at a plain name."""
    attrs: list[str] = []
    value: ast.expr = node
    while isinstance(value, ast.Attribute):
        attrs.insert(0, value.attr)
        value = value.value
    return (value.id, attrs) if isinstance(value, ast.Name) else None


def taken_by(module: str, path: Path, modules: dict[str, Path], root: Path = ROOT) -> list[Taken]:
    """Every name that one module takes from a module of another package, by `from` import or by attribute."""
    own_pkg = module.split(".")[0]
    ours = {m.split(".")[0] for m in modules}
    rel = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), rel)
    bound: dict[str, str] = {}  # local name -> the module of ours it is bound to
    found: dict[tuple[int, str, str], Taken] = {}

    def take(line: int, source: str, name: str) -> None:
        if source.split(".")[0] != own_pkg:
            found.setdefault((line, source, name), Taken(rel, line, source, name))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = from_source(node, module, path.name == "__init__.py")
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{source}.{alias.name}"
                elif source.split(".")[0] in ours:
                    take(node.lineno, source, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:  # `import a.b` binds `a`; `import a.b as m` binds `m` to a.b
                    local = alias.asname or alias.name.split(".")[0]
                    bound[local] = alias.name if alias.asname else local
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = _chain(node)
        if chain is None or chain[0] not in bound:
            continue
        current = bound[chain[0]]
        for attr in chain[1]:
            if f"{current}.{attr}" not in modules:
                take(node.lineno, current, attr)
                break
            current = f"{current}.{attr}"
    return sorted(found.values(), key=lambda t: (t.line, t.module, t.name))


@functools.cache
def all_taken(root: Path = ROOT) -> tuple[Taken, ...]:
    modules = module_files(root)
    return tuple(t for module, path in modules.items() for t in taken_by(module, path, modules, root))


def surface_problems(root: Path = ROOT) -> list[str]:
    """One line for every name a layered package takes from another package that is not in that module's
    `__all__`."""
    modules = module_files(root)
    problems: list[str] = []
    for t in all_taken(root):
        declared = declared_all(modules[t.module]) if t.module in modules else None
        if declared is None:
            problems.append(f"{t.file}:{t.line} imports {t.module}.{t.name}, and {t.module} has no __all__")
        elif t.name not in declared:
            problems.append(f"{t.file}:{t.line} imports {t.module}.{t.name}, not in {t.module}.__all__")
    return problems


def test_packages_take_from_each_other_only_names_in_all() -> None:
    assert len(all_taken()) > 50, "the walk found almost no imports between packages: it is broken"
    problems = surface_problems()
    assert not problems, ("names taken across packages must be in the module's __all__ (list the name there, or "
                          "keep it private and import it only within its package):\n" + "\n".join(problems))


def test_every_all_is_sorted() -> None:
    unsorted = [f"{path.relative_to(ROOT)}: __all__ is not sorted" for path in module_files().values()
                if (declared := declared_all(path)) is not None and declared != sorted(declared)]
    assert not unsorted, "\n".join(unsorted)


def test_the_check_sees_from_imports_attributes_and_modules_without_all(tmp_path: Path) -> None:
    """A small tree with one of each fault, so the check above cannot pass by seeing nothing."""
    files = {
        "wxarchive/__init__.py": "VERSION = '1'\n",  # no __all__
        "wxarchive/a.py": "__all__ = ['pub']\ndef pub(): ...\ndef other(): ...\n_hidden = 1\n",
        "wxarchive/b.py": "def thing(): ...\n",  # no __all__
        "wxarchive/c.py": "from wxarchive.a import other, _hidden\nfrom .b import thing\n",  # its own package
        "sinks/__init__.py": "",
        "sinks/x.py": "from wxarchive.a import pub, other\n",
        "sinks/y.py": "def f():\n    from wxarchive.b import thing\n",  # lazy, from a module with no __all__
        "sinks/z.py": ("from typing import TYPE_CHECKING\nfrom wxarchive import a, VERSION\nimport wxarchive.a as wa\n"
                       "import wxarchive.a\nif TYPE_CHECKING:\n    from wxarchive.a import other\n"
                       "a.pub(); a.other()\nwa._hidden\nwxarchive.a.pub(); wxarchive.a.other()\n"),
        "sinks/r.py": "from .x import other\nfrom sinks import z\nz.anything\n",  # its own package
        "tests/__init__.py": "",
        "tests/t.py": "from wxarchive.a import _hidden\n",  # outside the layers: not checked
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert sorted(surface_problems(tmp_path)) == [
        "sinks/x.py:1 imports wxarchive.a.other, not in wxarchive.a.__all__",
        "sinks/y.py:2 imports wxarchive.b.thing, and wxarchive.b has no __all__",
        "sinks/z.py:2 imports wxarchive.VERSION, and wxarchive has no __all__",
        "sinks/z.py:6 imports wxarchive.a.other, not in wxarchive.a.__all__",
        "sinks/z.py:7 imports wxarchive.a.other, not in wxarchive.a.__all__",
        "sinks/z.py:8 imports wxarchive.a._hidden, not in wxarchive.a.__all__",
        "sinks/z.py:9 imports wxarchive.a.other, not in wxarchive.a.__all__",
    ]
