"""The layout shows the architecture: imports only go down the layers, and nothing imports in a cycle.

Layers, top to bottom (README "Layout"): entry scripts and benchmarks -> engine.commands ->
engine.train -> engine.inference -> models, datasets, softmax_splatting -> utils.
"""
import ast
from pathlib import Path

from tests.engine.synthetic import REPO_ROOT

LAYERS = {"utils": 0, "models": 1, "datasets": 1, "softmax_splatting": 1, "engine.inference": 2,
          "engine.train": 3, "engine.commands": 4}
PACKAGES = ("utils", "models", "datasets", "softmax_splatting", "engine")


def layer_of(module: str) -> int | None:
    """The layer of a dotted module name; None outside the layered packages (or engine's docstring)."""
    for prefix, layer in sorted(LAYERS.items(), key=lambda item: -len(item[0])):
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    """Dotted names of the project modules that `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PACKAGES}
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py")}


def test_imports_only_go_down_the_layers():
    upward = []
    for name, path in all_modules().items():
        own = layer_of(name)
        for target in project_imports(path):
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports from a lower layer to a higher one: " + ", ".join(sorted(upward))


def test_no_import_cycles_between_modules():
    modules = all_modules()
    graph = {name: {t for t in project_imports(path) if t in modules and t != name} for name, path in modules.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_engine_top_level_holds_packages_only():
    loose = sorted(p.name for p in (REPO_ROOT / "engine").glob("*.py") if p.name != "__init__.py")
    assert not loose, f"modules at engine/'s top level: {loose}"
    assert {p.name for p in (REPO_ROOT / "engine").iterdir() if (p / "__init__.py").is_file()} == {
        "commands", "train", "inference"}


def test_the_checker_sees_an_upward_import(tmp_path):
    """The walk is real: a utils module importing the engine is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom engine.train.step import train_step\nfrom utils.errors import warn\n")
    assert project_imports(sample) == {"engine.train.step", "engine.train.step.train_step", "utils.errors",
                                       "utils.errors.warn"}
    assert layer_of("engine.train.step") > layer_of("utils.errors")
