"""Several smoothing parameters by REML or ML: mgcv's ``gam(method = "REML" | "ML")`` for a Gaussian model, in
dense algebra (Wood 2011; Wood 2017 §6.2, §6.6). Numbers only.

The model: y = Xβ + ε, ε ~ N(0, φW⁻¹), with the improper Gaussian prior on β of precision S_λ/φ,
S_λ = Σⱼ λⱼ Sⱼ. Each Sⱼ acts on the columns of one *block* (a smooth, or a random intercept as mgcv's
``s(g, bs = "re")`` with S = I); the penalties of one block may overlap (te). With ρ = log λ, the penalized
least-squares fit at ρ is β̂ = H⁻¹X'Wy, H = X'WX + S_λ, D_p = ‖y − Xβ̂‖²_W + β̂'S_λβ̂, and with φ profiled out

  REML:  V(ρ) = (n − M_p)(1 + log(2π D_p / (n − M_p))) + log|H| − log|S_λ|₊ − Σ log wᵢ
  ML:    V(ρ) = n (1 + log(2π D_p / n)) + log|U₊'HU₊| − log|S_λ|₊ − Σ log wᵢ

where M_p is the dimension of the null space of the total penalty, U₊ an orthonormal basis of its range, and
log|S_λ|₊ the log of the product of the positive eigenvalues of S_λ (computed block by block on each block's
range space, which does not depend on λ). V is −2 times mgcv's REML (or ML) score ``gcv.ubre``; for a model
whose penalties do not overlap it is the REML criterion of the equivalent mixed model, as lme4 reports it.
The gradient is analytic: ∂V/∂ρⱼ = c λⱼ β̂'Sⱼβ̂ / D_p + λⱼ tr(H⁻¹Sⱼ) − λⱼ tr(S_λ⁺Sⱼ) (c = n − M_p, and
U₊'HU₊ in place of H for ML). It is minimized by L-BFGS-B from the best of a few starts, each λⱼ kept
where λⱼ tr(Sⱼ) is within 1e-9 to 1e9 times tr(X'WX) on its columns (beyond, the term is as good as
unpenalized or fully smoothed, and H would be singular to working precision), then polished by Newton steps
with a finite-difference Hessian of the gradient. log|S_λ|₊ of overlapping penalties whose λ differ by many
orders is split by the dominant penalty (:func:`logdet_inverse`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize

from mmcli.errors import ModelError

RHO_RANGE = math.log(1e9)  # λⱼ Sⱼ is kept within 1e-9 .. 1e9 times the information X'WX on its columns
NEWTON_DECREMENT = 1e-8  # converged when V is this close to the minimum of its local quadratic (or |∂V/∂ρ| < 1e-5)
RANGE_TOL = 1e-11  # an eigenvalue of a block's total penalty (unit norm) above this spans its range


@dataclass(frozen=True, eq=False)
class Penalty:
    """One penalty: its matrix on the columns ``cols`` of X, and the index of its block."""

    cols: np.ndarray
    S: np.ndarray
    block: int


@dataclass(frozen=True, eq=False)
class PenalizedModel:
    """X, y and the penalties; ``weights`` (prior weights) and ``offset`` as in mmcli's other models."""

    X: np.ndarray
    y: np.ndarray
    penalties: list[Penalty]
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class GamFit:
    """The fit at the optimal ρ: coefficients, their Bayesian covariance Vp = φ̂ H⁻¹ (mgcv's ``Vp``), the
    EDF of each coefficient (diag of H⁻¹X'WX), the smoothing parameters, the scale φ̂ (REML: D_p/(n − M_p);
    ML: RSS/(n − EDF), as mgcv reports it), the criterion V and mgcv's score V/2, and how the optimizer ran."""

    beta: np.ndarray
    Vp: np.ndarray
    edf: np.ndarray
    lam: np.ndarray
    scale: float
    criterion: float
    reml: bool
    n: int
    Mp: int
    fitted: np.ndarray
    converged: bool
    optimizer: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """mgcv's ``gcv.ubre``: the negative restricted (or marginal) log-likelihood, V/2."""
        return self.criterion / 2


