"""The shape of the code (docs/architecture.md): imports go one way, from the face to the spine.

Every import is counted: module level, inside functions (lazy) and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hf_eco2ai

ROOT = Path(hf_eco2ai.__file__).parent

LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "hf_eco2ai.errors",
        "hf_eco2ai.version",
        "hf_eco2ai._logging",
        "hf_eco2ai.outputs.text_table",
        "hf_eco2ai.carbon.countries",
        "hf_eco2ai.carbon.intensity",
        "hf_eco2ai.carbon.tables",
        "hf_eco2ai.telemetry.attributes",
        "hf_eco2ai.telemetry.names",
    ),
    (
        "hf_eco2ai.config_fields",
        "hf_eco2ai.config",
        "hf_eco2ai.environment_variables",
        "hf_eco2ai.output_location",
    ),
    ("hf_eco2ai.sensors", "hf_eco2ai.carbon"),
    (
        "hf_eco2ai.energy_ledger",
        "hf_eco2ai.sampling_thread",
        "hf_eco2ai.energy_increments",
        "hf_eco2ai.energy_windows",
        "hf_eco2ai.energy_monitor",
        "hf_eco2ai.projection",
        "hf_eco2ai.distributed",
    ),
    ("hf_eco2ai.telemetry", "hf_eco2ai.telemetry.session", "hf_eco2ai.record", "hf_eco2ai.outputs"),
    ("hf_eco2ai.run",),
    ("hf_eco2ai.integrations", "hf_eco2ai.lightning"),
    ("hf_eco2ai.instrumentor", "hf_eco2ai.cli", "hf_eco2ai.exporters", "hf_eco2ai"),
)
"""Lowest first: a module may import its own layer and the layers before it, never after."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(("hf_eco2ai", *parts))] = path
    return found


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The project modules ``name`` imports (a submodule named in ``from pkg import sub`` counts
    as the submodule, not as its package)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
            out.update(subs)
            if len(subs) < len(node.names) and base in MODULES:
                out.add(base)
    out.discard(name)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name: str) -> int:
    best = (-1, -1)
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                best = max(best, (len(prefix), rank))
    assert best[1] >= 0, f"{name} is in no layer of docs/architecture.md"
    return best[1]


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        _layer(name)


def test_imports_never_go_up_a_layer() -> None:
    """Would catch: the spine importing the run, the run importing an integration, telemetry
    importing the run..."""
    upward = [
        f"{name} -> {dep}"
        for name, deps in GRAPH.items()
        for dep in deps
        if _layer(dep) > _layer(name) and dep != "hf_eco2ai"
    ]
    assert upward == []


def test_no_import_circle() -> None:
    """Would catch: any circle of imports inside the package, lazy ones included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for dep in GRAPH[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    assert circles == []


def test_the_check_sees_lazy_and_typing_imports() -> None:
    """The graph is not vacuous: a lazy import inside a function is an edge."""
    assert "hf_eco2ai.integrations.transformers_callback" in GRAPH["hf_eco2ai.instrumentor"]
    assert "hf_eco2ai.run.run" in GRAPH["hf_eco2ai.run"]
