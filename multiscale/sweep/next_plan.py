"""Sweep plans and the next runs (docs/design.md, "Active design"): a plan's runs as candidates
(`from_plan`), and the runs `multiscale next` chose written as a sweep plan.

Each chosen run is one explicit mixture entry named ``next<rank>-<label>`` and restricted to its
preset and budget (`presets:`, `tokens:`), so the plan expands to exactly the chosen runs, in
rank order within each (preset, budget). The plan's `train:`, `corpus:` and `families:` come from
a template plan when one is given (the candidates' plan, or the `like` plan), so the new runs train like
the fitted ones. The plan is validated by `SweepPlan.from_dict` before it is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from multiscale.decisions.candidates import Candidate, dedupe, preset_sizes
from multiscale.errors import InputError
from multiscale.fileio import atomic_write_text
from multiscale.sweep.plan import SweepPlan
from multiscale.sweep.runner import plan_runs

_NOT_LABEL = re.compile(r"[^A-Za-z0-9._+-]")


def plan_dict(result, *, template: SweepPlan | None = None, seed: int = 0, name: str = "next") -> dict[str, Any]:
    """The plan of `result.chosen` (a `NextResult`) as a YAML-ready mapping, validated."""
    if not result.chosen:
        raise InputError("no run was chosen, so there is no plan to write")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    presets = list(dict.fromkeys(c["preset"] for c in result.chosen))
    tokens = sorted({int(c["D"]) for c in result.chosen})
    out: dict[str, Any] = {"name": name}
    if template is not None and template.corpus is not None:
        out["corpus"] = template.corpus
    out["families"] = list(result.families)
    if template is not None and template.families:
        missing = [f for f in result.families if f not in template.families]
        if missing:
            raise InputError(f"the template plan has no families {missing}; its families: "
                             f"{list(template.families)}")
        out["families"] = list(template.families)
    out.update({"presets": presets, "tokens": tokens, "seeds": [seed]})
    if template is not None and template.train:
        out["train"] = {k: _plain(v) for k, v in template.train}
    out["mixtures"] = [{"name": _NOT_LABEL.sub("_", f"next{c['rank']}-{c['label']}"), "normalize": True,
                        "ratios": {f: round(float(p), 6) for f, p in c["ratios"].items()},
                        "presets": [c["preset"]], "tokens": [int(c["D"])]} for c in result.chosen]
    SweepPlan.from_dict(out)  # a PlanError here is a bug of this module or of the template
    return out


def _plain(v: Any) -> Any:
    """A frozen plan value (tuples of pairs) back to plain YAML lists and mappings."""
    if isinstance(v, tuple) and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in v) and v:
        return {k: _plain(x) for k, x in v}
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def header(result, command: str | None) -> str:
    """The plan file's comment lines: what chose the runs and for what target."""
    lines = [f"Chosen by `multiscale next`{': ' + command if command else ''}",
             f"for p* at N = {result.N:.4g}, D = {result.D:.4g} (law {result.law}, {result.objective} objective, "
             f"criterion {result.criterion});",
             f"{len(result.chosen)} runs, {sum(c['flops'] for c in result.chosen):.3g} FLOPs (6 N D) of "
             f"{result.budget_flops:.3g}; ranks in the mixture names."]
    return "".join(f"# {line}\n" for line in lines)


def write_plan(path, plan: dict[str, Any], comment: str = "") -> None:
    """Writes `plan` as YAML (atomically), after `comment` lines."""
    import yaml

    atomic_write_text(path, comment + yaml.safe_dump(plan, sort_keys=False, default_flow_style=None, width=120))


def from_plan(plan, families: Sequence[str], corpus=None) -> list[Candidate]:
    """Every run a sweep plan expands to (against `corpus` when given, else the plan's families),
    as candidates; the plan's families must be the decision families."""
    runs = plan_runs(plan, corpus)
    sizes = preset_sizes()
    out = []
    for r in runs:
        unknown = sorted(set(r.ratio_dict) - set(families))
        if unknown:
            raise InputError(f"candidates: run {r.run_id} has families {unknown} that the fit does not "
                             f"have ({list(families)})")
        ratios = tuple((f, float(r.ratio_dict.get(f, 0.0))) for f in families)
        out.append(Candidate(r.preset, sizes[r.preset], int(r.tokens), r.mixture, ratios))
    return dedupe(out)