class _Problem:
    """Everything that does not depend on ρ, formed once: X'WX, X'Wy, y'Wy and each block's range space."""

    def __init__(self, model: PenalizedModel, reml: bool):
        X = np.asarray(model.X, dtype=float)
        y = np.asarray(model.y, dtype=float)
        if model.offset is not None:
            y = y - model.offset
        self.ldw = 0.0
        if model.weights is not None:
            sw = np.sqrt(model.weights)
            X, y = X * sw[:, None], y * sw
            self.ldw = float(np.sum(np.log(model.weights)))
        self.Xw, self.yw = X, y
        self.n, self.p = X.shape
        self.XtX = X.T @ X
        self.Xty = X.T @ y
        self.reml = reml
        self.pens = model.penalties
        self.full = []  # each penalty as a p x p matrix
        for pen in self.pens:
            M = np.zeros((self.p, self.p))
            M[np.ix_(pen.cols, pen.cols)] = pen.S
            self.full.append(M)
        self.blocks: list[tuple[np.ndarray, list[int], np.ndarray]] = []  # (cols, penalties, range basis)
        rank = 0
        for idx in _overlapping(self.full):
            cols = np.flatnonzero(sum(np.abs(self.full[j]).sum(axis=0) for j in idx))
            tot = np.sum([self.full[j][np.ix_(cols, cols)] / np.linalg.norm(self.pens[j].S) for j in idx], axis=0)
            d, U = np.linalg.eigh((tot + tot.T) / 2)
            U = U[:, d > RANGE_TOL * d.max()]
            self.blocks.append((cols, idx, U))
            rank += U.shape[1]
        self.Mp = self.p - rank
        if self.n - self.Mp <= 0:
            raise ModelError(f"The model has {self.p} coefficients ({self.Mp} unpenalized) for {self.n} rows.")
        Uall = np.zeros((self.p, rank))
        k = 0
        for cols, _, U in self.blocks:
            Uall[np.ix_(cols, np.arange(k, k + U.shape[1]))] = U
            k += U.shape[1]
        self.Uall = Uall
        # the scale of each penalty against the data's information on its columns, for the bounds on ρ
        ref = [
            math.log(float(np.trace(self.XtX[np.ix_(pen.cols, pen.cols)])) / float(np.trace(pen.S)))
            for pen in self.pens
        ]
        self.lower = np.array(ref) - RHO_RANGE
        self.upper = np.array(ref) + RHO_RANGE
        self.evals = 0

    def at(self, rho: np.ndarray) -> dict[str, Any]:
        """β̂, D_p, V and its gradient at ρ."""
        self.evals += 1
        lam = np.exp(rho)
        Sl = sum(lj * Sj for lj, Sj in zip(lam, self.full)) if self.full else np.zeros((self.p, self.p))
        H = self.XtX + Sl
        cH = _chol(H)
        beta = scipy.linalg.cho_solve(cH, self.Xty)
        r = self.yw - self.Xw @ beta
        Dp = float(r @ r + beta @ Sl @ beta)
        Hinv = scipy.linalg.cho_solve(cH, np.eye(self.p))
        ld_S, trS = 0.0, np.zeros(lam.size)
        for cols, idx, U in self.blocks:
            parts = [U.T @ self.full[j][np.ix_(cols, cols)] @ U for j in idx]
            ld, Minv = logdet_inverse([lam[j] * P for j, P in zip(idx, parts)])
            ld_S += ld
            for j, P in zip(idx, parts):
                trS[j] = float(np.sum(Minv * P))
        if self.reml:
            c = self.n - self.Mp
            ld_H = 2 * float(np.sum(np.log(np.diag(cH[0]))))
            trH = np.array([float(np.sum(Hinv * Sj)) for Sj in self.full])
        else:
            c = self.n
            Hpp = self.Uall.T @ H @ self.Uall
            cP = _chol(Hpp)
            ld_H = 2 * float(np.sum(np.log(np.diag(cP[0]))))
            Pinv = scipy.linalg.cho_solve(cP, np.eye(Hpp.shape[0]))
            trH = np.array([float(np.sum(Pinv * (self.Uall.T @ Sj @ self.Uall))) for Sj in self.full])
        V = c * (1 + math.log(2 * math.pi * Dp / c)) + ld_H - ld_S - self.ldw
        bSb = np.array([float(beta @ Sj @ beta) for Sj in self.full])
        grad = lam * (c * bSb / Dp + trH - trS)
        return {"V": V, "grad": grad, "beta": beta, "Dp": Dp, "Hinv": Hinv, "lam": lam, "c": c}


