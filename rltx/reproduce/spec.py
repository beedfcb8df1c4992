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
      trajectory: true            # activations: also the activation trajectory across the switch (Fig. 24)
      variants:                   # transfer, activations: the downstream runs, one curve each
        - name: pretrained
          from: pretrained        # pretrained (the seed's pre-training run) | scratch
          set: {rescaling: l2}    # recipe keys of this variant
          baseline: from scratch  # compare with this variant ...
          expect: positive        # ... where the paper saw positive (faster) or negative transfer
        - {name: from scratch, from: scratch}
"""
from __future__ import annotations

import dataclasses

from rltx.config import FIELDS, check_section
from rltx.errors import UsageError

PIPELINES = ("alignment", "transfer", "construct-table", "activations", "sweep")
SHAPES = ("rise-then-fall", "rising", "falling")
ENTRIES = ("pipeline", "paper", "seeds", "layer", "expect_ratio", "expect_shape", "expect", "trajectory", "variants")


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    source: str = "pretrained"
    keys: dict = dataclasses.field(default_factory=dict)
    baseline: str | None = None
    expect: str | None = None


@dataclasses.dataclass(frozen=True)
class ReproduceSpec:
    pipeline: str
    paper: str = ""
    seeds: int = 1
    layer: str | None = None
    expect_ratio: float | None = None
    expect_shape: str | None = None
    expect: str | None = None
    trajectory: bool = False
    variants: tuple[Variant, ...] = ()

    @classmethod
    def from_section(cls, section: dict, where: str) -> "ReproduceSpec":
        check_section(section, "reproduce", ENTRIES, where, "recipes/fig5.yaml")
        values = dict(section)
        values["variants"] = tuple(_variant(v, where) for v in section.get("variants") or ())
        spec = cls(**values)
        spec.check(where)
        return spec

    def check(self, where: str) -> None:
        def fail(problem: str):
            raise UsageError(f"{where}: reproduce {problem}")
        if self.pipeline not in PIPELINES:
            fail(f"pipeline {self.pipeline!r} is not one of {', '.join(PIPELINES)}")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            fail("seeds must be a positive integer")
        if self.expect_shape is not None and self.expect_shape not in SHAPES:
            fail(f"expect_shape must be one of {', '.join(SHAPES)}")
        if self.expect is not None and self.expect not in ("better", "worse"):
            fail("expect must be better or worse (constructed layers vs none)")
        if self.pipeline in ("transfer", "activations") and not self.variants:
            fail(f"pipeline {self.pipeline} needs variants (the downstream runs)")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            fail("variant names must be distinct")
        for variant in self.variants:
            if variant.baseline is not None and variant.baseline not in names:
                fail(f"variant {variant.name!r} has baseline {variant.baseline!r}, which is not a variant")


def _variant(raw, where: str) -> Variant:
    if not isinstance(raw, dict) or "name" not in raw:
        raise UsageError(f"{where}: every reproduce variant is a mapping with a name, e.g. {{name: pretrained}}")
    unknown = sorted(set(raw) - {"name", "from", "set", "baseline", "expect"})
    if unknown:
        raise UsageError(f"{where}: variant {raw['name']!r} has unknown entries {', '.join(unknown)}")
    variant = Variant(str(raw["name"]), raw.get("from", "pretrained"), dict(raw.get("set") or {}),
                      raw.get("baseline"), raw.get("expect"))
    if variant.source not in ("pretrained", "scratch"):
        raise UsageError(f"{where}: variant {variant.name!r} has from: {variant.source}; use pretrained or scratch")
    if variant.expect not in (None, "positive", "negative"):
        raise UsageError(f"{where}: variant {variant.name!r} has expect: {variant.expect}; use positive or negative")
    bad = [k for k in variant.keys if k not in FIELDS]
    if bad:
        raise UsageError(f"{where}: variant {variant.name!r} sets unknown recipe keys {', '.join(bad)}")
    return variant
