"""The README is the contract: its key table, set-up commands and CI must not drift apart."""
import re
from pathlib import Path

from rltx.config import keys_markdown

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def setup_commands():
    section = README.split("## Set-up on a fresh machine")[1].split("\n## ")[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_exactly_two_setup_commands_quickstart_then_tests():
    quickstart, tests = setup_commands()
    assert "pip install ." in quickstart and "rltx reproduce quickstart" in quickstart
    assert "pip install '.[test]'" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup_commands()[1] in ci.splitlines()
    assert "set -euo pipefail" in ci


def test_key_table_is_current():
    assert keys_markdown() in README


def test_every_recipe_is_in_the_recipe_table():
    table = README.split("## Recipes")[1].split("\n## ")[0]
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", table, re.M))
    assert listed == {p.stem for p in (ROOT / "recipes").glob("*.yaml")}


def test_no_merge_conflict_markers_in_the_sources_and_docs():
    """A merge once left its conflict markers in this README for several sessions."""
    folders = ["rltx", "tests", "recipes", "docs", "docker", "bench", ".ci"]
    files = [ROOT / "README.md", ROOT / "setup.cfg", ROOT / "pyproject.toml"]
    files += [p for folder in folders for p in (ROOT / folder).rglob("*")
              if p.is_file() and p.suffix in ("", ".py", ".md", ".yaml", ".yml", ".cfg", ".toml", ".txt", ".sh")]
    marker = re.compile(r"^(<{7} |={7}$|>{7} )", re.M)
    found = [str(p.relative_to(ROOT)) for p in files if marker.search(p.read_text(errors="replace"))]
    assert not found, f"merge conflict markers in {found}"


def test_the_python_examples_import_names_that_exist():
    """Every README Python example parses, and each of its `from rltx... import ...` (multi-line ones
    too) and `import rltx...` names something real (an example once imported load_recipe from the
    wrong module)."""
    import ast
    import importlib.util
    blocks = re.findall(r"```python\n(.+?)\n```", README, re.S)
    nodes = [node for block in blocks for node in ast.walk(ast.parse(block))]
    imports = [(node.module, alias.name) for node in nodes if isinstance(node, ast.ImportFrom)
               and (node.module or "").split(".")[0] == "rltx" for alias in node.names]
    modules = [alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names
               if alias.name.split(".")[0] == "rltx"]
    assert len(imports) >= 4
    missing = [f"{module}.{name}" for module, name in imports if not hasattr(importlib.import_module(module), name)]
    missing += [module for module in modules if importlib.util.find_spec(module) is None]
    assert not missing, f"README examples import names that do not exist: {missing}"
