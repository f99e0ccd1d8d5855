"""The law engine: scaling-law forms, point and Bayesian fits, predictions, optimal ratios,
the independence test and held-out validation. Depends only on the run table
(`multiscale.runs`) and the mixture value (`multiscale.mixture`); jax, numpyro and arviz are
imported inside the functions that use them. `multiscale.laws.lbfgs` is a general batched
L-BFGS in jax (the point fit's optimizer). See docs/design.md, "Laws: forms, fits, optimal ratios".

Losses are mean cross-entropies in nats per token throughout.
"""

from multiscale.laws.bayes import fit_bayes
from multiscale.laws.fits import BayesFit, Fit, PointFit, load_fit
from multiscale.laws.forms import LAWS, Law, get_law, predict_loss
from multiscale.laws.independence import IndependenceResult, independence_test
from multiscale.laws.optimal import Recommendation, optimal_ratios, solve_ratios
from multiscale.laws.point import fit_point
from multiscale.laws.predict import Prediction, predict
from multiscale.laws.validation import Scores, holdout, score

__all__ = [
    "LAWS", "Law", "get_law", "predict_loss", "fit_point", "fit_bayes", "Fit", "PointFit",
    "BayesFit", "load_fit", "predict", "Prediction", "optimal_ratios", "solve_ratios",
    "Recommendation", "independence_test", "IndependenceResult", "score",
    "holdout", "Scores",
]
