"""`rltx reproduce NAME`: one figure or table of the paper from its recipe, ending with the figure
files and a short verdict of what was observed against what the paper reports."""
from __future__ import annotations

import dataclasses
import sys
import sysconfig
from pathlib import Path
from typing import Callable

from rltx.config import make_recipe
from rltx.recipe_file import read_recipe_file
from rltx.errors import UsageError
from rltx.reproduce import pipelines
from rltx.reproduce.spec import ReproduceSpec

VERDICT_FILE = "verdict.txt"


def recipe_directories() -> list[Path]:
    """Where named recipes live: the source checkout's recipes/ (also for editable installs), then
    the copy a wheel installs as data files under <prefix>/share/rltx/recipes (the prefix of the
    install scheme, e.g. /usr/local on Debian's system Python, and sys.prefix)."""
    prefixes = dict.fromkeys([sysconfig.get_path("data"), sys.prefix])
    return [Path(__file__).resolve().parents[2] / "recipes",
            *(Path(prefix) / "share" / "rltx" / "recipes" for prefix in prefixes)]


def available_recipes() -> list[str]:
    names = {p.stem for d in recipe_directories() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def find_recipe(name: str) -> Path:
    """A recipe file given by path, or by name (fig5, table1, quickstart, ...)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise UsageError(f"cannot read recipe {path}: no such file; check the path")
        return path
    for directory in recipe_directories():
        if (directory / f"{name}.yaml").exists():
            return directory / f"{name}.yaml"
    raise UsageError(f"no recipe named {name!r}; choose one of {', '.join(available_recipes()) or '(none installed)'}")


@dataclasses.dataclass(frozen=True)
class Report:
    name: str
    out: Path
    paper: str
    description: str
    figures: tuple[Path, ...]
    findings: tuple[pipelines.verdicts.Finding, ...]

    def text(self) -> str:
        lines = [f"{self.name}: {self.description}", f"paper: {self.paper or '(not stated in the recipe)'}",
                 "observed:", *(f"  - {finding.line()}" for finding in self.findings),
                 "figures:", *(f"  {path}" for path in self.figures)]
        return "\n".join(lines) + "\n"


def reproduce(name: str, *, profile: str | None = None, out: Path | None = None, overrides: tuple[str, ...] = (),
              workers: int = 1, reporter: Callable[[str], object], echo: Callable[[str], None]) -> Report:
    """Run the recipe's pipeline into `out` (default runs/reproduce/NAME[-PROFILE]) and write the verdict."""
    from rltx.config import parse_override
    from rltx.store import atomic_write_text
    path = find_recipe(name)
    recipe_file = read_recipe_file(path).profile(profile)
    spec = ReproduceSpec.from_section(recipe_file.reproduce, str(path))
    keys = {**recipe_file.keys, **dict(parse_override(text) for text in overrides)}
    recipe_file = dataclasses.replace(recipe_file, keys=keys)
    recipe = make_recipe(keys)
    out = Path(out or Path("runs") / "reproduce" / (path.stem + (f"-{profile}" if profile else "")))
    out.mkdir(parents=True, exist_ok=True)
    echo(f"{path.stem}: {recipe.description}")
    context = pipelines.Context(recipe, spec, out, reporter, echo)
    if spec.pipeline == "sweep":
        outcome = pipelines.sweep_pipeline(context, recipe_file, workers)
    else:
        outcome = pipelines.PIPELINES[spec.pipeline](context)
    report = Report(path.stem, out, spec.paper, recipe.description, tuple(outcome.figures), tuple(outcome.findings))
    atomic_write_text(out / VERDICT_FILE, report.text())
    return report
