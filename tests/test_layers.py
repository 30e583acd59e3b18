"""The package layout's rules (docs/design.md, "Package map"), checked on the source.

* every module of ``src/clawhost`` belongs to a layer, and imports only from its own layer
  or the layers below it;
* no import circle, not even one closed by an import under ``if TYPE_CHECKING:`` or one
  made inside a function;
* no module is over 600 lines.

The import graph is read with ``ast`` (nothing is imported), so the rules hold for type
checking and lazy imports too. The checks are tried first on small made-up trees, so a
broken checker cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src" / "clawhost"

#: Bottom to top. A module may import from its own layer and the layers below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_version"),
    ("core",),
    ("discovery",),
    ("config",),
    ("resolution",),
    ("sandbox",),
    ("runtime", "hookspecs"),
    ("worker",),
    ("reload",),
    ("surfaces",),
    ("host",),
    ("testkit",),
    ("gateway", "testing", "pytest_plugin", "__init__"),
    ("cli", "__main__"),
)
MAX_LINES = 600

Graph = dict[str, set[str]]


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of the tree that ``module`` imports (anywhere in it)."""
    package = module if is_package else module.rpartition(".")[0]
    top = module.split(".", maxsplit=1)[0]

    def owner(name: str) -> str | None:
        while name:
            if name in known:
                return name
            name = name.rpartition(".")[0]
        return None

    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(hit for alias in node.names if (hit := owner(alias.name)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".", maxsplit=1)[0] != top:
                continue
            for alias in node.names:
                # ``from pkg import module`` imports the module; ``from module import x``
                # imports ``module``.
                hit = owner(f"{target}.{alias.name}") if f"{target}.{alias.name}" in known else None
                hit = hit or owner(target)
                if hit:
                    found.add(hit)
    found.discard(module)
    return found


def import_graph(root: Path) -> Graph:
    files = {_module_name(root, path): path for path in sorted(root.rglob("*.py"))}
    known = set(files)
    return {
        module: _imports(
            ast.parse(path.read_text("utf-8"), str(path)), module, path.name == "__init__.py", known
        )
        for module, path in files.items()
    }


def circles(graph: Graph) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a deep graph does not meet the recursion limit.
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for other in edges:
                if other not in index:
                    index[other] = low[other] = len(index)
                    stack.append(other)
                    on_stack.add(other)
                    work.append((other, iter(sorted(graph[other]))))
                    break
                if other in on_stack:
                    low[node] = min(low[node], index[other])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def _layer(module: str, layers: tuple[tuple[str, ...], ...]) -> int | None:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "__init__"
    return next((rank for rank, names in enumerate(layers) if name in names), None)


def layer_problems(graph: Graph, layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    problems = [
        f"{module} belongs to no layer (add it to LAYERS and docs/design.md)"
        for module in sorted(graph)
        if _layer(module, layers) is None
    ]
    for module, imported in sorted(graph.items()):
        rank = _layer(module, layers)
        for other in sorted(imported):
            other_rank = _layer(other, layers)
            if rank is not None and other_rank is not None and other_rank > rank:
                problems.append(f"{module} imports {other}, a layer above it")
    return problems


def long_modules(root: Path, limit: int = MAX_LINES) -> list[str]:
    return [
        f"{path.relative_to(root.parent)}: {count} lines"
        for path in sorted(root.rglob("*.py"))
        if (count := len(path.read_text("utf-8").splitlines())) > limit
    ]


# -- the rules, on clawhost ------------------------------------------------------------------


def test_no_import_circle() -> None:
    found = circles(import_graph(SOURCE))
    assert found == [], "import circles:\n" + "\n".join(" -> ".join(group) for group in found)


def test_every_module_imports_only_its_own_layer_and_below() -> None:
    problems = layer_problems(import_graph(SOURCE))
    assert problems == [], "\n".join(problems)


def test_no_module_is_over_600_lines() -> None:
    assert long_modules(SOURCE) == []


def test_the_graph_sees_the_whole_package() -> None:
    graph = import_graph(SOURCE)
    assert len(graph) > 60
    assert "clawhost.host.host" in graph["clawhost.cli.state"]  # a lazy import, in a function
    assert "clawhost.runtime.records" in graph["clawhost.host.internals"]  # under TYPE_CHECKING


# -- the checker, on made-up trees -----------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    return root


_TOY_LAYERS = (("low",), ("high",), ("__init__",))


def test_a_circle_closed_under_type_checking_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": "from pkg.low.b import B\n",
            "low/b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.low.a import A\n"
            ),
            "low/c.py": "from .a import x\n",
        },
    )
    assert circles(import_graph(root)) == [["pkg.low.a", "pkg.low.b"]]


def test_a_lazy_upward_import_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": "def f():\n    from ..high import b\n    return b\n",
            "high/__init__.py": "",
            "high/b.py": "from pkg.low import a\n",
            "stray.py": "",
        },
    )
    graph = import_graph(root)
    assert graph["pkg.low.a"] == {"pkg.high.b"}
    assert graph["pkg.high.b"] == {"pkg.low.a"}
    assert layer_problems(graph, _TOY_LAYERS) == [
        "pkg.stray belongs to no layer (add it to LAYERS and docs/design.md)",
        "pkg.low.a imports pkg.high.b, a layer above it",
    ]


def test_importing_the_package_itself_from_below_is_upward(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"__init__.py": "", "low/__init__.py": "", "low/a.py": "import pkg\n"})
    assert layer_problems(import_graph(root), _TOY_LAYERS) == [
        "pkg.low.a imports pkg, a layer above it"
    ]


@pytest.mark.parametrize(("lines", "flagged"), [(600, False), (601, True)])
def test_a_long_module_is_named(tmp_path: Path, lines: int, flagged: bool) -> None:
    root = _tree(tmp_path, {"__init__.py": "", "big.py": "x = 1\n" * lines})
    assert long_modules(root) == ([f"pkg/big.py: {lines} lines"] if flagged else [])
