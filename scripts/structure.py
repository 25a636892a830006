"""The code's structure in figures: module sizes, import circles, complexity.

    python3 scripts/structure.py [SRC]    # SRC defaults to src/mieruka of this checkout

Prints the modules over 600 lines (the limit of ../STYLE), the import circles among the package's
modules (imports anywhere in a file count: inside functions and under TYPE_CHECKING too), and the
functions whose McCabe complexity is over 10 (through ruff, when the dev venv has it).
tests/unit/test_layout.py checks the circles with the same reader.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE_LIMIT = 600
COMPLEXITY_LIMIT = 10


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(src: Path) -> dict[str, Path]:
    return {module_name(path, src): path for path in sorted(src.rglob("*.py"))}


def module_edges(source: str, module: str, is_package: bool, modules: Collection[str]) -> set[str]:
    """The package modules `module` imports, anywhere in its source (inside functions and under
    `if TYPE_CHECKING:` too). `from pkg import sub` is an edge to the submodule, not to the package
    `pkg` (which Python runs first whatever is imported from it, as it runs every parent package:
    those edges are left out, or every module would be on a circle through the top `__init__`)."""
    package = module if is_package else module.rpartition(".")[0]
    named: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            named.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base = ".".join(base_parts[: len(base_parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            named.extend(f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            named.append(str(node.args[0].value))
    edges = set()
    for name in named:
        while name and name not in modules:  # `mieruka.errors.ConfigError` is the module mieruka.errors
            name = name.rpartition(".")[0]
        if name and name != module:
            edges.add(name)
    return edges


def import_graph(modules: dict[str, str], packages: Collection[str] = ()) -> dict[str, set[str]]:
    """module -> the modules it imports, from each module's source."""
    return {name: module_edges(source, name, name in packages, modules) for name, source in modules.items()}


def package_graph(src: Path) -> dict[str, set[str]]:
    modules = package_modules(src)
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    return import_graph({name: path.read_text() for name, path in modules.items()}, packages)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One import path around `component`, from its first module back to it: what to cut."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for other in sorted(graph[node] & members):
            if other == start:
                return [*paths[node], start]
            if other not in paths:
                paths[other] = [*paths[node], other]
                todo.append(other)
    return component


def complex_functions(src: Path) -> list[str] | None:
    """ruff's C901 findings over the limit, or None when ruff is not installed."""
    ruff = ROOT / ".venv" / "bin" / "ruff"
    command = [str(ruff) if ruff.exists() else "ruff", "check", "--isolated", "--select", "C901"]
    command += ["--config", f"lint.mccabe.max-complexity={COMPLEXITY_LIMIT}", "--output-format", "concise", src.name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=src.parent)
    except FileNotFoundError:
        return None
    return [line for line in done.stdout.splitlines() if " C901 " in line]


def main(argv: list[str]) -> int:
    src = Path(argv[0]).resolve() if argv else ROOT / "src" / "mieruka"
    if not (src / "__init__.py").is_file():
        print(f"structure: {src} is not a package folder", file=sys.stderr)
        return 2
    sizes = sorted(((len(p.read_text().splitlines()), p) for p in src.rglob("*.py")), reverse=True)
    lines = sum(n for n, _ in sizes)
    print(f"modules: {len(sizes)}, {lines} lines; over {LINE_LIMIT} lines: {sum(n > LINE_LIMIT for n, _ in sizes)}")
    for n, path in sizes[:5]:
        print(f"  {n:5d}  {path.relative_to(src.parent)}")
    graph = package_graph(src)
    found = circles(graph)
    print(f"import circles: {len(found)}" + (f" ({', '.join(str(len(c)) for c in found)} modules)" if found else ""))
    for component in found:
        print("  " + " -> ".join(one_cycle(graph, component)))
    complex_ones = complex_functions(src)
    if complex_ones is None:
        print("complexity: ruff is not installed (python3 scripts/dev.py lint installs it into .venv)")
    else:
        print(f"functions with complexity over {COMPLEXITY_LIMIT}: {len(complex_ones)}")
        for line in complex_ones:
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
