"""The report's figures (matplotlib, Agg backend, imported lazily). Losses in nats/token.

Each function takes plain values (a run table, a fit's parameter draws, a recommendation's
dict) and writes one PNG, returning its path. `write_report` (multiscale/report/writer.py) calls them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from multiscale.laws.summary import interval
from multiscale.report.labels import scale_label

LOSS_LABEL = "held-out loss (nats/token)"
_DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def law_band(fit, family: str, N, D, p, q=(0.05, 0.5, 0.95)) -> np.ndarray:
    """Quantiles (len(q), len(p)) of the fitted law L(N, D, p) over the fit's draws: the law's
    credible band, without the run-to-run noise a predictive interval for a new run would add."""
    from multiscale.laws.forms import predict_loss

    j = fit.family_index(family)
    params = {n: np.asarray(v[:, j], float)[:, None] for n, v in fit.draws.items()}
    L_SxP = predict_loss(fit.law, params, float(N), float(D), np.asarray(p, float)[None, :])
    L_SxP = np.broadcast_to(L_SxP, (params[fit.law.params[0]].shape[0], len(p)))
    return np.quantile(L_SxP, q, axis=0)


def plot_loss_vs_p(df: pd.DataFrame, fit, path, *, heldout: Sequence[str] = ()) -> str:
    """Per family: loss vs p on log-log axes at each (N, D): observed runs, law and 90% band."""
    plt = _plt()
    fams = [f for f in fit.families if f in set(df["family"])]
    scales = sorted({(float(n), float(d)) for n, d in zip(df["N"], df["D"])})
    colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.85, max(len(scales), 1)))
    cols = min(len(fams), 3)
    rows = (len(fams) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.7 * rows), squeeze=False)
    held = set(heldout)
    for ax, fam in zip(axes.flat, fams):
        sub = df[df["family"] == fam]
        p_lo = max(float(sub["p"].min()) * 0.7, 1e-4)
        p_grid = np.geomspace(p_lo, 1.0, 60)
        for (N, D), color in zip(scales, colors):
            pts = sub[(sub["N"] == N) & (sub["D"] == D)]
            if pts.empty:
                continue
            lo, mid, hi = law_band(fit, fam, N, D, p_grid)
            ax.fill_between(p_grid, lo, hi, color=color, alpha=0.18, lw=0)
            ax.plot(p_grid, mid, color=color, lw=1.6, label=scale_label(N, D))
            is_held = pts["run"].isin(held).to_numpy()
            ax.scatter(pts["p"][~is_held], pts["loss"][~is_held], color=color, s=22, zorder=3,
                       edgecolor="black", linewidth=0.4)
            if is_held.any():
                ax.scatter(pts["p"][is_held], pts["loss"][is_held], facecolor="white", edgecolor=color,
                           s=34, marker="s", linewidth=1.4, zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax)
        ax.set_title(fam)
        ax.set_xlabel("sampling ratio p of the family (log)")
        ax.set_ylabel(LOSS_LABEL + " (log)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="upper right")
    for ax in list(axes.flat)[len(fams):]:
        ax.axis("off")
    fig.suptitle("Loss vs sampling ratio: lines = fitted law (median), bands = 90% credible band, "
                 "dots = fitted runs, squares = held-out runs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return str(path)


def _plain_log_ticks(ax) -> None:
    """Log axes labelled 0.01, 0.1, 1 and 2.5, 3 instead of 10^-2 and 3x10^0."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(fmt)
    ax.yaxis.set_minor_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def plot_pred_vs_obs(table: pd.DataFrame, path, *, title_extra: str = "") -> str:
    """Predicted (median, 90% interval) vs observed loss; held-out runs marked. `table` columns:
    family, loss, pred, pred_lo, pred_hi, heldout."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    fams = list(dict.fromkeys(table["family"]))
    colors = plt.get_cmap("tab10")(np.arange(len(fams)) % 10)
    for fam, color in zip(fams, colors):
        sub = table[table["family"] == fam]
        for held, marker, face in ((False, "o", color), (True, "s", "white")):
            s = sub[sub["heldout"] == held]
            if s.empty:
                continue
            yerr = np.vstack([s["pred"] - s["pred_lo"], s["pred_hi"] - s["pred"]])
            ax.errorbar(s["loss"], s["pred"], yerr=np.clip(yerr, 0, None), fmt=marker, color=color,
                        mfc=face, mec=color, ms=5 if not held else 6, elinewidth=0.8, capsize=2,
                        label=f"{fam}{' (held-out)' if held else ''}")
    lo = float(min(table["loss"].min(), table["pred_lo"].min())) * 0.97
    hi = float(max(table["loss"].max(), table["pred_hi"].max())) * 1.03
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--", label="predicted = observed")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("observed " + LOSS_LABEL)
    ax.set_ylabel("predicted loss (nats/token), median and 90% interval")
    ax.set_title("Predicted vs observed" + (f"\n{title_extra}" if title_extra else ""), fontsize=10)
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return str(path)


def plot_p_star(p_star_draws: Mapping[str, np.ndarray], baselines: Mapping[str, Mapping[str, float]],
                path, *, title: str = "") -> str:
    """Posterior of p* per family (violins, median and 90% interval) beside the baselines."""
    plt = _plt()
    fams = list(p_star_draws)
    fig, ax = plt.subplots(figsize=(max(7.5, 1.5 * len(fams) + 4.5), 4.8))
    pos = np.arange(len(fams))
    data = [np.asarray(p_star_draws[f], float) for f in fams]
    if all(d.size > 1 and np.ptp(d) > 0 for d in data):
        parts = ax.violinplot(data, positions=pos, widths=0.7, showextrema=False)
        for body in parts["bodies"]:
            body.set_facecolor("#4C72B0")
            body.set_alpha(0.35)
    q = np.array([[s["q05"], s["median"], s["q95"]] for s in map(interval, data)])
    ax.errorbar(pos, q[:, 1], yerr=[q[:, 1] - q[:, 0], q[:, 2] - q[:, 1]], fmt="o", color="#1f3b73",
                capsize=5, lw=1.5, label="p* (median, 90% interval)")
    markers = ["x", "D", "^", "v", "P", "*", "<", ">"]
    width = 0.32
    names = list(baselines)
    for k, name in enumerate(names):
        off = (k - (len(names) - 1) / 2) * (2 * width / max(len(names), 1))
        ax.scatter(pos + off, [baselines[name].get(f, np.nan) for f in fams], marker=markers[k % len(markers)],
                   s=36, zorder=3, label=name)
    ax.set_xticks(pos, fams)
    ax.set_ylabel("sampling ratio p (share of training tokens)")
    top = max(max(float(np.quantile(d, 0.995)) for d in data),
              max((max(b.values()) for b in baselines.values()), default=0.0))
    ax.set_ylim(0, min(1.0, top * 1.12 + 0.02))
    ax.set_title(title or "Recommended sampling ratios p* beside the baselines", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return str(path)


def plot_independence(families: Mapping[str, Mapping], path, *, material: float = 0.01,
                      share_min: float = 0.9, shift: float = 0.1) -> str:
    """The independence test per family (from `IndependenceResult.to_dict()["families"]`).

    Left: R² own and full with the own share; right: the largest cross-family effect per `shift`
    of the mixture with its 90% interval, a grey band where |effect| < `material`.
    """
    plt = _plt()
    fams = list(families)
    y = np.arange(len(fams))[::-1]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12.5, 0.7 * len(fams) + 2.2), sharey=True,
                                 gridspec_kw={"width_ratios": [1, 1.25]})
    r_own = np.array([families[f]["r2_own"] for f in fams])
    r_full = np.array([families[f]["r2_full"] for f in fams])
    ok = np.array([families[f]["verdict"] == "own ratio suffices" for f in fams])
    a1.barh(y + 0.18, r_full, height=0.34, color="#bbbbbb", label="R² with all ratios")
    a1.barh(y - 0.18, r_own, height=0.34, color=np.where(ok, "#4C72B0", "#DD8452"), label="R² own ratio only")
    for yi, f in zip(y, fams):
        a1.text(1.02, yi, f"share {families[f]['share_own']:.2f}", va="center", fontsize=8)
    a1.set_xlim(0, 1.25)
    a1.set_yticks(y, [f"{f}\n({families[f]['verdict']})" for f in fams], fontsize=8)
    a1.set_xlabel("variance of log-loss explained (R², within each (N, D))")
    a1.set_title(f"Own ratio's share of the explainable variance (needs ≥ {share_min:g})", fontsize=9)
    a1.set_ylim(-0.6, len(fams) - 0.4 + 0.55)
    a1.legend(fontsize=7, loc="upper center", ncol=2)
    eff = np.array([families[f]["top_effect"] for f in fams])
    lo = np.array([families[f]["top_interval"][0] for f in fams])
    hi = np.array([families[f]["top_interval"][1] for f in fams])
    a2.axvspan(-material, material, color="#dddddd", label=f"|effect| < {material:g} (immaterial)")
    a2.axvline(0, color="gray", lw=0.8)
    a2.errorbar(eff, y, xerr=[eff - lo, hi - eff], fmt="o", color="#333333", capsize=4)
    for yi, f, e in zip(y, fams, eff):
        a2.annotate(f"from {families[f]['top_family']}", (e, yi), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=7)
    a2.set_xlabel(f"largest cross-family effect on log-loss when {shift:g} of the mixture moves to "
                  "another family\n(own ratio fixed; 90% interval; negative = that family's data helps)")
    a2.set_title("Largest effect of another family's ratio", fontsize=9)
    a2.legend(fontsize=7, loc="upper center")
    span = max(float(np.max(np.abs(np.concatenate([lo, hi])))), material) * 1.15
    a2.set_xlim(-span, span)
    a2.grid(True, axis="x", alpha=0.3)
    fig.suptitle("Independence test: does each family's loss depend only on its own sampling ratio?", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return str(path)


def check_png(path) -> None:
    """Raises `DamagedFileError` naming `path` unless it is a PNG that matplotlib reads back."""
    from multiscale.errors import DamagedFileError

    with open(path, "rb") as f:
        head = f.read(8)
    if head != b"\x89PNG\r\n\x1a\n":
        raise DamagedFileError(f"{path} is not a PNG file")
    plt = _plt()
    img = plt.imread(path)
    if img.ndim != 3 or img.shape[0] < 50 or img.shape[1] < 50:
        raise DamagedFileError(f"{path}: unexpected image shape {img.shape}")
