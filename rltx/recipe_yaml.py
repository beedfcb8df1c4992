"""Untrusted YAML (recipe files, --set values) read into plain data within bounds, or one UsageError.

Safe loading only (no Python objects), and nothing a hostile text could blow up: at most MAX_BYTES
of UTF-8, MAX_DEPTH levels of nesting (Python's recursion would fail first), MAX_VALUES values with
aliases expanded (a chain of aliases multiplies them: the "billion laughs"), no recursive aliases,
and no key given twice in one mapping (the later one would silently win).
"""
from __future__ import annotations

import re

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.scanner import ScannerError
from yaml.nodes import MappingNode, SequenceNode

from rltx.errors import UsageError, shorten

MAX_BYTES = 64 * 1024  # ten times the largest recipe of recipes/
MAX_DEPTH = 64
MAX_VALUES = 10_000  # reading this many takes about half a second
_MERGE = "tag:yaml.org,2002:merge"


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._sizes = {}  # id(node) -> its number of values with aliases expanded

    def fetch_flow_collection_start(self, token_class):  # the scanner's [ and {, checked before
        if self.flow_level >= MAX_DEPTH:  # its look-ahead over open brackets grows quadratically
            raise ScannerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def add_indent(self, column):  # the scanner's block nesting (indentation, `- - -`)
        if len(self.indents) >= MAX_DEPTH:
            raise ScannerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", self.get_mark())
        return super().add_indent(column)

    def compose_node(self, parent, index):
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        alias = self.check_event(AliasEvent)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if alias:  # the anchored node itself: counted already, unless it is still being read
            if id(node) not in self._sizes:
                raise ComposerError(None, None, "found a recursive alias (a value inside itself)", node.start_mark)
            return node
        children = ([c for pair in node.value for c in pair] if isinstance(node, MappingNode)
                    else node.value if isinstance(node, SequenceNode) else [])
        size = 1 + sum(self._sizes[id(child)] for child in children)
        if size > MAX_VALUES:
            raise ComposerError(None, None, f"more than {MAX_VALUES} values with aliases expanded",
                                node.start_mark)
        self._sizes[id(node)] = size
        return node

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, ArithmeticError) as error:  # e.g. `!!int x`, the date 2020-13-45
            raise ConstructorError(None, None, f"cannot read {shorten(node.value)} as {node.tag.rpartition(':')[2]} "
                                   f"({shorten(str(error))})", node.start_mark) from None

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value if isinstance(node, MappingNode) else ():
            if key_node.tag == _MERGE:  # `<<: *base` merges keys that later ones may override
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable: the base class reports it
                continue
            if duplicate:
                raise ConstructorError("while reading a mapping", node.start_mark,
                                       f"found the key {shorten(key)} twice", key_node.start_mark)
        return super().construct_mapping(node, deep)


# PyYAML reads YAML 1.1, whose floats need a dot, so `1e-4` would be the string "1e-4" and a learning rate
# written that way refused. YAML 1.2 (and every researcher) reads it as a number.
_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789."))


def decode(data: bytes, where: str) -> str:
    """UTF-8 text (a BOM is allowed) of at most MAX_BYTES, or a UsageError naming the fix."""
    if len(data) > MAX_BYTES:
        raise UsageError(f"{where} is {len(data)} bytes; a recipe has at most {MAX_BYTES}: shorten it")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UsageError(f"{where} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
                         "save it as UTF-8") from None


def parse_yaml(text: str, where: str):
    """The data of YAML `text`; `where` names it in messages (a file, or `--set KEY`)."""
    if len(text) > MAX_BYTES:
        raise UsageError(f"{where} has {len(text)} characters; a recipe value has at most {MAX_BYTES}: shorten it")
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader refuses control characters at once
        return loader.get_single_data()
    except yaml.reader.ReaderError as error:
        raise UsageError(f"{where}: character #x{error.character:04x} at position {error.position} is not "
                         "allowed in YAML; remove it") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        problem = str(getattr(error, "problem", None) or "malformed YAML")
        problem = problem if len(problem) <= 160 else problem[:157] + "..."
        raise UsageError(f"{where}: {problem}{line}; fix the YAML syntax there") from None
    finally:
        if loader is not None:
            loader.dispose()


def flow_text(value) -> str:
    """`value` as one line of YAML that `parse_yaml` reads back as `value` (a --set value to print):
    plain, else single-quoted (a string rltx reads as a number, 1e3: the float resolver above), else
    double-quoted (line breaks escaped). ValueError when no style does (a value too long to read back)."""
    for style in (None, "'", '"'):
        text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), allow_unicode=True,
                              default_style=style).removesuffix("\n...\n").strip()
        if "\n" not in text and _reads_back(text, value):
            return text
    raise ValueError("no one line of YAML reads back as this value")


def _reads_back(text: str, value) -> bool:
    try:
        read = parse_yaml(text, "a value")
    except UsageError:
        return False
    return yaml.safe_dump(read) == yaml.safe_dump(value)  # equal, NaN included
