"""One mixture value: parsing, validation, rendering, and the baseline mixtures.

A *mixture* maps language families (or languages) to sampling ratios: finite, non-negative,
summing to 1 within `RATIO_TOLERANCE`. Everything that takes ratio-like values (ratios, weights,
floors, caps, available tokens, plan entries, `TrainConfig.ratios`, the data pipeline) reads them
with `parse_pairs` / `Mixture`, whose errors name the argument and the family. The baselines:
`uniform`, `proportional`, `temperature` (``q_i ∝ n_i^tau``, tau = 1/T everywhere), `unimax`
(Chung et al. 2023), `all_baselines`. Imports only the standard library, numpy and
`multiscale.errors`, so every layer can use it (docs/design.md, "Mixtures and baselines").
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from multiscale.errors import InputError

RATIO_TOLERANCE = 1e-6
"""How far from 1 the ratios of a mixture may sum (rounding in hand-written or saved ratios)."""

TEMPERATURE_TAUS = (0.3, 0.5, 0.7)
"""The temperature baselines' exponents tau (q ∝ n^tau; 0.3 as in mT5 and XLM-R)."""

DEFAULT_TAU = 0.3
"""The default temperature exponent (mT5's T = 1/0.3 ≈ 3.33)."""

DEFAULT_MAX_EPOCHS = 4.0
"""UniMax's cap on the epochs over any family's unique tokens (Chung et al. 2023 use 1-4)."""


class MixtureError(InputError):
    """Bad ratios or ratio-like values; the message names the argument (`arg`) and the family."""


class UnknownFamilyError(MixtureError):
    """Values for families outside the known ones (a corpus's, a fit's, a plan's)."""


@contextlib.contextmanager
def _about(arg: str):
    """Names `arg` in a `MixtureError` raised inside that does not name an argument yet."""
    try:
        yield
    except MixtureError as err:
        if err.arg is not None:
            raise
        raise type(err)(f"{arg}: {err}", arg=arg) from None


# -- parsing ------------------------------------------------------------------------------------
def parse_pairs(value: str | Mapping[str, Any], *, arg: str = "ratios", known: Iterable[str] | None = None,
                allow_negative: bool = False) -> dict[str, float]:
    """``'germanic=0.5, romance=0.3'`` or a mapping -> ``{'germanic': 0.5, 'romance': 0.3}``.

    Names are stripped, order kept, sums not checked. Refused, naming `arg` and the family: an
    entry without ``=``, an empty or repeated name, a value not a finite number, a negative one
    (unless `allow_negative`), a family not in `known`, an empty input.
    """
    if isinstance(value, str):
        items = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, sep, number = part.partition("=")
            if not sep:
                raise MixtureError(f"{arg}: entry {part!r} is not FAMILY=VALUE (e.g. germanic=0.5)", arg=arg)
            items.append((name, number.strip()))
    elif isinstance(value, Mapping):
        items = list(value.items())
    else:
        raise MixtureError(f"{arg} must be FAMILY=VALUE pairs or a mapping, got {value!r}", arg=arg)
    out: dict[str, float] = {}
    with _about(arg):
        for name, raw in items:
            if not isinstance(name, str):
                raise MixtureError(f"family names must be strings, got {name!r}")
            clean = name.strip()
            if not clean:
                raise MixtureError(f"a value has an empty family name ({name!r})")
            if clean in out:
                raise MixtureError(f"family {clean!r} is given twice")
            try:
                if isinstance(raw, bool):
                    raise TypeError(raw)
                v = float(raw)
            except (TypeError, ValueError):
                raise MixtureError(f"the value of family {clean!r} is not a number: {raw!r}") from None
            if not math.isfinite(v):
                raise MixtureError(f"the value of family {clean!r} is not finite: {raw!r}")
            if v < 0 and not allow_negative:
                raise MixtureError(f"family {clean!r} is negative ({v:g}); each value must be >= 0")
            out[clean] = v
    if not out:
        raise MixtureError(f"{arg} is empty; give FAMILY=VALUE pairs, e.g. germanic=0.5,romance=0.5", arg=arg)
    if known is not None:
        with _about(arg):
            check_known(out, known)
    return out


def check_known(names: Iterable[str], known: Iterable[str]) -> None:
    """Refuses names outside `known` (`UnknownFamilyError`, listing the known ones)."""
    known = list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        plural = "family" if len(unknown) == 1 else "families"
        raise UnknownFamilyError(f"unknown {plural} {', '.join(map(repr, unknown))}; "
                                 f"the known families are: {', '.join(known) or '(none)'}")


