"""Point fit: Hoffmann et al. (2022) approach 3, vectorized over the start grid with jax.

Minimize, per family (or jointly when exponents are shared),

    sum_runs Huber_delta( LSE(a - alpha log N, b - beta log D, e) - gamma log p - log L ),

delta = 1e-3, with L-BFGS (written here in jax) from every point of the grid below; keep the start with
the lowest objective. ``A = exp(a)``, ``B = exp(b)``, ``E = exp(e)``. The ratio law
minimizes ``sum Huber(logc - gamma log p - log L)``; chinchilla drops the gamma term.

Start grid (DESIGN.md section 5): alpha, beta in {0, 0.5, ..., 2}; e in {-1, -0.5, ..., 1};
a, b in {0, 5, ..., 25}. gamma (not in Hoffmann et al.): {0, 0.3} -- log-loss is linear in
gamma given the rest, so two starts suffice (He et al. report gamma well inside [0, 0.5]);
9,000 starts per family in all. The ratio law's log c starts from the e grid. Every start
runs in float64, vectorized with vmap in chunks; starts still running are repacked every
ROUND evaluations so converged ones stop costing. Without shared exponents each family is its
own problem; with shared exponents all families are fitted jointly from each grid point (every
family starting at that point). log N and log D are centred internally (an exact
reparameterization, see `fit_arrays`).
"""

from __future__ import annotations

import itertools
import time
import warnings

import numpy as np
import pandas as pd

from multiscale.laws.data import FitData, prepare
from multiscale.laws.fits import PointFit
from multiscale.laws.forms import RAW_NAMES, Law, get_law, log_loss_from_raw, natural_from_raw

HUBER_DELTA = 1e-3
GRID = {
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
    "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.01, 5.0),
    "b": np.arange(0.0, 25.01, 5.0),
    "gamma": np.array([0.0, 0.3]),
    "logc": np.arange(-1.0, 1.01, 0.5),
}
MAX_ITERS = 600  # objective evaluations per start (one per L-BFGS trial step)
ROUND = 50  # evaluations between repacking the starts still running
MEMORY = 10  # L-BFGS curvature pairs
CHUNK = 1024
GRAD_TOL = 1e-10
# Stop when one step lowers the objective by less than this fraction of it.
FTOL = 1e-11


