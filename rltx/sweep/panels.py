"""A finished sweep's panels (Fig. 12-15, App. B): which pre-trained / from-scratch pairs count,
the panels they fall into (downstream labels x transfer depth), and the sampled values that go
with each panel's per-group AUC differences (rltx.analysis.associations). Shared by `rltx sweep`
and `rltx reproduce` of a sweep recipe, which differ only in how they report."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from rltx import store
from rltx.analysis.associations import Association, rank_associations
from rltx.analysis.results import Result
from rltx.sweep.plan import Plan, trained_values

ASSOCIATIONS_FILE = "associations.h5"


@dataclasses.dataclass(frozen=True)
class PanelAssociations:
    panel: str          # e.g. "real labels downstream, all layers transferred"
    architecture: str
    tested: list[Association]


def counted_pairs(plan: Plan, transfer_runs, counts: Callable[[Path], bool]) -> np.ndarray:
    """Which pairs (by their transfer run, curves.h5's pairs/transfer_run) may be counted: the
    transfer run, its scratch pair and the pre-training run it came from all pass `counts` (a health
    check, rltx.health); every run of a pair is asked, so a caller can list each flagged one. Planned
    transfers without a pair (blocked behind a pre-training run that diverged) have no runs to ask."""
    sources = {run.name: run.run_dirs[0] for run in plan.runs if run.stage == "pretrain"}
    paired = [str(Path(store.text(t)).resolve()) for t in transfer_runs]
    present, counted = set(paired), set()
    for run in (r for r in plan.runs if r.stage == "transfer"):
        transfer = str(Path(run.run_dirs[0]).resolve())
        if transfer not in present:
            continue
        health = [counts(Path(d)) for d in (*run.run_dirs, *(sources[name] for name in run.after))]  # ask every run
        if all(health):
            counted.add(transfer)
    return np.array([transfer in counted for transfer in paired], dtype=bool)


def sweep_panels(arrays: dict, counted: np.ndarray):
    """(name, pairs mask) per downstream labels x transfer depth, the panels of Fig. 12-15: real
    labels first, depths in order, all last; only counted pairs."""
    labels = np.array([store.text(x) for x in arrays["pairs/labels_downstream"]])
    depths = np.array([store.text(x) for x in arrays["pairs/transfer_layers"]])
    for label in sorted(set(labels), key=lambda name: (name != "real", name)):
        for depth in sorted(set(depths[labels == label]), key=lambda d: (d == "all", int(d) if d.isdigit() else 0)):
            layers = "all layers" if depth == "all" else f"{depth} layer{'s' if depth != '1' else ''}"
            yield f"{label} labels downstream, {layers} transferred", counted & (labels == label) & (depths == depth)


def panel_associations(plan: Plan, arrays: dict, counted: np.ndarray) -> list[PanelAssociations]:
    """Per panel and architecture (their sampled keys differ: the Simple CNN's shape), the sampled
    values (plan.json's groups) ranked against the groups' mean train-AUC differences over their
    counted pairs."""
    group_of = {str(Path(run.run_dirs[0]).resolve()): run.name.rsplit("/", 1)[0]
                for run in plan.runs if run.stage == "transfer"}
    by_name = {group["name"]: group for group in plan.groups}
    plan_groups = np.array([group_of[str(Path(store.text(t)).resolve())] for t in arrays["pairs/transfer_run"]])
    differences = arrays["pairs/pretrained_train_auc"] - arrays["pairs/scratch_train_auc"]
    panels = []
    for name, cell in sweep_panels(arrays, counted):
        for architecture in sorted({by_name[group]["architecture"] for group in plan_groups[cell]}):
            groups = sorted(g for g in set(plan_groups[cell]) if by_name[g]["architecture"] == architecture)
            means = [differences[cell][plan_groups[cell] == group].mean() for group in groups]
            values = {group: trained_values(by_name[group]) for group in groups}
            keys = sorted({key for group in groups for key in values[group]})
            tested = rank_associations(means, {key: [values[g].get(key) for g in groups] for key in keys})
            panels.append(PanelAssociations(name, architecture, tested))
    return panels


def associations_result(panels: list[PanelAssociations]) -> Result:
    """Every tested value of every panel, one row each (OUT/associations.h5)."""
    rows = [(panel, association) for panel in panels for association in panel.tested]
    return Result("associations", {"panels": "pairs/labels_downstream x pairs/transfer_layers x architecture, "
                                             "counted pairs",
                                   "statistic": "Spearman rho (numbers) or Kruskal-Wallis H (categories) of "
                                                "group mean train-AUC difference; permutation p; Holm over a "
                                                "panel's values"},
                  {"panel": store.string_array(panel.panel for panel, _ in rows),
                   "architecture": store.string_array(panel.architecture for panel, _ in rows),
                   "key": store.string_array(a.key for _, a in rows),
                   "spearman": np.array([np.nan if a.categorical else a.statistic for _, a in rows]),
                   "kruskal_h": np.array([a.statistic if a.categorical else np.nan for _, a in rows]),
                   "highest": store.string_array(a.highest or "" for _, a in rows),
                   "p": np.array([a.p for _, a in rows]),
                   "holm_p": np.array([a.holm_p for _, a in rows]),
                   "groups": np.array([a.groups for _, a in rows], dtype=np.int64)})
