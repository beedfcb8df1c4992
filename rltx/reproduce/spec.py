"""The `reproduce:` section of a recipe file: which pipeline turns the recipe into its figure or
table, and what the paper reports, so the run can end with a verdict.

    reproduce:
      pipeline: transfer          # alignment | transfer | construct-table | activations | sweep
      paper: "pre-trained trains faster than from scratch (Fig. 5 LEFT)"
      seeds: 12                   # runs with seeds seed, seed+1, ... (alignment, transfer, activations)
      layer: conv1                # alignment: the analysed layer [default: the first]
      expect_ratio: 5             # alignment: random-basis / data-basis misalignment at least this
      expect_shape: rise-then-fall  # alignment: the shape of f(sigma) (rise-then-fall, rising, falling)
      expect: better              # construct-table: constructed layers vs none (better | worse)
      expect_sets: [[1, 2], [1, 2, 3]]  # construct-table: the sets `expect` is judged on [default: all]
      trajectory: true            # activations: also the activation trajectory across the switch (Fig. 24)
      variants:                   # transfer, activations: the downstream runs, one curve each
        - name: pretrained
          from: pretrained        # pretrained (the seed's pre-training run) | scratch | constructed
          set: {rescaling: l2}    # recipe keys of this variant
          baseline: from scratch  # compare with this variant ...
          expect: positive        # ... where the paper saw positive (faster) or negative transfer, or the
                                  #     two curves level (Fig. 5: covariance vs pretrained conv, no bias)
        - {name: from scratch, from: scratch}
        - name: constructed {1, 2, 3}
          from: constructed       # conv layers built from the data alone (Sec. 2.5, rltx.construct), the
          layers: [1, 2, 3]       # others fresh: Table 7's caption compares them with transferred layers
"""
from __future__ import annotations

import dataclasses
import math

from rltx.config import FIELDS, check_section
from rltx.errors import UsageError, clip, shorten

PIPELINES = ("alignment", "transfer", "construct-table", "activations", "sweep")
SOURCES = ("pretrained", "scratch", "constructed")  # where a variant's first layers come from
SHAPES = ("rise-then-fall", "rising", "falling")
MAX_SEEDS = 10_000  # far beyond the paper's 12 (Fig. 5, A.9)
# a transfer variant's `expect:` -> the transfer rule's direction (rltx.reproduce.verdicts) that agrees with it;
# level: the paper saw the two curves together (Fig. 5, Sec. 2.4: "within measurement error")
EXPECTED_DIRECTIONS = {"positive": "positive", "negative": "negative", "level": "no clear difference"}
ENTRIES = ("pipeline", "paper", "seeds", "layer", "expect_ratio", "expect_shape", "expect", "expect_sets",
           "trajectory", "variants")


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    source: str = "pretrained"
    keys: dict = dataclasses.field(default_factory=dict)
    baseline: str | None = None
    expect: str | None = None
    layers: tuple[int, ...] = ()  # from: constructed: the conv layers built (1-based, as Table 1's columns)

    @property
    def expected_direction(self) -> str | None:
        return EXPECTED_DIRECTIONS.get(self.expect)