def _overlapping(full: list[np.ndarray]) -> list[list[int]]:
    """The penalties in groups whose columns overlap (a te's margins share theirs; a t2's blocks, an s() and a
    random intercept stand alone), each group with one range space."""
    support = [set(np.flatnonzero(np.abs(S).sum(axis=0)).tolist()) for S in full]
    groups: list[tuple[set[int], list[int]]] = []
    for j, sj in enumerate(support):
        hit = [g for g in groups if g[0] & sj]
        merged = (set(sj).union(*(g[0] for g in hit)), sorted([j, *(i for g in hit for i in g[1])]))
        groups = [g for g in groups if g not in hit] + [merged]
    return sorted((g[1] for g in groups), key=lambda idx: idx[0])


def logdet_inverse(Ms: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """log|M| and M⁻¹ for M = Σ Mⱼ, positive definite, whose terms may differ in size by many orders (λ₁S₁ +
    λ₂S₂ of a te with λ₁/λ₂ = 1e15): Wood's (2011, appendix B) idea of splitting off the dominant penalty,
    one level deep. With Mₐ the largest term, U its range and N its null space (from its structure, not its
    size), M = [[A, B], [B', D]] in the basis [U, N], D and B holding the other terms only, and
    log|M| = log|A| + log|D − B'A⁻¹B|; each factor is well conditioned, and M⁻¹ follows blockwise."""
    M = np.sum(Ms, axis=0)
    if len(Ms) == 1:
        c = _chol(M)
        return 2 * float(np.sum(np.log(np.diag(c[0])))), scipy.linalg.cho_solve(c, np.eye(M.shape[0]))
    a = int(np.argmax([np.linalg.norm(Mj) for Mj in Ms]))
    d, V = np.linalg.eigh(Ms[a] / np.linalg.norm(Ms[a]))
    keep = d > RANGE_TOL * d.max()
    U, N = V[:, keep], V[:, ~keep]
    A = U.T @ M @ U
    cA = _chol(A)
    ld = 2 * float(np.sum(np.log(np.diag(cA[0]))))
    Ainv = scipy.linalg.cho_solve(cA, np.eye(A.shape[0]))
    if N.shape[1] == 0:
        return ld, U @ Ainv @ U.T
    rest = np.sum([Mj for j, Mj in enumerate(Ms) if j != a], axis=0)
    B = U.T @ rest @ N
    P = N.T @ rest @ N - B.T @ Ainv @ B
    cP = _chol(P)
    ld += 2 * float(np.sum(np.log(np.diag(cP[0]))))
    Pinv = scipy.linalg.cho_solve(cP, np.eye(P.shape[0]))
    AB = Ainv @ B
    T = np.column_stack([U, N])
    inv = np.block([[Ainv + AB @ Pinv @ AB.T, -AB @ Pinv], [-Pinv @ AB.T, Pinv]])
    return ld, T @ inv @ T.T


def _chol(A: np.ndarray) -> tuple[np.ndarray, bool]:
    """Cholesky factor (upper) of a symmetric positive definite matrix, after symmetrizing."""
    try:
        return scipy.linalg.cho_factor((A + A.T) / 2, lower=False)
    except np.linalg.LinAlgError:
        raise ModelError(
            "The penalized model matrix is not of full rank: some coefficients are not identifiable "
            "(a smooth and a parametric term may overlap)."
        ) from None


def fit_gam(model: PenalizedModel, *, reml: bool = True, rho: np.ndarray | None = None) -> GamFit:
    """The smoothing parameters by REML (or ML) and the fit there (see the module docstring). With ``rho``
    given, everything is evaluated at those log smoothing parameters instead."""
    prob = _Problem(model, reml)
    m = len(prob.pens)
    record: dict[str, Any] = {
        "name": "L-BFGS-B on log(lambda), then Newton",
        "bounds": [[float(a), float(b)] for a, b in zip(prob.lower, prob.upper)],
    }
    if rho is None:
        rho, converged = _optimize(prob, m, record)
    else:
        rho, converged = np.asarray(rho, dtype=float), True
    at = prob.at(rho)
    record.update(
        {"evaluations": prob.evals, "rho": [float(v) for v in rho], "gradient": [float(g) for g in at["grad"]]}
    )
    XtX = prob.XtX
    edf = np.einsum("ij,ji->i", at["Hinv"], XtX)
    if reml:
        scale = at["Dp"] / at["c"]
    else:  # mgcv's scale for an ML fit: the residual sum of squares over n - EDF
        res = prob.yw - prob.Xw @ at["beta"]
        scale = float(res @ res) / (prob.n - float(edf.sum()))
    fitted = np.asarray(model.X, dtype=float) @ at["beta"] + (model.offset if model.offset is not None else 0.0)
    return GamFit(
        beta=at["beta"],
        Vp=scale * at["Hinv"],
        edf=edf,
        lam=at["lam"],
        scale=scale,
        criterion=at["V"],
        reml=reml,
        n=prob.n,
        Mp=prob.Mp,
        fitted=fitted,
        converged=converged,
        optimizer=record,
    )


def _optimize(prob: _Problem, m: int, record: dict[str, Any]) -> tuple[np.ndarray, bool]:
    """L-BFGS-B from the best of a few common starting values, then Newton steps to a tight gradient."""
    if m == 0:
        return np.zeros(0), True
    mid = (prob.lower + prob.upper) / 2
    starts = [np.clip(np.full(m, v), prob.lower, prob.upper) for v in (0.0, -4.0, 4.0)] + [mid]
    rho0 = min(starts, key=lambda s: prob.at(s)["V"])

    def fun(r: np.ndarray) -> tuple[float, np.ndarray]:
        a = prob.at(r)
        return a["V"], a["grad"]

    bounds = list(zip(prob.lower, prob.upper))
    res = scipy.optimize.minimize(
        fun, rho0, jac=True, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 2000}
    )
    rho = np.clip(res.x, prob.lower, prob.upper)
    rho, newton, dec = _newton(prob, rho)
    g = prob.at(rho)["grad"]
    free = (rho > prob.lower + 1e-6) & (rho < prob.upper - 1e-6)
    converged = bool(np.all(np.abs(g[free]) < 1e-5)) or dec < NEWTON_DECREMENT
    record.update(
        {
            "message": str(res.message),
            "newton_steps": newton,
            "newton_decrement": dec,
            "start": [float(v) for v in rho0],
        }
    )
    return rho, converged


