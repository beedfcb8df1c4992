"""A click group whose commands come from modules imported on first use, so that `rltx --help`
and the other commands do not pay for TensorFlow- or matplotlib-heavy imports."""
from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """Each module in `command_modules` defines `add_commands(group)`; all are imported together
    the first time the group lists or looks up a command."""

    def __init__(self, *args, command_modules: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.command_modules, self._loaded = command_modules, False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self.command_modules:
                importlib.import_module(module).add_commands(self)

    def list_commands(self, context):
        self._load()
        return super().list_commands(context)

    def get_command(self, context, name):
        self._load()
        return super().get_command(context, name)