@dataclasses.dataclass(frozen=True)
class ReproduceSpec:
    pipeline: str
    paper: str = ""
    seeds: int = 1
    layer: str | None = None
    expect_ratio: float | None = None
    expect_shape: str | None = None
    expect: str | None = None
    expect_sets: list | None = None
    trajectory: bool = False
    variants: tuple[Variant, ...] = ()

    @classmethod
    def from_section(cls, section: dict, where: str) -> "ReproduceSpec":
        check_section(section, "reproduce", ENTRIES, where, "recipes/fig5.yaml")
        values = dict(section)
        variants = section.get("variants") or []
        if not isinstance(variants, list):
            raise UsageError(f"{where}: reproduce variants must be a list of `- name: ...` entries")
        values["variants"] = tuple(_variant(v, where) for v in variants)
        spec = cls(**values)
        spec.check(where)
        return spec

    def check(self, where: str) -> None:
        def fail(problem: str):
            raise UsageError(f"{where}: reproduce {problem}")
        if self.pipeline not in PIPELINES:
            fail(f"pipeline {shorten(self.pipeline)} is not one of {', '.join(PIPELINES)}")
        if not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or not 1 <= self.seeds <= MAX_SEEDS:
            fail(f"seeds must be an integer from 1 to {MAX_SEEDS}")
        ratio = self.expect_ratio
        if ratio is not None and not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool)
                                      and math.isfinite(ratio) and ratio > 0):
            fail("expect_ratio must be a positive number, e.g. 5")
        if self.expect_shape is not None and self.expect_shape not in SHAPES:
            fail(f"expect_shape must be one of {', '.join(SHAPES)}")
        if self.expect is not None and self.expect not in ("better", "worse"):
            fail("expect must be better or worse (constructed layers vs none)")
        sets = self.expect_sets
        if sets is not None and not (isinstance(sets, list) and sets and all(
                isinstance(layers, list) and layers and all(isinstance(k, int) and not isinstance(k, bool) for k in layers)
                for layers in sets)):
            fail("expect_sets must be a list of constructed layer sets, e.g. [[1, 2], [1, 2, 3]]")
        if self.pipeline in ("transfer", "activations") and not self.variants:
            fail(f"pipeline {self.pipeline} needs variants (the downstream runs)")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            fail("variant names must be distinct")
        for variant in self.variants:
            if variant.baseline is not None and variant.baseline not in names:
                fail(f"variant {shorten(variant.name)} has baseline {shorten(variant.baseline)}, which is not a variant")

    def judged_sets(self, layer_sets: list) -> list[int] | None:
        """The columns of a construct-table (1: the first constructed set of `layer_sets`) that
        `expect` is judged on; None: all of them. Every set is compared with the first, which must be
        the standard initialisation []."""
        if not layer_sets or list(layer_sets[0]) != []:
            raise UsageError(f"table_layer_sets {layer_sets} does not start with []; reproduce compares every set "
                             "with the standard initialisation, so put [] first")
        if self.expect_sets is None:
            return None
        missing = [layers for layers in self.expect_sets if layers not in layer_sets]
        if missing:
            raise UsageError(f"reproduce expect_sets names {missing[0]}, which is not a constructed set of "
                             f"table_layer_sets {layer_sets}; name sets of that list")
        return [layer_sets.index(layers) for layers in self.expect_sets]


def _constructed_layers(raw: dict, name: str, where: str) -> tuple[int, ...]:
    """A `from: constructed` variant's `layers`, the conv layers built from the data (1-based); no other
    variant takes them."""
    layers = raw.get("layers")
    if raw.get("from") != "constructed":
        if layers is not None:
            raise UsageError(f"{where}: variant {name} has layers, which only a variant from: constructed takes; "
                             "drop layers or set from: constructed")
        return ()
    if not (isinstance(layers, list) and layers and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1
                                                         for k in layers)):
        raise UsageError(f"{where}: variant {name} has layers: {shorten(layers)}; from: constructed needs the conv "
                         "layers to build, numbers from 1, e.g. layers: [1, 2, 3]")
    return tuple(layers)


def _variant(raw, where: str) -> Variant:
    if not isinstance(raw, dict) or "name" not in raw:
        raise UsageError(f"{where}: every reproduce variant is a mapping with a name, e.g. {{name: pretrained}}")
    name = shorten(raw["name"])
    unknown = sorted(map(str, set(raw) - {"name", "from", "set", "baseline", "expect", "layers"}))
    if unknown:
        raise UsageError(f"{where}: variant {name} has unknown entries {clip(', '.join(unknown))}")
    if not isinstance(raw.get("set") or {}, dict):
        raise UsageError(f"{where}: variant {name} has set: {shorten(raw['set'])}; give a mapping of recipe keys, "
                         "e.g. {rescaling: l2}")
    variant = Variant(str(raw["name"]), raw.get("from", "pretrained"), dict(raw.get("set") or {}),
                      raw.get("baseline"), raw.get("expect"), _constructed_layers(raw, name, where))
    if variant.source not in SOURCES:
        raise UsageError(f"{where}: variant {name} has from: {shorten(variant.source)}; use {', '.join(SOURCES[:-1])} "
                         f"or {SOURCES[-1]}")
    if variant.expect not in (None, *EXPECTED_DIRECTIONS):
        raise UsageError(f"{where}: variant {name} has expect: {shorten(variant.expect)}; use positive, negative or level")
    bad = [str(k) for k in variant.keys if k not in FIELDS]
    if bad:
        raise UsageError(f"{where}: variant {name} sets unknown recipe keys {clip(', '.join(bad))}")
    return variant
