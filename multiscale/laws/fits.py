"""Fit results (point and Bayesian), their summaries, and saving/loading them.

A saved fit is a folder: ``fit.json`` (law, families, options, point values or a summary)
and, for a Bayesian fit, ``posterior.nc`` (the ArviZ InferenceData as netCDF). ``fit.json``
carries its ``format`` and ``checksums``: the SHA-256 of its own payload (every other key, as
canonical JSON: sorted keys, no spaces) and of ``posterior.nc``'s bytes. `load_fit` checks
them, and the types and finiteness of every value it uses, and refuses a damaged fit (or one
without them) with `DamagedFileError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiscale.errors import DamagedFileError, InputError, MissingFileError, UnidentifiedWarning
from multiscale.fileio import json_default, read_json, sha256_bytes, sha256_file, write_json
from multiscale.laws.forms import LAWS, Law
from multiscale.laws.noise import SIZE_OFFSET, NoiseSpec
from multiscale.laws.summary import interval

FIT_JSON = "fit.json"
POSTERIOR_NC = "posterior.nc"
LOSS_UNITS = "nats/token"
FORMAT = 2  # the "format" of fit.json; load_fit reads this one only
METHODS = ("lbfgs", "nuts")


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
      mixture_families: the M families of the mixture (the second axis of a matrix parameter,
        ``draws["tau"]`` of shape (S, F, M)); empty for laws without matrix parameters.
      unique_tokens: the unique tokens U per family that the fit saw (the largest per family;
        families without one omitted): the default U of a prediction or recommendation, and the
        default available tokens of a recommendation.
      identifiability: one line per family whose parameters the table cannot pin down
        (`multiscale.laws.identifiability`), repeated as `UnidentifiedWarning`s wherever the fit
        is used (`warn_unidentified`).
    """

    law: Law
    families: tuple[str, ...]
    shared: tuple[str, ...]
    draws: dict[str, np.ndarray]
    N_ref: float
    D_ref: float
    n_runs: dict[str, int]
    mixture_families: tuple[str, ...] = ()
    unique_tokens: dict[str, float] = field(default_factory=dict)
    identifiability: list[str] = field(default_factory=list)

    method = "?"

    def warn_unidentified(self, stacklevel: int = 3) -> None:
        """An `UnidentifiedWarning` per line of `identifiability`."""
        for line in self.identifiability:
            warnings.warn(f"law {self.law.name!r}, {line}", UnidentifiedWarning, stacklevel=stacklevel)

    @property
    def n_draws(self) -> int:
        return int(next(iter(self.draws.values())).shape[0])

    def family_index(self, family: str) -> int:
        try:
            return self.families.index(family)
        except ValueError:
            raise InputError(f"family {family!r} is not in the fit; it has {list(self.families)}") from None

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``family -> parameter -> {median, q05, q95}`` (all equal for a point fit)."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for j, fam in enumerate(self.families):
            out[fam] = {name: interval(self.draws[name][:, j]) for name in self.law.params}
            for name in self.law.matrix:  # family -> matrix parameter -> mixture family -> interval
                out[fam][name] = {g: interval(self.draws[name][:, j, m])
                                  for m, g in enumerate(self.mixture_families)}
        return out

    def _meta(self) -> dict[str, Any]:
        meta = {"law": self.law.name, "law_form": self.law.doc, "method": self.method,
                "families": list(self.families), "shared": list(self.shared),
                "N_ref": self.N_ref, "D_ref": self.D_ref, "n_runs": dict(self.n_runs),
                "loss_units": LOSS_UNITS, "identifiability": list(self.identifiability)}
        if self.mixture_families:
            meta["mixture_families"] = list(self.mixture_families)
        if self.unique_tokens:
            meta["unique_tokens"] = dict(self.unique_tokens)
        return meta

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
        out = {fam: {n: float(self.draws[n][0, j]) for n in self.law.params}
               for j, fam in enumerate(self.families)}
        for j, fam in enumerate(self.families):
            for n in self.law.matrix:
                out[fam][n] = {g: float(self.draws[n][0, j, m]) for m, g in enumerate(self.mixture_families)}
        return out

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
        """Writes ``fit.json`` (with its checksum) into `directory` and checks that it loads back;
        returns the folder. A fit `load_fit` would refuse (see `check_savable`) is not saved."""
        check_savable(self.draws, self.families)
        directory = check_fit_dir(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_fit_json(directory, self.to_dict(), {})
        return _loads_back(directory)


@dataclass
class BayesFit(Fit):
    """numpyro NUTS posterior of the law's parameters.

    Attributes (beyond `Fit`):
      idata: ArviZ InferenceData (posterior groups per family/parameter, sample stats).
      diagnostics: ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``, ...
      warnings: human-readable messages saying what to do when diagnostics fail.
      noise: the noise model (`multiscale.laws.noise`), saved in ``options["noise"]``; the
        posterior holds ``sigma`` and the model's slopes, or its size offsets and their sd.
    """

    idata: Any = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    extrapolation: dict[str, Any] = field(default_factory=dict)  # multiscale.laws.extrapolation
    noise: NoiseSpec = field(default_factory=lambda: NoiseSpec("constant"))

    method = "nuts"

    def to_dict(self) -> dict[str, Any]:
        return {**self._meta(), "summary": self.summary(), "diagnostics": self.diagnostics,
                "warnings": list(self.warnings),
                "options": {**self.options, "noise": self.noise.to_options(self.families)},
                "n_draws": self.n_draws, "extrapolation": self.extrapolation}

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
        """Writes ``posterior.nc`` (atomically) and then ``fit.json`` with the checksums of both;
        returns the folder, after checking that it loads back (`check_savable` first)."""
        check_savable(self.draws, self.families)
        directory = check_fit_dir(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{POSTERIOR_NC}.tmp-{os.getpid()}"
        try:
            self.idata.to_netcdf(str(tmp))
            nc_sha = sha256_file(tmp)
            os.replace(tmp, directory / POSTERIOR_NC)
        finally:
            if tmp.exists():
                tmp.unlink()
        _write_fit_json(directory, self.to_dict(), {POSTERIOR_NC: nc_sha})
        return _loads_back(directory)


# ------------------------------------------------------------------------------ saving


def check_fit_dir(directory: str | os.PathLike, *, what: str = "fit folder") -> Path:
    """`directory` as a Path, refused (`InputError`, naming `what`) where no fit can be saved:
    an existing file, or a path under one. Called before any work, so none is lost."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise InputError(f"{what} {str(d)!r} is an existing file, not a folder")
    for parent in d.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what} {str(d)!r} lies under {str(parent)!r}, which is a file")
            break
    return d


def check_savable(draws: dict[str, np.ndarray], families) -> None:
    """Refuses (`InputError`, one line naming the family and parameter) a fit `load_fit` would
    call damaged: a non-finite parameter, or one outside its range."""
    problem = out_of_range(draws, families)
    if problem:
        raise InputError(f"the fit is not saved: {problem}; the runs cannot pin the law down: add runs "
                         "(at more N and D), fit another law, or share fewer exponents")


def _loads_back(directory: Path) -> Path:
    """`directory` after checking that `load_fit` reads back the fit just written (else the
    fit.json is removed and an `InputError` says why)."""
    try:
        load_fit(directory)
    except DamagedFileError as err:
        (directory / FIT_JSON).unlink(missing_ok=True)
        raise InputError(f"the fit is not saved: it does not load back ({err})") from None
    return directory


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=json_default)


def payload_sha256(payload: dict) -> str:
    """SHA-256 of a ``fit.json`` payload: the canonical JSON of every key but ``checksums``."""
    return sha256_bytes(_canonical({k: v for k, v in payload.items() if k != "checksums"}).encode("utf-8"))


def _write_fit_json(directory: Path, payload: dict, file_sums: dict[str, str]) -> None:
    payload = json.loads(json.dumps(payload, default=json_default))  # exactly as it reads back
    payload["format"] = FORMAT
    payload["checksums"] = {**file_sums, FIT_JSON: payload_sha256(payload)}
    write_json(directory / FIT_JSON, payload)


# ------------------------------------------------------------------------------ loading


def _damaged(path, what: str) -> DamagedFileError:
    return DamagedFileError(f"saved fit {str(path)!r} is damaged: {what}; "
                            "fit the runs again (`multiscale fit`) to replace it")


def _get(meta: dict, key: str, kind: type | tuple, path, *, default: Any = ...) -> Any:
    """meta[key], of type `kind` (bools are not numbers)."""
    if key not in meta:
        if default is not ...:
            return default
        raise _damaged(path, f"the key {key!r} is missing")
    v = meta[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise _damaged(path, f"{key!r} must be a {names}, found {type(v).__name__} {v!r}"[:300])
    return v


def _number(v: Any, name: str, path, *, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
        raise _damaged(path, f"{name} is {v!r}, not a finite{' positive' if positive else ''} number")
    return float(v)


def _check_checksum(meta: dict, path) -> dict:
    """The file checksums recorded in `meta`, after checking the payload's own."""
    fmt = _get(meta, "format", int, path)
    if fmt != FORMAT:
        raise _damaged(path, f"'format' is {fmt!r}; this version reads format {FORMAT}")
    sums = _get(meta, "checksums", dict, path)
    if not isinstance(sums.get(FIT_JSON), str):
        raise _damaged(path, f"its checksums have no entry for {FIT_JSON}")
    if sums[FIT_JSON] != payload_sha256(meta):
        raise _damaged(path, "its content does not match its checksum (edited or damaged after it was saved)")
    return sums


def _common(meta: dict, path) -> dict:
    """The `Fit` fields every saved fit has, checked."""
    name = _get(meta, "law", str, path)
    if name not in LAWS:
        raise _damaged(path, f"unknown law {name!r} (known: {', '.join(LAWS)})")
    law = LAWS[name]
    families = _get(meta, "families", list, path)
    if not families or not all(isinstance(f, str) and f for f in families) or len(set(families)) < len(families):
        raise _damaged(path, f"'families' must be distinct non-empty names, found {families!r}"[:300])
    shared = _get(meta, "shared", list, path)
    if not all(s in law.exponents for s in shared):
        raise _damaged(path, f"'shared' {shared!r} is not a list of {name!r}'s exponents {list(law.exponents)}")
    n_runs = _get(meta, "n_runs", dict, path)
    mix = _get(meta, "mixture_families", list, path, default=[])
    if law.matrix and (not mix or not all(isinstance(f, str) and f for f in mix)):
        raise _damaged(path, f"law {name!r} needs 'mixture_families', found {mix!r}"[:300])
    U = _get(meta, "unique_tokens", dict, path, default={})
    ident = _get(meta, "identifiability", list, path, default=[])
    if not all(isinstance(line, str) for line in ident):
        raise _damaged(path, f"'identifiability' must be a list of lines, found {ident!r}"[:300])
    return dict(identifiability=list(ident), law=law, families=tuple(families), shared=tuple(shared),
                mixture_families=tuple(mix),
                unique_tokens={k: _number(v, f"unique_tokens[{k!r}]", path, positive=True) for k, v in U.items()},
                N_ref=_number(_get(meta, "N_ref", (int, float), path), "N_ref", path, positive=True),
                D_ref=_number(_get(meta, "D_ref", (int, float), path), "D_ref", path, positive=True),
                n_runs={k: int(_number(v, f"n_runs[{k!r}]", path)) for k, v in n_runs.items()})


def _matrix_value(params: dict, family: str, name: str, source: str, path) -> float:
    """params[family][name][source] of a saved point fit, checked."""
    row = params.get(family, {}).get(name) if isinstance(params.get(family), dict) else None
    v = row.get(source) if isinstance(row, dict) else None
    return _number(v, f"parameter {name!r} of family {family!r} for mixture family {source!r}", path)


# Signs every fit guarantees (docs/design.md, "Laws: forms, fits, optimal ratios"): c, R_star and k
# are exp() of a fitted value and a loss or a scale needs them positive; E, A and B are exp() too, but
# they are terms of a sum, and the point fit may run one to a boundary where exp() underflows to 0.0
# (a law with no irreducible loss, say), which is a valid fit; the exponents and tau are >= 0.
POSITIVE_PARAMS = ("c", "R_star", "k")
NONNEGATIVE_PARAMS = ("E", "A", "B", "alpha", "beta", "tau")


def out_of_range(draws: dict[str, np.ndarray], families) -> str | None:
    """What is wrong with the first parameter that is not finite or outside its range (a
    negative E, alpha, ...), or None."""
    for name, v in draws.items():
        if not np.all(np.isfinite(v)):
            j = int(np.argwhere(~np.isfinite(v))[0][1])
            return f"parameter {name!r} of family {families[j]!r} is {float(v[~np.isfinite(v)][0])!r}, not finite"
        bad = (v <= 0) if name in POSITIVE_PARAMS else (v < 0) if name in NONNEGATIVE_PARAMS else None
        if bad is None or not np.any(bad):
            continue
        j = int(np.argwhere(bad)[0][1])
        need = "positive" if name in POSITIVE_PARAMS else ">= 0"
        return f"parameter {name!r} of family {families[j]!r} is {float(v[bad][0])!r}; it must be {need}"
    return None


def _check_signs(draws: dict[str, np.ndarray], families, path) -> None:
    """A parameter outside its range marks the file as damaged."""
    problem = out_of_range(draws, families)
    if problem:
        raise _damaged(path, problem)


def _load_point(meta: dict, path, common: dict) -> PointFit:
    params = _get(meta, "params", dict, path)
    law, families = common["law"], common["families"]
    extra = [f for f in params if f not in families]
    if extra:
        raise _damaged(path, f"'params' holds families {extra!r} that are not in 'families' {list(families)!r}"[:300])
    draws = {}
    for n in law.params:
        row = []
        for f in families:
            ps = params.get(f)
            if not isinstance(ps, dict) or n not in ps:
                raise _damaged(path, f"'params' has no value of {n!r} for family {f!r}")
            row.append(_number(ps[n], f"parameter {n!r} of family {f!r}", path))
        draws[n] = np.array([row], dtype=float)
    for n in law.matrix:
        draws[n] = np.array([[[_matrix_value(params, f, n, g, path) for g in common["mixture_families"]]
                              for f in families]], dtype=float)
    _check_signs(draws, families, path)
    return PointFit(draws=draws, objective=_get(meta, "objective", dict, path, default={}),
                    start=_get(meta, "start", dict, path, default={}),
                    grad_norm=_get(meta, "grad_norm", dict, path, default={}),
                    n_starts=int(_number(_get(meta, "n_starts", (int, float), path, default=0), "n_starts", path)),
                    seconds=_number(_get(meta, "seconds", (int, float), path, default=0.0), "seconds", path),
                    search=_get(meta, "search", dict, path, default={}), **common)


def _read_posterior(directory: Path, sums: dict, law: Law, families, mixture_families=()) -> tuple[Any, dict]:
    """(InferenceData, finite draws) from ``posterior.nc``, checked against its checksum."""
    import arviz as az

    nc = directory / POSTERIOR_NC
    if not nc.is_file():
        raise _damaged(nc, f"the Bayesian fit's {POSTERIOR_NC} is missing")
    if sha256_file(nc) != sums[POSTERIOR_NC]:
        raise _damaged(nc, "its bytes do not match the checksum in fit.json (truncated or replaced)")
    expected = {"family": list(families), "source": list(mixture_families)}
    try:
        idata = az.from_netcdf(str(nc))
        found = {dim: [str(v) for v in idata.posterior[dim].values]
                 for dim in (("family", "source") if law.matrix else ("family",))}
        draws = draws_from_idata(idata, law, families, mixture_families)
    except (OSError, RuntimeError, ValueError, KeyError, AttributeError) as err:
        raise _damaged(nc, f"it cannot be read as a posterior ({type(err).__name__}: {err})"[:400]) from None
    for dim, names in found.items():
        if names != expected[dim]:
            raise _damaged(nc, f"its {dim} order {names} is not fit.json's {expected[dim]}"[:400])
    for n, v in draws.items():
        if not np.all(np.isfinite(v)):
            raise _damaged(nc, f"parameter {n!r} has non-finite draws")
    _check_signs(draws, families, nc)
    return idata, draws


def _load_bayes(meta: dict, directory: Path, sums: dict, common: dict) -> BayesFit:
    path = directory / FIT_JSON
    if POSTERIOR_NC not in sums:
        raise _damaged(path, f"its checksums have no entry for {POSTERIOR_NC}")
    idata, draws = _read_posterior(directory, sums, common["law"], common["families"],
                                   common["mixture_families"])
    warnings = _get(meta, "warnings", list, path, default=[])
    options = _get(meta, "options", dict, path, default={})
    try:  # a fit saved before the noise models has none: "constant"
        noise = NoiseSpec.from_options(options, common["families"])
    except ValueError as err:
        raise _damaged(path, str(err)) from None
    for name in noise.draw_names():
        v = idata.posterior.get(name)
        if v is not None and not np.all(np.isfinite(v.values)):
            raise _damaged(directory / POSTERIOR_NC, f"the noise draws {name!r} are not all finite")
        if v is None and name != "sigma":
            raise _damaged(directory / POSTERIOR_NC, f"noise model {noise.model!r} needs the draws {name!r}")
        if name == SIZE_OFFSET and v.sizes.get("level") != len(noise.levels):
            raise _damaged(directory / POSTERIOR_NC, f"the draws {name!r} do not have one offset for each of "
                                                     f"the {len(noise.levels)} levels of fit.json")
    return BayesFit(draws=draws, idata=idata, diagnostics=_get(meta, "diagnostics", dict, path, default={}),
                    warnings=[str(w) for w in warnings], options=options, noise=noise,
                    extrapolation=_get(meta, "extrapolation", dict, path, default={}), **common)


def load_fit(directory: str | os.PathLike) -> Fit:
    """Load a fit saved by ``PointFit.save`` or ``BayesFit.save``.

    Raises:
      MissingFileError: `directory` is not a folder holding ``fit.json``.
      DamagedFileError: ``fit.json`` is not a JSON object, fails its checksum, lacks a key,
        names an unknown law, method or format, holds a value of the wrong type, a non-finite
        number, a parameter outside its range (c, R_star, k <= 0; E, A, B, alpha, beta, tau < 0)
        or parameters of a family not in 'families'; or ``posterior.nc`` is missing, fails its
        checksum, cannot be read or holds draws outside those ranges. The message names the file.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise InputError(f"directory must be a folder path, got {type(directory).__name__} {directory!r}"[:300],
                         arg="directory")
    directory = Path(directory)
    meta_path = directory / FIT_JSON
    if not directory.is_dir() or not meta_path.is_file():
        raise MissingFileError(f"{str(directory)!r} is not a saved fit (no {FIT_JSON})")
    meta = read_json(meta_path, what="saved fit", expect=dict)
    sums = _check_checksum(meta, meta_path)
    method = _get(meta, "method", str, meta_path)
    if method not in METHODS:
        raise _damaged(meta_path, f"unknown fit method {method!r} (known: {', '.join(METHODS)})")
    common = _common(meta, meta_path)
    if method == "lbfgs":
        return _load_point(meta, meta_path, common)
    return _load_bayes(meta, directory, sums, common)


def draws_from_idata(idata, law: Law, families, mixture_families=()) -> dict[str, np.ndarray]:
    """``name -> (chains * draws, F)`` from the posterior group (variables ``<name>``, dims
    chain, draw, family; matrix parameters ``(chains * draws, F, M)``, dims chain, draw,
    family, source)."""
    post = idata.posterior
    out = {}
    for name in law.matrix:
        v = np.asarray(post[name].transpose("chain", "draw", "family", "source").values, dtype=float)
        out[name] = v.reshape(-1, v.shape[-2], v.shape[-1])
        if out[name].shape[1:] != (len(families), len(mixture_families)):
            raise ValueError(f"posterior variable {name!r} has shape {out[name].shape[1:]}, expected "
                             f"{(len(families), len(mixture_families))}")
    for name in law.params:
        v = np.asarray(post[name].transpose("chain", "draw", "family").values, dtype=float)
        out[name] = v.reshape(-1, v.shape[-1])
        if out[name].shape[1] != len(families):
            raise ValueError(f"posterior variable {name!r} has {out[name].shape[1]} families, "
                             f"expected {len(families)}")
    return out
