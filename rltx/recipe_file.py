"""Recipe files: a YAML file (or the recipe stored in a run's run.h5) -> its keys and sections ->
a profile applied, with its offline fallback when the dataset is not available here -> a `Recipe`.
It sits above `config` (validated keys, no files), `store` and `data`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from rltx.config import DataSpec, Recipe, make_recipe, parse_override
from rltx.data import open_source
from rltx.errors import UsageError, shorten
from rltx.recipe_yaml import decode, parse_yaml
from rltx.store import read_config_yaml

PATH_KEYS = ("data_dir", "manual_dir", "data_path", "init_file")

# Sections of a recipe file that are not recipe keys: named profiles (e.g. `quick`, a version scaled
# down to a 2-core CPU), the experiment grid of `rltx sweep`, and the steps of `rltx reproduce`.
SECTIONS = ("profiles", "sweep", "reproduce")
# A profile's keys applied on top when the recipe's dataset is not available on this machine.
FALLBACK = "offline_fallback"


@dataclasses.dataclass(frozen=True)
class RecipeFile:
    """A recipe file: its keys (paths resolved against the file) and its non-key sections."""
    path: Path
    keys: dict
    profiles: dict
    sweep: dict
    reproduce: dict

    def profile(self, name: str | None) -> "RecipeFile":
        """This file with profile `name` applied: its keys replace the recipe's, its `sweep` and
        `reproduce` entries replace those of the sections, and its offline_fallback keys are applied
        when the dataset is not available here (noted in the description, which is stored with runs)."""
        if name is None:
            return self
        if name not in self.profiles:
            known = ", ".join(self.profiles) or "none"
            raise UsageError(f"{self.path} has no profile {shorten(name)} (profiles: {shorten(known)}); drop --profile or pick one of them")
        changes = dict(self.profiles[name])
        fallback = changes.pop(FALLBACK, None)
        sweep, reproduce = {**self.sweep, **changes.pop("sweep", {})}, {**self.reproduce, **changes.pop("reproduce", {})}
        keys = {**self.keys, **_resolve_paths(changes, self.path.parent)}
        note = f"{name} profile"
        if fallback is not None and not dataset_available(keys):
            keys = {**keys, **_resolve_paths(fallback, self.path.parent)}
            note += f"; {self.keys.get('dataset')} is not available here, so it runs on {keys.get('dataset')} instead"
        keys["description"] = f"{keys.get('description', '')} [{note}]".strip()
        return dataclasses.replace(self, keys=keys, sweep=sweep, reproduce=reproduce)


def read_recipe_file(path: str | Path) -> RecipeFile:
    """Read a YAML recipe file, or the recipe stored in a run's run.h5 (which has no sections)."""
    path = Path(path)
    if path.suffix == ".h5":
        raw = parse_yaml(read_config_yaml(path), str(path))
    else:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UsageError(f"cannot read recipe {path}: {error.strerror}; check the path") from None
        raw = parse_yaml(decode(data, f"recipe {path}"), str(path))
    if not isinstance(raw, dict):
        raise UsageError("a recipe must be a YAML mapping of key: value lines")
    sections = {name: raw.pop(name, None) or {} for name in SECTIONS}
    for name, section in sections.items():
        if not isinstance(section, dict):
            raise UsageError(f"{path}: section {name} must be a mapping; write it as `{name}:` with indented entries")
    for name, profile in sections["profiles"].items():
        if not isinstance(profile, dict):
            raise UsageError(f"{path}: profile {shorten(name)} must be a mapping of recipe keys")
        for entry in (FALLBACK, "sweep", "reproduce"):
            if not isinstance(profile.get(entry, {}), dict):
                raise UsageError(f"{path}: {entry} of profile {shorten(name)} must be a mapping; write it as "
                                 f"`{entry}:` with indented entries")
    return RecipeFile(path, _resolve_paths(raw, path.parent), **sections)


def dataset_available(keys: dict) -> bool:
    """Whether the dataset named by these recipe keys can be opened here without a download."""
    if keys.get("dataset") in ("gaussian", "dead_leaves"):  # generated here: always available
        return True
    try:
        open_source(DataSpec(str(keys.get("dataset")), offline=True, data_dir=keys.get("data_dir"),
                             manual_dir=keys.get("manual_dir"), data_path=keys.get("data_path"),
                             image_size=keys.get("image_size") or 0))
    except UsageError:
        return False
    return True


def load_recipe(path: str | Path, overrides: tuple[str, ...] = (), profile: str | None = None) -> Recipe:
    """Read a YAML recipe (or the config stored in a run's run.h5), apply a profile, then the
    `key=value` overrides, and validate."""
    raw = dict(read_recipe_file(path).profile(profile).keys)
    for override in overrides:
        name, value = parse_override(override)
        raw[name] = _resolve_paths({name: value}, Path.cwd())[name]
    return make_recipe(raw)


def _resolve_paths(raw, base: Path):
    if not isinstance(raw, dict):
        return raw
    resolved = dict(raw)
    tau = resolved.get("construct_tau")
    names = PATH_KEYS + (("construct_tau",) if isinstance(tau, str) and tau.endswith(".h5") else ())  # a tau curve file
    for name in names:
        if isinstance(resolved.get(name), str):
            resolved[name] = _resolve_path(name, resolved[name], base)
    return resolved


def _resolve_path(name: str, text: str, base: Path) -> str:
    try:
        return str((base / Path(text).expanduser()).resolve())
    except (ValueError, OSError) as error:  # a NUL byte, a loop of links, a name too long
        raise UsageError(f"recipe key {name} is {shorten(text)}, not a usable path ({error}); fix it") from None
