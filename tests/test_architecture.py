"""The architecture is visible in the import graph: imports flow one way (no cycles, counting
imports inside functions too), and the analysis and plotting mathematics know nothing of click."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rltx"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file (module level or inside functions);
    a package's __init__ run on the way to a submodule does not count."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from rltx import store` names the module rltx.store
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return names


def rltx_edges(path: Path) -> set[str]:
    return {name for name in imported(path) if name in MODULES} - {module_name(path), "rltx"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of modules (first repeated at the end), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    edges = rltx_edges(PACKAGE / "cli.py")
    assert {"rltx.pretrain", "rltx.transfer", "rltx.store"} <= edges  # imported inside functions


def test_imports_flow_one_way():
    graph = {name: rltx_edges(path) for name, path in MODULES.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_click_only_in_the_command_modules_of_analysis_and_plotting():
    offenders = [name for name, path in MODULES.items()
                 if name.split(".")[1:2] in (["analysis"], ["plotting"]) and not name.endswith(".commands")
                 and any(n == "click" or n.startswith("click.") for n in imported(path))]
    assert offenders == []


def test_config_imports_neither_data_nor_store():
    """Recipes are values: reading files and opening data happen above `config` (rltx.recipe_file)."""
    edges = rltx_edges(MODULES["rltx.config"])
    assert not [name for name in edges if name.split(".")[1] in ("data", "store")]
