"""The law engine: scaling-law definitions, point and Bayesian fits, predictions, the independence
test and held-out validation. Depends only on the run table (`multiscale.runs`) and
the mixture value (`multiscale.mixture`); jax, numpyro and arviz are imported inside the functions
that use them. `multiscale.laws.forms` defines every law (the interface the fits read);
`multiscale.laws.lbfgs` is a general batched L-BFGS in jax (the point fit's optimizer). Decisions
(p*, regret, the next runs) are in `multiscale.decisions`. See docs/design.md, "Laws: forms,
fits, optimal ratios".

Losses are mean cross-entropies in nats per token throughout.
"""

from multiscale.laws.bayes import fit_bayes
from multiscale.laws.fits import BayesFit, Fit, PointFit, load_fit
from multiscale.laws.forms import LAWS, Law, get_law, predict_loss
from multiscale.laws.independence import IndependenceResult, independence_test
from multiscale.laws.point import fit_point
from multiscale.laws.predict import Prediction, predict
from multiscale.laws.validation import Scores, holdout, score

__all__ = [
    "LAWS", "Law", "get_law", "predict_loss", "fit_point", "fit_bayes", "Fit", "PointFit",
    "BayesFit", "load_fit", "predict", "Prediction", "independence_test",
    "IndependenceResult", "score", "holdout", "Scores",
]