def _newton(prob: _Problem, rho: np.ndarray, steps: int = 20) -> tuple[np.ndarray, int, float]:
    """Newton steps on the free (off-bound) ρ with a central-difference Hessian of the analytic gradient,
    halving the step until V does not rise. Returns ρ, the steps taken and the last Newton decrement
    ½ g'|Ĥ|⁻¹g: how far V is, on the local quadratic, above the minimum."""
    taken, dec = 0, 0.0
    cur = prob.at(rho)
    for _ in range(steps):
        free = np.flatnonzero((rho > prob.lower + 1e-6) & (rho < prob.upper - 1e-6))
        if free.size == 0 or np.max(np.abs(cur["grad"][free])) < 1e-9:
            dec = 0.0
            break
        h = 1e-4
        Hs = np.zeros((free.size, free.size))
        for a, i in enumerate(free):
            e = np.zeros_like(rho)
            e[i] = h
            Hs[:, a] = (prob.at(rho + e)["grad"][free] - prob.at(rho - e)["grad"][free]) / (2 * h)
        Hs = (Hs + Hs.T) / 2
        w, Q = np.linalg.eigh(Hs)
        gq = Q.T @ cur["grad"][free]
        step = -(Q @ (gq / np.maximum(np.abs(w), 1e-8)))
        dec = float(0.5 * np.sum(gq**2 / np.maximum(np.abs(w), 1e-8)))
        if dec < NEWTON_DECREMENT / 100:
            break
        t = 1.0
        while t > 1e-6:
            trial = rho.copy()
            trial[free] = np.clip(rho[free] + t * step, prob.lower[free], prob.upper[free])
            new = prob.at(trial)
            if new["V"] <= cur["V"] + 1e-12 * abs(cur["V"]):
                break
            t /= 2
        if t <= 1e-6:
            break
        rho, cur = trial, new
        taken += 1
    return rho, taken, dec
