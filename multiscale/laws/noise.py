"""The run-to-run noise of a Bayesian fit: its scale per row of log-loss.

Two noise models (`NOISE_MODELS`, `fit_bayes(noise=...)`):

- ``"constant"``: one scale sigma_f per family, ``sigma_r = sigma_f``;
- ``"scale"``: the scale moves with the model size and the family's share of the mixture,
  ``log sigma_r = log sigma_f + s_N (log N_r - c_N,f) + s_p (log p_r - c_p,f)``: sigma ~ N^s_N p^s_p,
  with sigma_f the family's noise at its own centres c_f (the mean log N and log p of its fitted
  rows) and the slopes s_N, s_p one each, shared by the families (one per table of a stacked
  program), prior ``N(0, SLOPE_PRIOR)`` (95% within +-1: at most a 2.7x change of sigma per e-fold
  of N or p). A slope is sampled only where its covariate varies within some family (`covariates`);
  a family sampled rarely sees fewer tokens of its language, so its loss is expected to be noisier
  (s_p < 0).

The posterior keeps ``sigma`` (chain, draw, family) under both models and adds ``noise_slope_N``,
``noise_slope_p`` (chain, draw, family; one value per table repeated over its families); the
saved options say which model and hold the centres (`NoiseSpec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from multiscale.errors import InputError

NOISE_MODELS = ("constant", "scale")
DEFAULT_NOISE = "constant"
SLOPE_PRIOR = 0.5
COVARIATES = ("N", "p")


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
    if noise == "constant":
        return ()
    out = []
    for cov, x in (("N", logN_R), ("p", logp_R)):
        if any(np.ptp(x[fam_R == j]) > 1e-9 for j in np.unique(fam_R)):
            out.append(cov)
    return tuple(out)


@dataclass(frozen=True)
class NoiseSpec:
    """A fit's noise model: the covariates with a slope, and per covariate the centre of each
    family (the mean of its log N or log p over the fitted rows), families in the fit's order."""

    model: str
    slopes: tuple[str, ...] = ()
    centres: dict[str, tuple[float, ...]] = field(default_factory=dict)

    @classmethod
    def of_rows(cls, noise: str, n_families: int, fam_R, logN_R, logp_R) -> NoiseSpec:
        slopes = covariates(noise, fam_R, logN_R, logp_R)
        x = {"N": logN_R, "p": logp_R}
        cent = {c: tuple(float(np.mean(x[c][fam_R == j])) for j in range(n_families)) for c in slopes}
        return cls(noise, slopes, cent)

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
        return cls(saved["model"], slopes, out)

    def to_options(self, families) -> dict:
        return {"model": self.model, "slopes": list(self.slopes),
                "centres": {c: dict(zip(families, v)) for c, v in self.centres.items()},
                "slope_prior": SLOPE_PRIOR}

    def log_factor(self, slope_SxF: dict, fam_R, logN_R, logp_R, xp=np):
        """log(sigma_r / sigma_f) (S, R) of the slope draws (S, F each) at rows of families `fam_R`;
        0.0 without slopes."""
        out = 0.0
        for c, x_R in (("N", logN_R), ("p", logp_R)):
            if c in self.slopes:
                cent_R = np.asarray(self.centres[c])[fam_R]
                out = out + slope_SxF[slope_name(c)][:, fam_R] * (x_R - cent_R)
        return out
