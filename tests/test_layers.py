"""The house rules, read from the source with `ast`: no import circles (lazy imports included),
imports only down the layers, no module over 450 lines, at most 8 loose modules in flowkit/.

The layers, lowest first (docs/ARCHITECTURE.md): base (errors, params, devices, the package) →
video → flow → store → extraction | data (peers) → rawframes → models (torch, base, and flow
for MotionNet) → training → prediction (extraction and training: new videos scored) → cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "flowkit"

# What each layer may import besides itself.
BASE = {"flowkit", "flowkit.errors", "flowkit.params", "flowkit.devices"}
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "video": {"base"},
    "synth": {"base", "video"},
    "flow": {"base"},
    "store": {"base", "video", "flow"},
    "extraction": {"base", "video", "flow", "store"},
    "data": {"base", "video", "flow", "store"},
    "rawframes": {"base", "video", "flow", "store", "extraction", "data"},
    "models": {"base", "flow"},  # flow: MotionNet, a flow estimator (hidden two-stream)
    "training": {"base", "video", "flow", "store", "data", "models"},
    "prediction": {"base", "video", "flow", "store", "extraction", "data", "models", "training"},
    "cli": {"base", "video", "synth", "flow", "store", "extraction", "data", "rawframes", "models",
            "training", "prediction"},
    "main": {"cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in BASE:
        return "base"
    parts = module.split(".")
    if parts[1] == "__main__":
        return "main"
    return parts[1]


def imports_of(path: Path) -> set[str]:
    """Every flowkit module `path` imports, at the top or inside a function."""
    tree = ast.parse(path.read_text())
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("flowkit"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("flowkit"):
                continue
            for alias in node.names:  # `from flowkit.models import weights` imports a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
    return {name for name in found if name in MODULES} - {here}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def test_every_import_runs_down_the_layers():
    wrong = []
    for module, imported in GRAPH.items():
        layer = layer_of(module)
        for target in imported:
            other = layer_of(target)
            if other != layer and other not in ALLOWED[layer]:
                wrong.append(f"{module} ({layer}) imports {target} ({other})")
    assert not wrong, "\n".join(sorted(wrong))


def _edges(module: str) -> set[str]:
    """What `module` imports, less a package's own submodules (its __init__ runs first anyway)."""
    return {t for t in GRAPH[module] if not t.startswith(module + ".")}


def find_circles() -> list[str]:
    """Every import circle, as `a -> b -> a`, by depth-first search over the import graph."""
    circles, state = [], {}  # state: 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(_edges(module)):
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    return circles


def test_no_import_circles():
    """No module reaches itself through what it imports, lazy imports (inside functions) included."""
    assert not find_circles()


def test_no_module_over_450_lines():
    long = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert not {name: n for name, n in long.items() if n > 450}


def test_at_most_eight_loose_modules():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 8, loose


def test_the_walk_sees_real_imports():
    """The checks above would pass on an empty graph: make sure they read what is there."""
    assert "flowkit.extraction.settings" in GRAPH["flowkit.extraction.pipeline"]
    assert "flowkit.store.shards" in GRAPH["flowkit.extraction.cluster"]  # a top-level import
    assert "flowkit.extraction.cluster" in GRAPH["flowkit.extraction.pipeline"]  # a lazy one
    GRAPH["flowkit.errors"].add("flowkit.video")  # video imports errors: a circle on purpose
    try:
        assert find_circles()
    finally:
        GRAPH["flowkit.errors"].discard("flowkit.video")
