"""Fit results (point and Bayesian), their summaries, and saving/loading them.

A saved fit is a folder: ``fit.json`` (law, families, options, point values or a summary)
and, for a Bayesian fit, ``posterior.nc`` (the ArviZ InferenceData as netCDF).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiscale.laws.forms import Law, get_law

FIT_JSON = "fit.json"
POSTERIOR_NC = "posterior.nc"
LOSS_UNITS = "nats/token"


@dataclass
class Fit:
    """Common part of a fitted law.

    Attributes:
      law: the law form.
      families: family names, in the order of the F axis.
      shared: exponents shared across families.
      draws: natural parameters, ``name -> (S, F)`` float64 (S = 1 for a point fit).
      N_ref, D_ref: geometric-mean N and D of the fitted runs (the ratio law's (N, D)).
      n_runs: rows per family used in the fit.
    """

    law: Law
    families: tuple[str, ...]
    shared: tuple[str, ...]
    draws: dict[str, np.ndarray]
    N_ref: float
    D_ref: float
    n_runs: dict[str, int]

    method = "?"

    @property
    def n_draws(self) -> int:
        return int(next(iter(self.draws.values())).shape[0])

    def family_index(self, family: str) -> int:
        try:
            return self.families.index(family)
        except ValueError:
            raise KeyError(f"family {family!r} is not in the fit; it has {list(self.families)}") from None

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``family -> parameter -> {median, q05, q95}`` (all equal for a point fit)."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for j, fam in enumerate(self.families):
            out[fam] = {}
            for name in self.law.params:
                v = self.draws[name][:, j]
                out[fam][name] = {"median": float(np.median(v)), "q05": float(np.quantile(v, 0.05)),
                                  "q95": float(np.quantile(v, 0.95))}
        return out

    def _meta(self) -> dict[str, Any]:
        return {"law": self.law.name, "law_form": self.law.doc, "method": self.method,
                "families": list(self.families), "shared": list(self.shared),
                "N_ref": self.N_ref, "D_ref": self.D_ref, "n_runs": dict(self.n_runs),
                "loss_units": LOSS_UNITS}

    def save(self, directory: str | os.PathLike) -> Path:
        raise NotImplementedError


@dataclass
class PointFit(Fit):
    """Hoffmann et al. (2022) approach-3 fit: one value per family and parameter.

    Attributes (beyond `Fit`):
      objective: final Huber objective per family (for shared fits, the joint objective,
        repeated), in the units of log-loss.
      start: the winning start of the grid, per family, as ``raw name -> value``.
      grad_norm: gradient norm at the solution, per family.
      search: how the start grid was searched (``screen_iters``, ``keep``, and the families
        whose every start ran to the end, see `multiscale.laws.point`).
    """

    objective: dict[str, float] = field(default_factory=dict)
    start: dict[str, dict[str, float]] = field(default_factory=dict)
    grad_norm: dict[str, float] = field(default_factory=dict)
    n_starts: int = 0
    seconds: float = 0.0
    search: dict[str, Any] = field(default_factory=dict)

    method = "lbfgs"

    def params(self) -> dict[str, dict[str, float]]:
        """``family -> parameter -> value``."""
        return {fam: {n: float(self.draws[n][0, j]) for n in self.law.params}
                for j, fam in enumerate(self.families)}

    def to_dict(self) -> dict[str, Any]:
        return {**self._meta(), "params": self.params(), "objective": self.objective,
                "start": self.start, "grad_norm": self.grad_norm, "n_starts": self.n_starts,
                "seconds": self.seconds, "search": self.search}

    def __str__(self) -> str:
        lines = [f"point fit (L-BFGS, Huber delta 1e-3, {self.n_starts} starts) of law "
                 f"{self.law.name}: L = {self.law.doc}; loss in {LOSS_UNITS}"]
        head = "family".ljust(16) + "".join(n.rjust(12) for n in self.law.params) + "  runs"
        lines.append(head)
        for fam, ps in self.params().items():
            lines.append(fam[:16].ljust(16) + "".join(f"{ps[n]:12.4g}" for n in self.law.params)
                         + f"  {self.n_runs.get(fam, 0):4d}")
        if self.shared:
            lines.append(f"shared across families: {', '.join(self.shared)}")
        return "\n".join(lines)

    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(directory / FIT_JSON, self.to_dict())
        return directory


@dataclass
class BayesFit(Fit):
    """numpyro NUTS posterior of the law's parameters.

    Attributes (beyond `Fit`):
      idata: ArviZ InferenceData (posterior groups per family/parameter, sample stats).
      diagnostics: ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``, ...
      warnings: human-readable messages saying what to do when diagnostics fail.
    """

    idata: Any = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    method = "nuts"

    def to_dict(self) -> dict[str, Any]:
        return {**self._meta(), "summary": self.summary(), "diagnostics": self.diagnostics,
                "warnings": list(self.warnings), "options": self.options,
                "n_draws": self.n_draws}

    def __str__(self) -> str:
        d = self.diagnostics
        lines = [f"Bayesian fit (NUTS, {self.options.get('chains')} chains x "
                 f"{self.options.get('draws')} draws) of law {self.law.name}: L = {self.law.doc}; "
                 f"loss in {LOSS_UNITS}",
                 f"max R-hat {d.get('max_rhat', float('nan')):.4f}, min bulk ESS "
                 f"{d.get('min_ess_bulk', float('nan')):.0f}, divergences {d.get('divergences', 0)}, "
                 f"{d.get('seconds', float('nan')):.1f} s",
                 "family".ljust(16) + "".join(n.rjust(26) for n in self.law.params)]
        for fam, ps in self.summary().items():
            cells = "".join(
                f"{ps[n]['median']:.4g} [{ps[n]['q05']:.3g},{ps[n]['q95']:.3g}]".rjust(26)
                for n in self.law.params)
            lines.append(fam[:16].ljust(16) + cells)
        lines.append("(median [5%, 95%])")
        if self.shared:
            lines.append(f"shared across families: {', '.join(self.shared)}")
        lines.extend(f"WARNING: {w}" for w in self.warnings)
        return "\n".join(lines)

    def save(self, directory: str | os.PathLike) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (POSTERIOR_NC + ".tmp")
        self.idata.to_netcdf(str(tmp))
        os.replace(tmp, directory / POSTERIOR_NC)
        _write_json_atomic(directory / FIT_JSON, self.to_dict())
        return directory


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def load_fit(directory: str | os.PathLike) -> Fit:
    """Load a fit saved by ``PointFit.save`` or ``BayesFit.save``."""
    directory = Path(directory)
    meta_path = directory / FIT_JSON
    if not meta_path.exists():
        raise FileNotFoundError(f"{str(directory)!r} is not a saved fit (no {FIT_JSON})")
    meta = json.loads(meta_path.read_text())
    law = get_law(meta["law"])
    families = tuple(meta["families"])
    common = dict(law=law, families=families, shared=tuple(meta["shared"]),
                  N_ref=float(meta["N_ref"]), D_ref=float(meta["D_ref"]),
                  n_runs={k: int(v) for k, v in meta["n_runs"].items()})
    if meta["method"] == "lbfgs":
        draws = {n: np.array([[meta["params"][f][n] for f in families]], dtype=float)
                 for n in law.params}
        return PointFit(draws=draws, objective=meta.get("objective", {}),
                        start=meta.get("start", {}), grad_norm=meta.get("grad_norm", {}),
                        n_starts=int(meta.get("n_starts", 0)), seconds=float(meta.get("seconds", 0)),
                        search=meta.get("search", {}), **common)
    if meta["method"] == "nuts":
        import arviz as az

        nc = directory / POSTERIOR_NC
        if not nc.exists():
            raise FileNotFoundError(f"{str(directory)!r} has no {POSTERIOR_NC}")
        idata = az.from_netcdf(str(nc))
        draws = draws_from_idata(idata, law, families)
        return BayesFit(draws=draws, idata=idata, diagnostics=meta.get("diagnostics", {}),
                        warnings=meta.get("warnings", []), options=meta.get("options", {}),
                        **common)
    raise ValueError(f"{meta_path}: unknown fit method {meta['method']!r}")


def draws_from_idata(idata, law: Law, families) -> dict[str, np.ndarray]:
    """``name -> (chains * draws, F)`` from the posterior group (variables ``<name>``, dims
    chain, draw, family)."""
    post = idata.posterior
    out = {}
    for name in law.params:
        v = np.asarray(post[name].transpose("chain", "draw", "family").values, dtype=float)
        out[name] = v.reshape(-1, v.shape[-1])
        if out[name].shape[1] != len(families):
            raise ValueError(f"posterior variable {name!r} has {out[name].shape[1]} families, "
                             f"expected {len(families)}")
    return out
