"""The architecture is visible in the import graph: imports flow one way (no cycles, counting
imports inside functions too), and the analysis and plotting mathematics know nothing of click."""
import ast
import re
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


# The README's "Architecture" lines, top (the command line) to bottom: a module imports only from its
# own line or the lines below. A name covers the module and, unless a longer name claims them, its
# submodules (so the packages' command modules sit on the command line's line); "rltx", the package
# root, covers only itself.
LAYERS = [
    ["rltx", "rltx.__main__", "rltx.cli", "rltx.cli_options", "rltx.native_stderr", "rltx.analysis.commands",
     "rltx.plotting.commands", "rltx.sweep.command", "rltx.reproduce.command"],
    ["rltx.reproduce"],
    ["rltx.construct_table"],
    ["rltx.construct", "rltx.plotting", "rltx.sweep"],
    ["rltx.analysis"],
    ["rltx.transfer", "rltx.pretrain"],
    ["rltx.runs", "rltx.inspect_runs", "rltx.export"],
    ["rltx.tasks"],
    ["rltx.loop", "rltx.throughput"],
    ["rltx.recipe_file", "rltx.distribute", "rltx.progress"],
    ["rltx.store", "rltx.data", "rltx.models"],
    ["rltx.config", "rltx.hyperrule", "rltx.recipe_yaml", "rltx.model_fit", "rltx.spectrum", "rltx.filter_covariance",
     "rltx.environment", "rltx.errors", "rltx.health", "rltx.events", "rltx.cluster", "rltx.native_memory"],
]


def layer_of(module: str) -> int | None:
    """The line of the longest LAYERS name that is `module` or a package above it."""
    claims = [(len(name), line) for line, names in enumerate(LAYERS) for name in names
              if module == name or (name != "rltx" and module.startswith(name + "."))]
    return max(claims)[1] if claims else None


def test_every_module_imports_only_from_its_own_line_or_below():
    unplaced = [name for name in MODULES if layer_of(name) is None]
    assert not unplaced, f"add these modules to a line of LAYERS (and the README's Architecture): {unplaced}"
    upward = [f"{name} (line {layer_of(name) + 1}) imports {target} (line {layer_of(target) + 1})"
              for name, path in MODULES.items() for target in rltx_edges(path) if layer_of(target) < layer_of(name)]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_the_bottom_line_s_leaf_modules_import_no_rltx_module():
    leaves = ["rltx.filter_covariance", "rltx.environment", "rltx.errors", "rltx.health", "rltx.events"]
    assert {name: rltx_edges(MODULES[name]) for name in leaves} == {name: set() for name in leaves}


def test_layer_lookup_prefers_the_longest_name():
    assert layer_of("rltx.analysis.commands") == 0 and layer_of("rltx.analysis.curves") == 4
    assert layer_of("rltx.data.natural") == 10 and layer_of("rltx.reproduce.verdicts") == 1
    assert layer_of("rltx.datasets") is None  # a prefix must end at a dot


def test_click_only_in_the_command_modules_of_analysis_and_plotting():
    offenders = [name for name, path in MODULES.items()
                 if name.split(".")[1:2] in (["analysis"], ["plotting"]) and not name.endswith(".commands")
                 and any(n == "click" or n.startswith("click.") for n in imported(path))]
    assert offenders == []


def test_config_imports_neither_data_nor_store():
    """Recipes are values: reading files and opening data happen above `config` (rltx.recipe_file)."""
    edges = rltx_edges(MODULES["rltx.config"])
    assert not [name for name in edges if name.split(".")[1] in ("data", "store")]


def test_the_readme_lists_each_line_s_modules():
    """The README's numbered Architecture lines name the same top-level modules as LAYERS."""
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## Architecture")[1].split("\n## ")[0]
    items = re.split(r"\n(?=\d+\. )", section.split("\n1. ", 1)[1])
    assert len(items) == len(LAYERS)
    for number, (item, names) in enumerate(zip(items, LAYERS), start=1):
        listed = set(re.findall(r"`([a-z_]+)`", item))
        expected = {name.split(".")[1] for name in names if name.count(".") == 1}
        assert expected <= listed, f"README Architecture line {number} lacks {sorted(expected - listed)}"
