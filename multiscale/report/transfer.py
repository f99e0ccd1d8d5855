"""The transfer plan: a sweep plan that trains recommended mixtures (He et al.'s claim that p*
found on small models transfers to a larger one is tested by training p* there)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from multiscale.errors import InputError

RATIO_DIGITS = 6  # ratios are written to the plan rounded (the plan renormalizes them)


def transfer_plan(recs: Mapping[str, Mapping], template: Mapping, seeds: Sequence[int] | None = None) -> dict:
    """A copy of `template` (a sweep plan as a dict) whose mixtures are the recommended ones,
    one per {mixture name: recommendation} item, a recommendation being the JSON object of
    `multiscale recommend --json` (its `ratios`). With `seeds`, they replace the template's.
    The plan is named 'cpu-study-<names joined by +>[-seeds<s1-s2...>]'."""
    if not recs:
        raise InputError("transfer-plan needs at least one NAME=REC.json")
    plan = {k: v for k, v in template.items() if k not in ("mixtures", "name")}
    plan["name"] = "cpu-study-" + "+".join(recs) + (f"-seeds{'-'.join(map(str, seeds))}" if seeds else "")
    if seeds:
        plan["seeds"] = [int(s) for s in seeds]
    plan["mixtures"] = []
    for name, rec in recs.items():
        if not isinstance(rec, Mapping) or "ratios" not in rec:
            raise InputError(f"recommendation for {name!r} has no 'ratios' (is it `multiscale recommend --json` "
                             "output?)")
        ratios = {f: round(float(p), RATIO_DIGITS) for f, p in rec["ratios"].items()}
        plan["mixtures"].append({"name": name, "ratios": ratios, "normalize": True})
    return plan