def start_grid(law: Law, grid: dict | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """(raw names, G x K array of starts): the Cartesian product of `GRID` (entries replaced
    by `grid`'s) for the law."""
    names = RAW_NAMES[law.name]
    g = {**GRID, **(grid or {})}
    unknown = set(grid or {}) - set(GRID)
    if unknown:
        raise ValueError(f"grid: unknown start parameters {sorted(unknown)}; known {sorted(GRID)}")
    pts = np.array(list(itertools.product(*[np.atleast_1d(g[n]) for n in names])), dtype=np.float64)
    return names, pts


def _huber(r, delta):
    import jax.numpy as jnp

    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _make_objective(law: Law, names, layout, n_fam: int):
    """objective(x, rows) where x is the flat parameter vector laid out by `layout`.

    layout: name -> (offset, size) with size F (per family) or 1 (shared).
    rows: (fam_R, cell_R, logp_R, logL_R, w_R, fam_C, logN_C, logD_C): the scale part
      LSE(a - alpha log N, b - beta log D, e) is computed once per distinct
      (family, N, D) cell C and gathered to the rows (runs share few (N, D) pairs).
    """
    import jax.numpy as jnp

    def unpack(x):
        return {n: x[o:o + s] for n, (o, s) in layout.items()}

    def pick(v, idx):
        return v[idx] if v.shape[0] > 1 else jnp.broadcast_to(v[0], idx.shape)

    def objective(x, rows):
        fam_R, cell_R, logp, logL, w, fam_C, logN_C, logD_C = rows
        th = unpack(x)
        if law.uses_scale:
            th_C = {n: pick(th[n], fam_C) for n in ("a", "b", "e", "alpha", "beta")}
            scale_C = log_loss_from_raw(law, th_C, logN_C, logD_C, 0.0 * logN_C, xp=jnp) \
                if not law.uses_ratio else log_loss_from_raw(
                    law, {**th_C, "gamma": 0.0}, logN_C, logD_C, 0.0 * logN_C, xp=jnp)
            pred = scale_C[cell_R]
        else:
            pred = pick(th["logc"], fam_R)
        if law.uses_ratio:
            pred = pred - pick(th["gamma"], fam_R) * logp
        return jnp.sum(w * _huber(pred - logL, HUBER_DELTA))

    return objective, unpack


def _cells(fam_R, logN_R, logD_R):
    """Distinct (family, N, D) cells: (cell_R, fam_C, logN_C, logD_C)."""
    keys = np.stack([fam_R.astype(float), logN_R, logD_R], axis=1)
    uniq, cell_R = np.unique(keys, axis=0, return_inverse=True)
    return cell_R.reshape(-1).astype(np.int32), uniq[:, 0].astype(np.int32), uniq[:, 1], uniq[:, 2]


def _vdot(u, v):
    """Dot product as multiply-and-sum: under vmap this stays elementwise (a batched
    dot_general of 6-vectors is far slower on CPU)."""
    import jax.numpy as jnp

    return jnp.sum(u * v, axis=-1)


def _norm(u):
    import jax.numpy as jnp

    return jnp.sqrt(jnp.sum(u * u, axis=-1))


def _lbfgs_steps(objective, state, rows, n_steps, tol=GRAD_TOL, memory=MEMORY):
    """Up to `n_steps` objective evaluations of L-BFGS (two-loop recursion; backtracking
    Armijo line search with quadratic interpolation, Nocedal & Wright sec. 3.5) from `state`.

    Each step evaluates the objective and its gradient at ONE trial point: if the Armijo
    condition holds the iterate moves and the next direction is computed, otherwise the
    trial step shrinks and is retried at the next step. Under vmap over thousands of starts
    this costs one evaluation per step for every start, instead of letting the slowest line
    search in the batch set the pace. A start is done at ``|grad| < tol``, when an accepted
    step lowers the objective by less than FTOL of its value, or after 30 rejected trials.
    """
    import jax
    import jax.numpy as jnp

    vg = jax.value_and_grad(lambda x: objective(x, rows))
    c1 = 1e-4
    k_end = state["k"] + n_steps

    def direction(g, S, Y, valid):
        q = g
        alphas = []
        for i in range(memory):  # newest (0) to oldest
            sy = _vdot(S[i], Y[i])
            rho = jnp.where(valid[i], 1.0 / jnp.where(sy == 0, 1.0, sy), 0.0)
            a = rho * _vdot(S[i], q)
            q = q - a * Y[i]
            alphas.append((a, rho))
        yy = _vdot(Y[0], Y[0])
        h0 = jnp.where(valid[0] & (yy > 0), _vdot(S[0], Y[0]) / jnp.where(yy > 0, yy, 1.0), 1.0)
        r = h0 * q
        for i in reversed(range(memory)):  # oldest to newest
            a, rho = alphas[i]
            b = rho * _vdot(Y[i], r)
            r = r + S[i] * (a - b)
        return -r

    def cond(c):
        return (c["k"] < k_end) & ~c["done"]

    def body(c):
        x, fx, g, fresh = c["x"], c["f"], c["g"], c["fresh"]
        dn = direction(g, c["S"], c["Y"], c["valid"])
        gdn = _vdot(g, dn)
        bad = ~(gdn < 0) | ~jnp.all(jnp.isfinite(dn))
        dn = jnp.where(bad, -g, dn)
        gdn = jnp.where(bad, -_vdot(g, g), gdn)
        d = jnp.where(fresh, dn, c["d"])
        gd = jnp.where(fresh, gdn, c["gd"])
        t_first = jnp.where(c["it"] == 0, jnp.minimum(1.0, 1.0 / (_norm(g) + 1e-300)), 1.0)
        t = jnp.where(fresh, t_first, c["t"])
        xt = x + t * d
        ft, gt = vg(xt)
        ok = jnp.isfinite(ft) & jnp.all(jnp.isfinite(gt))
        accept = ok & (ft <= fx + c1 * t * gd)
        # accepted: move, store the curvature pair
        sv, yv = xt - x, gt - g
        push = accept & (_vdot(sv, yv) > 1e-300)
        S = jnp.where(push, jnp.concatenate([sv[None], c["S"][:-1]]), c["S"])
        Y = jnp.where(push, jnp.concatenate([yv[None], c["Y"][:-1]]), c["Y"])
        valid = jnp.where(push, jnp.concatenate([jnp.ones(1, bool), c["valid"][:-1]]), c["valid"])
        done_acc = (_norm(gt) < tol) | (fx - ft <= FTOL * jnp.abs(fx))
        # rejected: shrink the trial step by quadratic interpolation within [0.02 t, 0.5 t]
        denom = 2.0 * (ft - fx - gd * t)
        tq = jnp.where(ok & (denom > 0), -gd * t * t / jnp.where(ok & (denom > 0), denom, 1.0), 0.02 * t)
        t_next = jnp.clip(tq, 0.02 * t, 0.5 * t)
        fails = jnp.where(accept, 0, c["fails"] + 1)
        return dict(
            x=jnp.where(accept, xt, x), f=jnp.where(accept, ft, fx), g=jnp.where(accept, gt, g),
            S=S, Y=Y, valid=valid, k=c["k"] + 1, it=c["it"] + accept.astype(jnp.int32),
            done=jnp.where(accept, done_acc, fails >= 30), d=d, gd=gd, t=t_next, fresh=accept,
            fails=fails)

    return jax.lax.while_loop(cond, body, state)


def _lbfgs_init(objective, x0, rows, tol=GRAD_TOL, memory=MEMORY):
    """L-BFGS state at x0: value, gradient, empty curvature memory."""
    import jax
    import jax.numpy as jnp

    f0, g0 = jax.value_and_grad(lambda x: objective(x, rows))(x0)
    dim = x0.shape[0]
    zero = jnp.zeros((), jnp.int32)
    return dict(x=x0, f=f0, g=g0, S=jnp.zeros((memory, dim)), Y=jnp.zeros((memory, dim)),
                valid=jnp.zeros(memory, bool), k=zero, it=zero, done=_norm(g0) < tol,
                d=jnp.zeros(dim), gd=jnp.zeros(()), t=jnp.ones(()), fresh=jnp.ones((), bool),
                fails=zero)


_SOLVERS: dict = {}


def _solver(law: Law, names, layout, n_fam: int):
    """Jitted, vmapped ``init(X0, rows)`` and ``steps(state, rows)`` (ROUND iterations),
    cached so that every family, chunk and call reuses the compilations."""
    import jax

    key = (law.name, tuple(names), tuple(sorted(layout.items())), n_fam)
    if key not in _SOLVERS:
        objective, _ = _make_objective(law, names, layout, n_fam)
        init = jax.jit(jax.vmap(lambda x0, rows: _lbfgs_init(objective, x0, rows), in_axes=(0, None)))
        steps = jax.jit(jax.vmap(lambda st, rows: _lbfgs_steps(objective, st, rows, ROUND),
                                 in_axes=(0, None)))
        _SOLVERS[key] = (init, steps)
    return _SOLVERS[key]


def _solve_starts(solver, X0_GxK: np.ndarray, rows, chunk: int, max_iters: int):
    """Run L-BFGS from every start: rounds of ROUND iterations; after each round the starts
    still running are packed together (into a few fixed bucket sizes, so compilations stay
    few), so that converged starts stop costing anything. Returns numpy
    (x, value, grad_norm, iterations)."""
    import jax
    import jax.numpy as jnp

    init, steps = solver
    G = X0_GxK.shape[0]
    chunk = min(chunk, G)
    small = max(1, chunk // 16)

    def batches(idx, sizes):
        for s0 in range(0, len(idx), chunk):
            part = idx[s0:s0 + chunk]
            size = next(b for b in sizes if b >= len(part))
            yield part, np.concatenate([part, np.repeat(part[:1], size - len(part))])

    state = None
    for part, padded in batches(np.arange(G), (chunk,)):
        st = jax.tree.map(np.asarray, init(jnp.asarray(X0_GxK[padded]), rows))
        if state is None:
            state = {k: np.zeros((G,) + v.shape[1:], v.dtype) for k, v in st.items()}
        for k, v in st.items():
            state[k][part] = v[:len(part)]
    while True:
        active = np.flatnonzero(~state["done"] & (state["k"] < max_iters))
        if len(active) == 0:
            break
        for part, padded in batches(active, (small, chunk)):
            sub = {k: jnp.asarray(v[padded]) for k, v in state.items()}
            st = jax.tree.map(np.asarray, steps(sub, rows))
            for k, v in st.items():
                state[k][part] = v[:len(part)]
    gn = np.sqrt(np.sum(state["g"] ** 2, axis=-1))
    return state["x"], state["f"], gn, state["k"]


def _bucket(n: int) -> int:
    """Round a row count up to a power of two (>= 16), so tables of similar size share one
    compilation; padded rows carry weight 0."""
    return max(16, 1 << (int(n) - 1).bit_length())


def _pad(a, m: int):
    a = np.asarray(a)
    return np.concatenate([a, np.zeros(m - len(a), dtype=a.dtype)])


def _layout(names, shared, n_fam):
    layout, off = {}, 0
    for n in names:
        size = 1 if n in shared else n_fam
        layout[n] = (off, size)
        off += size
    return layout, off


def _expand_starts(names, layout, dim, G_pts):
    """Grid points (G x K, one value per raw name) -> flat start vectors (G x dim)."""
    X0 = np.zeros((G_pts.shape[0], dim))
    for k, n in enumerate(names):
        o, s = layout[n]
        X0[:, o:o + s] = G_pts[:, k:k + 1]
    return X0


def fit_arrays(law: Law, data: FitData, shared=(), *, max_iters: int = MAX_ITERS,
               starts: np.ndarray | None = None, chunk: int = CHUNK, grid: dict | None = None) -> dict:
    """Approach-3 fit on prepared arrays. Returns raw params ``name -> (F,)`` and extras.

    `starts` (G x K in `RAW_NAMES[law]` order) replaces the default grid (the bootstrap
    uses this to restart from the full-data optimum).

    Internally log N and log D are centred on the table's geometric means (N_ref, D_ref)
    and ``a' = a - alpha log N_ref``, ``b' = b - beta log D_ref`` are optimized: the same
    objective and the same starts (mapped exactly), but far better conditioned for L-BFGS.
    """
    import jax
    import jax.numpy as jnp

    names, G_pts = start_grid(law, grid)
    if starts is not None:
        G_pts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    F = data.n_families
    lN0, lD0 = np.log(data.N_ref), np.log(data.D_ref)
    col = {n: k for k, n in enumerate(names)}
    P = G_pts.copy()
    if law.uses_scale:
        P[:, col["a"]] -= P[:, col["alpha"]] * lN0
        P[:, col["b"]] -= P[:, col["beta"]] * lD0
    logN_c, logD_c = data.logN_R - lN0, data.logD_R - lD0
    with jax.enable_x64(True):
        if shared:
            layout, dim = _layout(names, shared, F)
            cell_R, fam_C, logN_C, logD_C = _cells(data.fam_R, logN_c, logD_c)
            R, C = _bucket(data.n_rows), _bucket(len(logN_C))
            rows = tuple(jnp.asarray(a) for a in (
                _pad(data.fam_R, R), _pad(cell_R, R), _pad(data.logp_R, R), _pad(data.logL_R, R),
                _pad(np.ones(data.n_rows), R), _pad(fam_C, C), _pad(logN_C, C), _pad(logD_C, C)))
            solve = _solver(law, names, layout, F)
            x, val, gn, it = _solve_starts(solve, _expand_starts(names, layout, dim, P), rows, chunk, max_iters)
            val = np.where(np.isfinite(val), val, np.inf)
            best = int(np.argmin(val))
            raw = {n: np.broadcast_to(x[best, o:o + s], (F,)).copy() for n, (o, s) in layout.items()}
            best_F = np.full(F, best)
            obj_F = np.full(F, val[best])
            gn_F = np.full(F, gn[best])
            iters = int(it.max())
        else:
            # One problem per family; rows and cells padded to common shapes (weight 0) so
            # that one compiled solver serves every family.
            layout, dim = _layout(names, (), 1)
            solve = _solver(law, names, layout, 1)
            X0 = _expand_starts(names, layout, dim, P)
            per = []
            for j in range(F):
                sel = np.flatnonzero(data.fam_R == j)
                cell_R, _, logN_C, logD_C = _cells(np.zeros(len(sel), np.int32), logN_c[sel], logD_c[sel])
                per.append((sel, cell_R, logN_C, logD_C))
            R = _bucket(max(len(p[0]) for p in per))
            C = _bucket(max(len(p[2]) for p in per))
            raw = {n: np.zeros(F) for n in names}
            best_F, obj_F, gn_F = np.zeros(F, int), np.zeros(F), np.zeros(F)
            iters = 0
            for j, (sel, cell_R, logN_C, logD_C) in enumerate(per):
                n, c = len(sel), len(logN_C)
                rows = tuple(jnp.asarray(a) for a in (
                    np.zeros(R, np.int32), _pad(cell_R.astype(np.int32), R), _pad(data.logp_R[sel], R),
                    _pad(data.logL_R[sel], R), _pad(np.ones(n), R), np.zeros(C, np.int32),
                    _pad(logN_C, C), _pad(logD_C, C)))
                x, val, gn, it = _solve_starts(solve, X0, rows, chunk, max_iters)
                val = np.where(np.isfinite(val), val, np.inf)
                b = int(np.argmin(val))
                for name, (o, s) in layout.items():
                    raw[name][j] = x[b, o]
                best_F[j], obj_F[j], gn_F[j] = b, val[b], gn[b]
                iters = max(iters, int(it.max()))
    if law.uses_scale:
        raw["a"] = raw["a"] + raw["alpha"] * lN0
        raw["b"] = raw["b"] + raw["beta"] * lD0
    return {"raw": raw, "best_F": best_F, "objective_F": obj_F, "grad_norm_F": gn_F,
            "starts": G_pts, "names": names, "iters": iters}


def fit_point(df: pd.DataFrame, law: str = "multilingual", shared=(), *,
              max_iters: int = MAX_ITERS, grid: dict | None = None) -> PointFit:
    """Fit `law` to a run table by Hoffmann et al. approach 3 (see module docstring).

    Args:
      df: run table (`multiscale.runs` columns; loss in nats/token).
      law: "multilingual", "chinchilla" or "ratio".
      shared: exponents shared by all families, e.g. ("alpha", "beta") or "alpha,beta".
      max_iters: objective evaluations (L-BFGS trial steps) per start.
      grid: replaces entries of the start grid `GRID` (e.g. ``{"a": [5.0]}``); the default
        is the full grid of DESIGN.md.

    Returns:
      `PointFit` with the best start's parameters per family.
    """
    law_obj = get_law(law)
    t0 = time.perf_counter()
    df, data, shared = prepare(df, law_obj, shared)
    res = fit_arrays(law_obj, data, shared, max_iters=max_iters, grid=grid)
    slow = [f for f, g in zip(data.families, res["grad_norm_F"]) if not g < 1e-6]
    if slow:
        warnings.warn(f"L-BFGS stopped with gradient norm above 1e-6 for {slow} after {max_iters} "
                      "iterations: raise max_iters, or share exponents if the table cannot pin "
                      "the law down", RuntimeWarning, stacklevel=2)
    nat = natural_from_raw(law_obj, res["raw"])
    draws = {n: np.asarray(nat[n], dtype=float)[None, :] for n in law_obj.params}
    fams = data.families
    counts = data.counts_F()
    return PointFit(
        law=law_obj, families=fams, shared=shared, draws=draws, N_ref=data.N_ref,
        D_ref=data.D_ref, n_runs={f: int(counts[j]) for j, f in enumerate(fams)},
        objective={f: float(res["objective_F"][j]) for j, f in enumerate(fams)},
        start={f: {n: float(res["starts"][res["best_F"][j], k]) for k, n in enumerate(res["names"])}
               for j, f in enumerate(fams)},
        grad_norm={f: float(res["grad_norm_F"][j]) for j, f in enumerate(fams)},
        n_starts=int(res["starts"].shape[0]), seconds=time.perf_counter() - t0)
