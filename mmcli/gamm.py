"""Smooths + random effects -> one LMM fitted by REML, and back to curves with standard errors (gamm4).

A penalized smooth is a mixed model (Wood 2017, 6.6): its penalty's null space is fixed, its penalized part
a random effect with one variance, so lambda = sigma^2 / sigma_s^2. gamm4 builds exactly that model for lme4;
this module builds it for :func:`mmcli.lmm.fit_lmm` and maps the fit back (DESIGN.md 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from mmcli.design import categorical_columns, group_codes, lme4_order, model_matrix, response
from mmcli.errors import DataError, ModelError
from mmcli.formula import ModelSpec
from mmcli.lmm import LmmFit, ReTerm, _Problem, fit_lmm, indicator_term
from mmcli.smooths import MixedSmooth, Smooth, smooth_construct, smooth_to_mixed

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)
class GammFit:
    """A fitted additive mixed model: the LMM, the smooths, and the Bayesian covariance of the
    coefficients in the mixed parametrization gamma = [beta (parametric + null-space), c_1, ...]."""

    lmm: LmmFit
    spec: ModelSpec
    smooths: list[Smooth]
    mixed: list[MixedSmooth]
    smooth_terms: list[int]  # index in lmm.terms of each smooth's random part (-1: none, e.g. rank 0)
    cats: set[str]
    frame: pd.DataFrame
    Vg: np.ndarray  # Bayesian covariance of gamma' (sigma^2 (X~'V0^-1 X~ + P)^-1)
    edf: list[float]
    param_names: list[str]  # the parametric columns (before the smooths' null-space columns)
    notes: list[str] = field(default_factory=list)

    def lam(self, j: int) -> float | None:
        """lambda_j = sigma^2 / sigma_j^2 = 1 / theta_j^2 (None when the smooth's variance is zero)."""
        t = self.smooth_terms[j]
        if t < 0:
            return None
        th = float(self.lmm.theta[self._theta_index(t)])
        return 1.0 / th**2 if th > 0 else None

    def _theta_index(self, term_index: int) -> int:
        return int(sum(t.ntheta for t in self.lmm.terms[:term_index]))

    def _thetas(self) -> list[float]:
        return [float(self.lmm.theta[self._theta_index(t)]) if t >= 0 else 0.0 for t in self.smooth_terms]

    def gamma_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows of new data in the gamma' parametrization (random effects at zero)."""
        Xp = self._fixed_rows(frame)
        cols = [Xp]
        for sm, ms, t, th in zip(self.smooths, self.mixed, self.smooth_terms, self._thetas()):
            Xs = sm.predict_matrix(frame[sm.var].to_numpy(dtype=float))
            if t >= 0:
                cols.append(ms.random_matrix(Xs) * th)
        return np.column_stack(cols)

    def _fixed_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """[parametric columns, each smooth's null-space columns] in lmm.xnames order."""
        import pandas as pd

        train = self.frame
        both = pd.concat([train[[c for c in train.columns if c in frame.columns]], frame], ignore_index=True)
        Xp, names = model_matrix(self.spec.fixed, both, self.cats)
        Xp = Xp[len(train) :]
        full = {n: Xp[:, i] for i, n in enumerate(names)}
        for sm, ms in zip(self.smooths, self.mixed):
            Xs = sm.predict_matrix(frame[sm.var].to_numpy(dtype=float))
            Xf = ms.fixed_matrix(Xs)
            for i, n in enumerate(ms.fixed_names):
                full[n] = Xf[:, i]
        return np.column_stack([full[n] for n in self.lmm.xnames]) if self.lmm.xnames else np.zeros((len(frame), 0))

    def gamma_hat(self) -> np.ndarray:
        parts = [self.lmm.beta]
        for t, th in zip(self.smooth_terms, self._thetas()):
            if t >= 0:
                b = self.lmm.ranef[t][:, 0]
                parts.append(b / th if th > 0 else np.zeros_like(b))
        return np.concatenate(parts)

    def predict(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Population-level predictions (random effects at zero) and se = sqrt(x' Vp x) (DESIGN.md 4)."""
        G = self.gamma_matrix(frame)
        fit = G @ self.gamma_hat()
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", G, self.Vg, G), 0.0))
        return fit, se

    def smooth_curve(self, j: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One smooth's own contribution f_j(x) and its standard error (as mgcv's plot.gam)."""
        sm, ms = self.smooths[j], self.mixed[j]
        Xs = sm.predict_matrix(x)
        ncol = self.Vg.shape[0]
        G = np.zeros((x.size, ncol))
        for i, n in enumerate(ms.fixed_names):
            if n in self.lmm.xnames:
                G[:, self.lmm.xnames.index(n)] = ms.fixed_matrix(Xs)[:, i]
        off = len(self.lmm.xnames)
        for jj, (tt, th) in enumerate(zip(self.smooth_terms, self._thetas())):
            if tt < 0:
                continue
            q = self.lmm.terms[tt].nlevels
            if jj == j:
                G[:, off : off + q] = ms.random_matrix(Xs) * th
            off += q
        f = G @ self.gamma_hat()
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", G, self.Vg, G), 0.0))
        return f, se

    def coefficients(self, j: int) -> np.ndarray:
        """The smooth's coefficients in its constrained basis (mgcv's gam coefficients for the term)."""
        ms, t = self.mixed[j], self.smooth_terms[j]
        bf = np.array(
            [self.lmm.beta[self.lmm.xnames.index(n)] if n in self.lmm.xnames else 0.0 for n in ms.fixed_names]
        )
        br = self.lmm.ranef[t][:, 0] if t >= 0 else np.zeros(ms.rank)
        return ms.coefficients(br, bf)


def smooth_group_names(count: int) -> list[str]:
    """gamm4's names for the smooths' random parts: Xr, Xr.0, Xr.1, ..."""
    return ["Xr"] + [f"Xr.{i}" for i in range(count - 1)]


def fit_gamm(spec: ModelSpec, frame: pd.DataFrame, factors: set[str], *, reml: bool = True) -> GammFit:
    """Fit ``y ~ parametric + s(x1) + ... + (re terms)`` as one LMM (gamm4's construction, DESIGN.md 4)."""
    cats = categorical_columns(spec, frame, factors)
    if spec.response in cats:
        raise DataError(f"The response '{spec.response}' must be numeric; it was declared or read as a factor.")
    for s in spec.smooths:
        if s.var in cats:
            raise DataError(f"Cannot smooth '{s.var}': it is not a numeric column. A smooth needs numeric x.")
    y = response(frame, spec.response)
    Xp, pnames = model_matrix(spec.fixed, frame, cats)
    smooths: list[Smooth] = []
    mixed: list[MixedSmooth] = []
    X_cols, names = [Xp], list(pnames)
    for s in spec.smooths:
        sm = smooth_construct(frame[s.var].to_numpy(dtype=float), var=s.var, bs=s.bs, k=s.k)
        ms = smooth_to_mixed(sm)
        smooths.append(sm)
        mixed.append(ms)
        X_cols.append(ms.Xf)
        names += list(ms.fixed_names)
    if len(set(s.var for s in spec.smooths)) < len(spec.smooths):
        raise ModelError("Each column can be smoothed once: remove the repeated s(...) term.")
    X = np.column_stack(X_cols)
    # random parts of the smooths, then the formula's random-effects terms, in lme4's order
    tagged: list[tuple[ReTerm, int]] = []
    for j, (ms, gname) in enumerate(zip(mixed, smooth_group_names(len(mixed)))):
        if ms.rank == 0:
            continue
        Z = sp.csc_matrix(ms.Zr)
        levels = tuple(str(i + 1) for i in range(ms.rank))
        tagged.append((ReTerm(group=gname, names=(ms.term,), levels=levels, Z=Z, indicator=False), j))
    for rt in spec.random:
        codes, labels = group_codes(frame, rt.factors)
        T, tnames = model_matrix(rt.expr, frame, cats)
        tagged.append((indicator_term(rt.group, tnames, codes, labels, T), -1))
    if not tagged:
        raise ModelError(
            "The model has neither a smooth with a penalty nor a random-effects term; nothing to fit as a mixed model."
        )
    order = lme4_order([t.nlevels for t, _ in tagged])
    tagged = [tagged[i] for i in order]
    terms = [t for t, _ in tagged]
    fit = fit_lmm(X, y, terms, reml=reml, xnames=names)
    smooth_terms = [-1] * len(smooths)
    for i, (_, j) in enumerate(tagged):
        if j >= 0:
            smooth_terms[j] = i
    Vg, edf = _bayes_cov(fit, X, names, terms, [j for _, j in tagged], mixed, smooth_terms)
    return GammFit(
        lmm=fit,
        spec=spec,
        smooths=smooths,
        mixed=mixed,
        smooth_terms=smooth_terms,
        cats=cats,
        frame=frame,
        Vg=Vg,
        edf=edf,
        param_names=pnames,
    )


def _bayes_cov(
    fit: LmmFit,
    X: np.ndarray,
    names: list[str],
    terms: list[ReTerm],
    tags: list[int],
    mixed: list[MixedSmooth],
    smooth_terms: list[int],
) -> tuple[np.ndarray, list[float]]:
    """Vp in the parametrization gamma' = [beta, c_j] with b_j = theta_j c_j (stable when theta_j = 0):
    Vp = sigma^2 (X~'V0^{-1} X~ + diag(0, I))^{-1}, X~ = [X, theta_j Zr_j], V0 = I + Z_o Lambda_o Lambda_o' Z_o'
    over the other random effects (DESIGN.md 4). EDF_j = trace of the smooth's block of Vp X~'V^{-1}X~."""
    keep = [names.index(n) for n in fit.xnames]
    Xk = X[:, keep]
    cols = [Xk]
    k = 0
    thetas: dict[int, float] = {}
    for i, term in enumerate(terms):
        thetas[i] = float(fit.theta[k]) if term.ntheta == 1 else 0.0
        k += term.ntheta
    blocks = []
    scale = [np.ones(Xk.shape[1])]
    for j, ti in enumerate(smooth_terms):
        if ti < 0:
            continue
        Zr = terms[ti].zmat().toarray()
        cols.append(Zr)
        scale.append(np.full(Zr.shape[1], thetas[ti]))
        blocks.append((j, Zr.shape[1]))
    Xt = np.column_stack(cols)  # [X, Zr_j]: full rank; X~ = Xt diag(1, theta_j) is applied after the factor
    tscale = np.concatenate(scale)
    others = [t for t, tag in zip(terms, tags) if tag < 0]
    theta_o = []
    k = 0
    for t, tag in zip(terms, tags):
        if tag < 0:
            theta_o += list(fit.theta[k : k + t.ntheta])
        k += t.ntheta
    yrand = np.asarray(np.random.default_rng(0).standard_normal(Xt.shape[0]))  # any y: only L_XX is used
    prob = _Problem(Xt, yrand, others)
    f = prob.factor(np.array(theta_o))
    qR, p = prob.qR, Xt.shape[1]
    LXX = f.Lrest[qR : qR + p, qR : qR + p]
    A = (LXX @ LXX.T) * np.outer(tscale, tscale)  # X~' V0^{-1} X~
    P = np.zeros(p)
    P[Xk.shape[1] :] = 1.0
    H = A + np.diag(P)
    Hinv = sla.inv(H)
    Hinv = (Hinv + Hinv.T) / 2
    Vg = fit.sigma**2 * Hinv
    F = Hinv @ A
    edf = []
    off = Xk.shape[1]
    block_of = dict(blocks)
    for j, ms in enumerate(mixed):
        idx = [fit.xnames.index(n) for n in ms.fixed_names if n in fit.xnames]
        e = float(sum(F[i, i] for i in idx))
        if j in block_of:
            q = block_of[j]
            e += float(np.trace(F[off : off + q, off : off + q]))
            off += q
        edf.append(e)
    return Vg, edf


def gamm_dict(g: GammFit, base: dict[str, Any]) -> dict[str, Any]:
    """The `gamm` JSON of CONTRACT.md: the fit object plus the smooths."""
    d = dict(base)
    d["model"] = "gamm"
    d["smooths"] = [
        {
            "term": sm.term,
            "basis": sm.bs,
            "k": sm.k,
            "edf": g.edf[j],
            "knots": [float(v) for v in sm.knots],
            "lambda": g.lam(j),
            "variance": g.lmm.sigma**2 / lam if (lam := g.lam(j)) else 0.0,
            "coefficients": [float(c) for c in g.coefficients(j)],
        }
        for j, sm in enumerate(g.smooths)
    ]
    return d