def _check_sum(ratios: Mapping[str, float]) -> None:
    total = sum(ratios.values())
    if abs(total - 1.0) > RATIO_TOLERANCE:
        listed = ", ".join(f"{f}={v:g}" for f, v in ratios.items())
        raise MixtureError(f"the ratios sum to {total:.9g}, not 1 ({listed}); they must sum to 1 "
                           f"within {RATIO_TOLERANCE:g} (or normalize them)")


def _divide_by_sum(ratios: Mapping[str, float]) -> dict[str, float]:
    # Python's left-to-right float sum, in the mapping's order: the division by it is the one
    # training always did, so ratios stay bit-identical.
    total = sum(ratios.values())
    if not total > 0:
        raise MixtureError(f"the values sum to {total:g}; cannot normalize them to ratios")
    return {f: v / total for f, v in ratios.items()}


# -- the value ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Mixture:
    """Validated sampling ratios: family -> ratio, in the given order.

    The ratios are finite, >= 0 and sum to 1 within `RATIO_TOLERANCE`; the constructor keeps
    them exactly as given (a `Mixture` re-built from `to_dict()` or `render()` is equal to the
    original). A family absent from the mixture has ratio 0 (`get`, `vector`). Errors name the
    argument `ratios`.
    """

    ratios: Mapping[str, float]

    def __post_init__(self):
        if isinstance(self.ratios, Mixture):
            ratios = dict(self.ratios.ratios)
        else:
            ratios = parse_pairs(self.ratios)
        with _about("ratios"):
            _check_sum(ratios)
        object.__setattr__(self, "ratios", types.MappingProxyType(ratios))

    def __hash__(self) -> int:
        return hash(tuple(self.ratios.items()))

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | Mixture, *, known: Iterable[str] | None = None,
              normalize: bool = False, arg: str = "ratios") -> Mixture:
        """A mixture from ``'germanic=0.5,romance=0.5'``, a mapping, or a `Mixture` (returned as
        is). `normalize=True` accepts any non-negative weights with a positive sum and divides
        them by it; otherwise the values must sum to 1. `known`: the allowed families. Errors
        name the argument `arg`."""
        if isinstance(value, Mixture):
            if known is not None:
                with _about(arg):
                    check_known(value.ratios, known)
            return value
        ratios = parse_pairs(value, arg=arg, known=known)
        with _about(arg):
            if normalize:
                ratios = _divide_by_sum(ratios)
            else:
                _check_sum(ratios)
        return cls(ratios)

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.ratios)

    def get(self, family: str) -> float:
        """The ratio of `family` (0 when the mixture does not name it)."""
        return float(self.ratios.get(family, 0.0))

    def to_dict(self) -> dict[str, float]:
        return dict(self.ratios)

    def render(self) -> str:
        """``'germanic=0.5,romance=0.3,...'``, each value with the digits that round-trip it."""
        return ",".join(f"{f}={v!r}" for f, v in self.ratios.items())

    def check_families(self, known: Iterable[str]) -> Mixture:
        """Refuses families outside `known` (`UnknownFamilyError`); returns self."""
        with _about("ratios"):
            check_known(self.ratios, known)
        return self

    def over(self, families: Sequence[str]) -> dict[str, float]:
        """``{family: ratio}`` for exactly `families`, in their order (0 for those absent);
        refuses a mixture that names a family outside them."""
        self.check_families(families)
        return {f: self.get(f) for f in families}

    def vector(self, families: Sequence[str]) -> np.ndarray:
        """The ratios as a float64 array in the order of `families` (see `over`)."""
        return np.array(list(self.over(families).values()), dtype=np.float64)

    def normalized(self) -> Mixture:
        """Each ratio divided by the sum (one rounding step; training uses this)."""
        with _about("ratios"):
            return Mixture(_divide_by_sum(self.ratios))


