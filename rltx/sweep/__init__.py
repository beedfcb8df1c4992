"""`rltx sweep`: plan an App. B experiment (rltx.sweep.plan), run it locally (rltx.sweep.execute) or
on a Ray cluster (rltx.sweep.ray_executor), and summarise its groups with `analyze curves`."""
from __future__ import annotations

from pathlib import Path

from rltx.analysis.results import Result
from rltx.sweep.execute import Outcome, run_local, run_status
from rltx.sweep.plan import Plan, PlannedRun, SweepSpec, expand, read_plan, write_plan

SUMMARY_FILE = "curves.h5"

__all__ = ["Outcome", "Plan", "PlannedRun", "SweepSpec", "expand", "read_plan", "run_local", "summarize",
           "write_plan"]


def summarize(plan: Plan) -> Result | None:
    """`analyze curves` over the completed downstream runs: AUCs per group of seeds and the
    pre-trained / from-scratch pairs of Figs. 12-15, stored in OUT/curves.h5 (None: no run done)."""
    from rltx.analysis.curves import analyze_curves
    from rltx.analysis.results import write_result
    done = [d for d in plan.downstream_dirs() if run_status(d) == "completed"]
    if not done:
        return None
    result = analyze_curves(done)
    write_result(result, Path(plan.out) / SUMMARY_FILE)
    return result
