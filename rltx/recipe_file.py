"""Recipe files: a YAML file (or the recipe stored in a run's run.h5) -> its keys and sections ->
a profile applied, with its offline fallback when the dataset is not available here -> a `Recipe`.
It sits above `config` (validated keys, no files), `store` and `data`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from rltx.config import DataSpec, Recipe, make_recipe, parse_override
from rltx.errors import UsageError, check_not_special, shorten
from rltx.recipe_yaml import decode, flow_text, parse_yaml

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
    fallback: str | None = None  # the dataset the profile's offline_fallback replaced, when it did

    def with_sweep(self, **entries) -> "RecipeFile":
        """This file with entries of its sweep: section replaced (`--groups`, `--seeds`; None keeps one);
        the section is checked where it is read (rltx.sweep.plan.SweepSpec)."""
        given = {name: value for name, value in entries.items() if value is not None}
        return dataclasses.replace(self, sweep={**self.sweep, **given}) if given else self

    def profile(self, name: str | None, overrides: dict | None = None) -> "RecipeFile":
        """This file with profile `name` applied, then the `--set` overrides (parsed, see
        `parse_overrides`): the profile's keys replace the recipe's, its `sweep` and `reproduce`
        entries replace those of the sections, and the overrides win over both. The profile's
        offline_fallback keys are applied (under the overrides) only when the dataset named after the
        overrides is not available here, and never when the overrides name the dataset themselves;
        the description notes the profile and a fallback (it is stored with runs)."""
        overrides = dict(overrides or {})
        if name is None:
            return dataclasses.replace(self, keys={**self.keys, **overrides}) if overrides else self
        if name not in self.profiles:
            if not self.profiles:
                raise UsageError(f"{self.path} has no profiles; drop --profile (or --quick)")
            raise UsageError(f"{self.path} has no profile {shorten(name)} (profiles: {shorten(', '.join(self.profiles))}); "
                             "drop --profile or pick one of them")
        changes = dict(self.profiles[name])
        fallback = changes.pop(FALLBACK, None)
        sweep, reproduce = {**self.sweep, **changes.pop("sweep", {})}, {**self.reproduce, **changes.pop("reproduce", {})}
        keys = {**self.keys, **_resolve_paths(changes, self.path.parent), **overrides}
        note = f"{name} profile"
        if fallback is not None and "dataset" not in overrides and not dataset_available(keys):
            missing = keys.get("dataset")
            keys = {**keys, **_resolve_paths(fallback, self.path.parent), **overrides}
            note += f"; {missing} is not available here, so it runs on {keys.get('dataset')} instead"
        else:
            missing = None
        keys["description"] = f"{keys.get('description', '')} [{note}]".strip()
        return dataclasses.replace(self, keys=keys, sweep=sweep, reproduce=reproduce, fallback=missing)


def read_recipe_file(path: str | Path) -> RecipeFile:
    """Read a YAML recipe file, or the recipe stored in a run's run.h5 (which has no sections)."""
    path = Path(path)
    if path.suffix == ".h5":
        if path.name != "run.h5":
            raise UsageError(f"{path} is not a run's run.h5; give a YAML recipe or RUN/run.h5 of a run to repeat")
        from rltx.store import read_config_yaml  # h5py: only for a run.h5, so `rltx --help` stays light
        raw = parse_yaml(read_config_yaml(path), str(path))
    else:
        check_not_special(path, "a YAML recipe file")
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
    from rltx.data import open_source  # TensorFlow: only when a dataset must be probed
    try:
        # npz images are resized when opened, so their size does not decide availability: no resize here
        size = 0 if keys.get("dataset") == "npz" else keys.get("image_size") or 0
        open_source(DataSpec.of(str(keys.get("dataset")), offline=True, data_dir=keys.get("data_dir"),
                                manual_dir=keys.get("manual_dir"), data_path=keys.get("data_path"), image_size=size))
    except UsageError:
        return False
    return True


def load_recipe(path: str | Path, overrides: tuple[str, ...] = (), profile: str | None = None) -> Recipe:
    """Read a YAML recipe (or the config stored in a run's run.h5), apply a profile and the
    `key=value` overrides (the offline fallback is decided after them), and validate."""
    return make_recipe(dict(read_recipe_file(path).profile(profile, parse_overrides(overrides)).keys))


def parse_overrides(texts: tuple[str, ...]) -> dict:
    """`--set key=value` texts as recipe keys, paths resolved against the working directory."""
    raw = dict(parse_override(text) for text in texts)
    return _resolve_paths(raw, Path.cwd())


def override_texts(overrides: dict) -> list[str]:
    """Parsed `--set` overrides as `key=value` texts that `parse_overrides` reads back to the same keys."""
    texts = []
    for name, value in overrides.items():
        try:
            texts.append(f"{name}={flow_text(value)}")
        except ValueError:
            raise UsageError(f"--set {name}: its value cannot be written back as one line of YAML (for the command "
                             "in verdict.txt); shorten it") from None
    return texts


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