# -- baselines ------------------------------------------------------------------------------------
def _sizes(tokens: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """The available tokens of the baselines (their argument `tokens`): names and sizes > 0."""
    values = parse_pairs(tokens, arg="tokens") if tokens else {}
    if not values:
        raise MixtureError("tokens: no families given", arg="tokens")
    bad = [f for f, v in values.items() if not v > 0]
    if bad:
        raise MixtureError(f"tokens must be positive; not so for {bad}", arg="tokens")
    return list(values), np.array(list(values.values()), dtype=np.float64)


def uniform(families: Sequence[str]) -> dict[str, float]:
    """Equal ratios, 1/F each."""
    families = list(families)
    if not families:
        raise MixtureError("uniform: no families given")
    if len(set(families)) != len(families):
        raise MixtureError(f"uniform: a family is given twice in {families}")
    return {f: 1.0 / len(families) for f in families}


def proportional(tokens: Mapping[str, float]) -> dict[str, float]:
    """Ratios proportional to the available tokens ``n_i``."""
    names, n = _sizes(tokens)
    return dict(zip(names, (n / n.sum()).tolist()))


def temperature(tokens: Mapping[str, float], tau: float = DEFAULT_TAU) -> dict[str, float]:
    """Temperature sampling ``q_i ∝ n_i^tau`` with tau = 1/T: tau = 1 is proportional, tau = 0
    uniform, 0.3 as in mT5. Any finite tau >= 0 is allowed (tau > 1 favours large families)."""
    tau = float(tau)
    if not (math.isfinite(tau) and tau >= 0):
        raise MixtureError(f"temperature: tau must be finite and >= 0, got {tau}")
    names, n = _sizes(tokens)
    logq = tau * np.log(n)
    q = np.exp(logq - logq.max())
    return dict(zip(names, (q / q.sum()).tolist()))


def unimax_feasible(tokens: Mapping[str, float], budget: float, max_epochs: float = DEFAULT_MAX_EPOCHS) -> bool:
    """Whether `max_epochs` epochs of all available tokens can fill `budget` tokens."""
    _, n = _sizes(tokens)
    return max_epochs * n.sum() >= budget * (1 - 1e-12)


def unimax(tokens: Mapping[str, float], budget: float, max_epochs: float = DEFAULT_MAX_EPOCHS) -> dict[str, float]:
    """UniMax ratios (Chung et al. 2023) for a budget of `budget` tokens and at most `max_epochs`
    epochs of any family: walk the families from smallest to largest; each gets the smaller of
    its fair share of the budget left (budget left / families left) and its size times the cap.
    Raises `MixtureError` when even `max_epochs` of everything cannot fill the budget."""
    names, n = _sizes(tokens)
    if not (math.isfinite(budget) and budget > 0):
        raise MixtureError(f"unimax: the budget must be finite and positive, got {budget}")
    if not (math.isfinite(max_epochs) and max_epochs > 0):
        raise MixtureError(f"unimax: max_epochs must be finite and positive, got {max_epochs}")
    if not unimax_feasible(tokens, budget, max_epochs):
        raise MixtureError(
            f"unimax: {max_epochs:g} epochs of all {n.sum():.4g} available tokens cannot fill the "
            f"budget of {budget:.4g} tokens")
    order = np.argsort(n, kind="stable")
    alloc = np.zeros_like(n)
    left = float(budget)
    for k, i in enumerate(order):
        share = left / (len(order) - k)
        alloc[i] = min(share, n[i] * max_epochs)
        left -= alloc[i]
    return dict(zip(names, (alloc / budget).tolist()))


def all_baselines(families: Sequence[str], tokens: Mapping[str, float] | None = None,
                  budget: float | None = None, max_epochs: float | None = DEFAULT_MAX_EPOCHS,
                  taus: Sequence[float] = TEMPERATURE_TAUS) -> dict[str, dict[str, float]]:
    """Every baseline the inputs allow, by name: ``uniform`` always; ``proportional``,
    ``temperature_<tau>`` for each tau and ``unimax`` when available tokens are given (UniMax
    also needs a budget that `max_epochs` epochs can fill; None means `DEFAULT_MAX_EPOCHS`)."""
    max_epochs = DEFAULT_MAX_EPOCHS if max_epochs is None else float(max_epochs)
    out = {"uniform": uniform(families)}
    if not tokens:
        return out
    missing = [f for f in families if f not in tokens]
    if missing:
        raise MixtureError(f"available tokens missing for families {missing}", arg="tokens")
    tok = {f: tokens[f] for f in families}
    out["proportional"] = proportional(tok)
    for tau in taus:
        out[f"temperature_{tau:g}"] = temperature(tok, tau)
    if budget is not None and unimax_feasible(tok, budget, max_epochs):
        out["unimax"] = unimax(tok, budget, max_epochs)
    return out
