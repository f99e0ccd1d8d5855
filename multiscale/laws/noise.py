"""The run-to-run noise of a Bayesian fit: its scale per row of log-loss.

Three noise models (`NOISE_MODELS`, `fit_bayes(noise=...)`):

- ``"constant"``: one scale sigma_f per family, ``sigma_r = sigma_f``;
- ``"scale"``: the scale moves with the model size and the family's share of the mixture,
  ``log sigma_r = log sigma_f + s_N (log N_r - c_N,f) + s_p (log p_r - c_p,f)``: sigma ~ N^s_N p^s_p,
  with sigma_f the family's noise at its own centres c_f (the mean log N and log p of its fitted
  rows) and the slopes s_N, s_p one each, shared by the families (one per table of a stacked
  program), prior ``N(0, SLOPE_PRIOR)`` (95% within +-1: at most a 2.7x change of sigma per e-fold
  of N or p). A slope is sampled only where its covariate varies within some family (`covariates`);
  a family sampled rarely sees fewer tokens of its language, so its loss is expected to be noisier
  (s_p < 0);
- ``"size"``: ``sigma_r = sigma_f`` as "constant", and the runs of one model size share an offset
  of their mean log-loss, ``mu_r + u_{f,N_r}``, one per (family, distinct N) level of the fitted
  table, ``u_f = tau_f P_f z_f``, ``z ~ N(0, 1)`` (non-centred), ``tau_f ~ HalfNormal(SIZE_PRIOR)``:
  a model size's shape (width, depth) moves all its runs together, so a ladder's N-curve rests on
  its sizes, not on its rows. P_f projects out a level and a slope in log N over the family's
  levels (`NoiseSpec.projection`): offsets free to trend with N took over the law's N-curve (on
  Gemstone /10, offsets from -0.13 to +0.13 rising with N, tau 0.1, the law's E 0.6-1.1 against
  2.9, R-hat 1.5, and the larger sizes under-predicted by 0.45 in log: benchmarks/FIELD_PRIOR.md,
  "per-size offsets"), so the law keeps the trend and the offsets only the scatter about it (a
  family with 1-2 sizes has none). A new size gets a fresh offset ``N(0, tau_f)``; the law's mean
  is the law without offsets.

The posterior keeps ``sigma`` (chain, draw, family) under every model, adds ``noise_slope_N``,
``noise_slope_p`` (chain, draw, family; one value per table repeated over its families) under
"scale", and ``size_sd`` (chain, draw, family) and ``size_offset`` (chain, draw, level) under
"size"; the saved options say which model and hold the centres or the levels (`NoiseSpec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from multiscale.errors import InputError

NOISE_MODELS = ("constant", "scale", "size")
DEFAULT_NOISE = "constant"
SLOPE_PRIOR = 0.5
SIZE_PRIOR = 0.05  # tau_f ~ HalfNormal(SIZE_PRIOR): the sd of the per-size offsets of log-loss
SIZE_SD, SIZE_OFFSET = "size_sd", "size_offset"
COVARIATES = ("N", "p")
LEVEL_TOL = 1e-6  # two sizes are one level when their log N differ by less


def check_noise(noise) -> str:
    """`noise` as one of NOISE_MODELS, else an `InputError` naming the argument."""
    if noise not in NOISE_MODELS:
        raise InputError(f"noise must be one of {list(NOISE_MODELS)}, got {noise!r}", arg="noise")
    return noise


def slope_name(cov: str) -> str:
    return f"noise_slope_{cov}"


def covariates(noise: str, fam_R: np.ndarray, logN_R: np.ndarray, logp_R: np.ndarray) -> tuple[str, ...]:
    """The covariates whose slope a fit samples: none for "constant"; for "scale" each of N and p
    that takes more than one value within some family."""
    if noise != "scale":
        return ()
    out = []
    for cov, x in (("N", logN_R), ("p", logp_R)):
        if any(np.ptp(x[fam_R == j]) > 1e-9 for j in np.unique(fam_R)):
            out.append(cov)
    return tuple(out)


@dataclass(frozen=True)
class NoiseSpec:
    """A fit's noise model: the covariates with a slope, and per covariate the centre of each
    family (the mean of its log N or log p over the fitted rows), families in the fit's order;
    under "size" the levels (family index, N) that have an offset, by family, then N."""

    model: str
    slopes: tuple[str, ...] = ()
    centres: dict[str, tuple[float, ...]] = field(default_factory=dict)
    levels: tuple[tuple[int, float], ...] = ()

    @classmethod
    def of_rows(cls, noise: str, n_families: int, fam_R, logN_R, logp_R) -> NoiseSpec:
        slopes = covariates(noise, fam_R, logN_R, logp_R)
        x = {"N": logN_R, "p": logp_R}
        cent = {c: tuple(float(np.mean(x[c][fam_R == j])) for j in range(n_families)) for c in slopes}
        levels = ()
        if noise == "size":
            levels = tuple((j, float(f"{np.exp(v):.12g}")) for j in range(n_families)  # N as given, not exp(log N)
                           for v in _distinct(np.asarray(logN_R)[np.asarray(fam_R) == j]))
        return cls(noise, slopes, cent, levels)

    @property
    def level_family(self) -> np.ndarray:
        """The family index of each level (L,)."""
        return np.array([j for j, _ in self.levels], dtype=np.int64)

    def level_of(self, fam_R, logN_R) -> np.ndarray:
        """The level of each row (R,), -1 where its (family, N) has none."""
        fam_R, logN_R = np.asarray(fam_R), np.asarray(logN_R, float)
        out = np.full(len(fam_R), -1, dtype=np.int64)
        for k, (j, n) in enumerate(self.levels):
            out[(fam_R == j) & (np.abs(logN_R - np.log(n)) < LEVEL_TOL)] = k
        return out

    def draw_names(self) -> list[str]:
        """The posterior variables of this model: ``sigma``, the slopes, the size offsets' sd and
        the offsets (the last by level, the others by family)."""
        return ["sigma", *map(slope_name, self.slopes)] + ([SIZE_SD, SIZE_OFFSET] if self.model == "size" else [])

    def projection(self) -> np.ndarray:
        """(L, L) block-diagonal: per family, the projection onto what is orthogonal to a constant
        and to log N over its levels (the offsets' trend-free part)."""
        lev_F = self.level_family
        out = np.zeros((len(lev_F), len(lev_F)))
        for j in np.unique(lev_F):
            k = np.flatnonzero(lev_F == j)
            X = np.stack([np.ones(len(k)), np.log([self.levels[i][1] for i in k])], axis=1)
            out[np.ix_(k, k)] = np.eye(len(k)) - X @ np.linalg.pinv(X)
        return out

    def level_labels(self, families) -> list[str]:
        return [f"{families[j]}@N={n:.4g}" for j, n in self.levels]

    @classmethod
    def from_options(cls, options: dict, families) -> NoiseSpec:
        """The spec saved in a fit's options (`to_options`); a fit without one is "constant"."""
        saved = options.get("noise") if isinstance(options, dict) else None
        if saved is None:
            return cls("constant", (), {})
        if not isinstance(saved, dict) or saved.get("model") not in NOISE_MODELS:
            raise ValueError(f"options 'noise' must name a model of {list(NOISE_MODELS)}, found {saved!r}"[:300])
        slopes = tuple(saved.get("slopes", ()))
        cent = saved.get("centres", {})
        if not set(slopes) <= set(COVARIATES) or not isinstance(cent, dict):
            raise ValueError(f"options 'noise' has unknown slopes or centres: {saved!r}"[:300])
        out = {}
        for c in slopes:
            v = cent.get(c)
            if not isinstance(v, dict) or set(v) != set(families):
                raise ValueError(f"options 'noise' lacks the centres of {c!r} for families {list(families)}")
            out[c] = tuple(float(v[f]) for f in families)
            if not all(np.isfinite(out[c])):
                raise ValueError(f"options 'noise' has a non-finite centre of {c!r}")
        levels = ()
        if saved["model"] == "size":
            lev = saved.get("levels")
            if not isinstance(lev, dict) or not set(lev) <= set(families) or not all(
                    isinstance(v, list) and v and all(isinstance(n, (int, float)) and np.isfinite(n) and n > 0
                                                      for n in v) for v in lev.values()):
                raise ValueError(f"options 'noise' of model 'size' needs 'levels': per family a list of "
                                 f"positive sizes N, found {lev!r}"[:300])
            levels = tuple((j, float(n)) for j, f in enumerate(families) for n in lev.get(f, ()))
        return cls(saved["model"], slopes, out, levels)

    def to_options(self, families) -> dict:
        out = {"model": self.model, "slopes": list(self.slopes),
               "centres": {c: dict(zip(families, v)) for c, v in self.centres.items()},
               "slope_prior": SLOPE_PRIOR}
        if self.model == "size":
            out["levels"] = {f: [n for j, n in self.levels if j == i] for i, f in enumerate(families)}
            out["levels"] = {f: v for f, v in out["levels"].items() if v}
            out["size_prior"] = SIZE_PRIOR
        return out

    def log_factor(self, slope_SxF: dict, fam_R, logN_R, logp_R, xp=np):
        """log(sigma_r / sigma_f) (S, R) of the slope draws (S, F each) at rows of families `fam_R`;
        0.0 without slopes."""
        out = 0.0
        for c, x_R in (("N", logN_R), ("p", logp_R)):
            if c in self.slopes:
                cent_R = np.asarray(self.centres[c])[fam_R]
                out = out + slope_SxF[slope_name(c)][:, fam_R] * (x_R - cent_R)
        return out


def _distinct(logN: np.ndarray) -> list[float]:
    """The distinct values of `logN`, ascending, those within LEVEL_TOL of the last one kept merged."""
    out: list[float] = []
    for v in np.sort(logN):
        if not out or v - out[-1] >= LEVEL_TOL:
            out.append(float(v))
    return out
