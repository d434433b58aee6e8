"""mgcv-compatible smooth bases: ``cr`` and ``cs`` cubic regression splines, the ``rk`` spline, and
their mixed-model form.

Everything here follows mgcv 1.8-41 (Wood 2017, *Generalized Additive Models*, 2nd ed.):

- ``smooth.construct.cr.smooth.spec`` and its C routine ``crspl``/``getFS`` (Wood 2017 §5.3.1): knots,
  the matrix F mapping knot values to second derivatives, the basis X and the penalty S;
- ``smooth.construct.cs.smooth.spec``: the same basis with the null space shrunk (Wood 2017 §5.3.1);
- ``smoothCon(..., absorb.cons = TRUE, scale.penalty = TRUE)``: the centring constraint C = colMeans(X)
  absorbed by a Householder reflection, and the penalty scaled by ‖S‖₁ / ‖X‖∞²;
- ``PredictMat``: the same constrained basis at new x, extrapolated linearly beyond the end knots;
- ``smooth2random``: S = U D U', X U₊ D₊^(-1/2) a random effect and X U₀ fixed (Wood 2017 §6.6).

The ``rk`` kind is Wood (2006) §3.2's reproducing-kernel cubic spline on [0, 1], given the
same constraint absorption and scaling so that gamm can treat it as it treats ``cr``. mgcv has no ``rk``
basis, so it mirrors no mgcv number and is checked only by its own properties.

Conventions worth knowing (all as mgcv does them):

- ``Smooth.F`` is F = [0; B⁻¹D; 0] (k×k, row j gives the second derivative at knot j). mgcv stores the
  transpose, as the flat column-major vector ``sm$F`` of its C code.
- The constraint is computed from the *unscaled* basis, the penalty is scaled *before* the constraint is
  absorbed, and ``S_scale`` is the divisor (mgcv's ``S.scale``).
- ``cs`` shrinks the penalty's two null eigenvectors. Their rotation within the null space is not fixed by
  the mathematics; see :func:`cs_shrink` for the choice mgcv makes in practice and how it is reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmcli.crspline import CS_SHRINK, cr_basis, cr_F_S, cr_knots, cs_shrink, r_quantile7, r_seq01
from mmcli.errors import ModelError, UsageError
from mmcli.rkspline import rk_basis, rk_kernel, rk_penalty, rk_unconstrained

__all__ = [  # with the cubic regression spline's pieces it is built on
    "CS_SHRINK",
    "VALID_BASES",
    "MixedSmooth",
    "Smooth",
    "constraint_null_space",
    "cr_F_S",
    "cr_basis",
    "cr_knots",
    "cs_shrink",
    "penalty_scale",
    "r_quantile7",
    "r_seq01",
    "rk_basis",
    "rk_kernel",
    "rk_penalty",
    "smooth_construct",
    "smooth_to_mixed",
]

VALID_BASES = ("cr", "cs", "rk", "tp", "ts", "ps")
MULTI_BASES = ("tp", "ts")  # the bases of more than one variable


# ---------------------------------------------------------------------------------------------------------
# smoothCon: centring constraint and penalty scaling


def penalty_scale(X: np.ndarray, S: np.ndarray) -> float:
    """smoothCon's ``S.scale``: maS = ‖S‖₁ / ‖X‖∞² (max absolute column sum of S over the squared max
    absolute row sum of the unconstrained X). The penalty used is S / maS."""
    return float(np.abs(S).sum(axis=0).max() / np.abs(X).sum(axis=1).max() ** 2)


def constraint_null_space(C: np.ndarray) -> np.ndarray:
    """The k×(k-1) matrix Z whose columns span {β : Cβ = 0}, exactly as smoothCon absorbs C (1×k).

    mgcv takes ``qr(t(C))`` (LINPACK's Householder QR) and keeps Q's columns 2..k: with
    u = C'/σ + e₁, σ = sign(C₁)‖C‖, the reflection is H = I - uu'/u₁ and Z = H[:, 1:]. Columns whose
    constraint entry is exactly zero are left alone and the reflection acts on the others (smoothCon's
    ``indi`` branch), so Z then keeps those columns as they are.
    """
    c = np.asarray(C, dtype=float).ravel()
    k = c.size
    indi = np.flatnonzero(c != 0)
    if indi.size == 0:
        raise ModelError("The smooth's centring constraint is zero: every basis function has mean zero.")
    cc = c[indi]
    sigma = np.linalg.norm(cc)
    if cc[0] < 0:
        sigma = -sigma
    u = cc / sigma
    u[0] += 1.0
    H = np.eye(indi.size) - np.outer(u, u) / u[0]
    T = np.eye(k)
    T[np.ix_(indi, indi)] = 0.0
    nz = indi.size - 1
    T[np.ix_(indi, indi[:nz])] = H[:, 1:]
    return np.delete(T, indi[nz], axis=1)


# ---------------------------------------------------------------------------------------------------------
# the smooth object


@dataclass(frozen=True, eq=False)
class Smooth:
    """One smooth term as mgcv's smoothCon(..., absorb.cons = TRUE, scale.penalty = TRUE) leaves it.

    ``X`` (n×m) and ``S`` (m×m) are the constrained basis and scaled penalty, m = k - 1. The rest is what
    ``predict_matrix`` needs (knots, F or the rk scaling, the constraint map Z) and what the tests compare
    with mgcv: the unconstrained ``X_unconstrained`` and ``S_unconstrained`` (as smooth.construct returns
    them, before scaling), the constraint ``C`` and the scale ``S_scale``.

    ``knots`` are on the x scale: the k knots of cr/cs; for rk the k-2 interior knots xmin + z·xrange,
    with z = ``unit_knots`` = j/(k-1) on the [0, 1] scale. ``F`` is set for cr/cs only.
    """

    term: str
    var: str
    bs: str
    k: int
    knots: np.ndarray
    X: np.ndarray
    S: np.ndarray
    rank: int
    null_space_dim: int
    C: np.ndarray
    Z: np.ndarray
    S_scale: float
    X_unconstrained: np.ndarray
    S_unconstrained: np.ndarray
    F: np.ndarray | None = None
    xmin: float = 0.0
    xrange: float = 1.0
    unit_knots: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vars: tuple[str, ...] = ()  # the smooth's variables (one for cr, cs, rk, ps; one or more for tp, ts)
    basis: Any = None  # the tp/ts or ps basis object, with .matrix(x) at new points
    by: str | None = None  # the by variable's column (mgcv's s(x, by = z))
    by_level: str | None = None  # for a factor by: the level this smooth belongs to
    x_lo: np.ndarray = field(default_factory=lambda: np.zeros(0))  # each variable's minimum over the data
    x_hi: np.ndarray = field(default_factory=lambda: np.zeros(0))  # ... and maximum
    x_mid: np.ndarray = field(default_factory=lambda: np.zeros(0))  # ... and mean

    @property
    def m(self) -> int:
        """Number of coefficients after the constraint (k - 1; k without one, as for a numeric by)."""
        return int(self.X.shape[1])

    @property
    def dim(self) -> int:
        return max(1, len(self.vars))

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """New points as (covariates, by multiplier): x is 1-D (one variable), or n × dim, or n × (dim + 1)
        with the by values (for a factor by, 1 in its level and 0 elsewhere) last. Without them, by = 1."""
        x = np.asarray(x, dtype=float)
        if x.ndim == 1:
            x = x[:, None]
        d = self.dim
        cov, by = x[:, :d], (x[:, d] if x.shape[1] > d else None)
        for j in range(d):
            _finite(cov[:, j], self.vars[j] if self.vars else self.var)
        return (cov[:, 0] if d == 1 else cov), by

    def unconstrained_matrix(self, x: np.ndarray) -> np.ndarray:
        """The basis at new x before the constraint (mgcv's ``Predict.matrix``), len(x)×k, times the by
        values when they are given."""
        cov, by = self._split(x)
        if self.basis is not None:
            X0 = self.basis.matrix(cov)
        elif self.bs == "rk":
            X0 = rk_basis((cov - self.xmin) / self.xrange, self.unit_knots)
        else:
            assert self.F is not None
            X0 = cr_basis(cov, self.knots, self.F)
        return X0 if by is None else X0 * by[:, None]

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """The constrained basis at new x (mgcv's ``PredictMat``), len(x)×m.

        cr/cs and ps extrapolate linearly beyond the end knots, as mgcv does; rk evaluates its polynomial
        kernel, tp/ts its radial functions.
        """
        return self.unconstrained_matrix(x) @ self.Z

    def ends(self, j: int) -> np.ndarray:
        """Two points, variable j at its minimum and its maximum and the others at their means."""
        lo, hi = self.x_mid.copy(), self.x_mid.copy()
        lo[j], hi[j] = self.x_lo[j], self.x_hi[j]
        return np.vstack([lo, hi])


def _finite(x: np.ndarray, var: str) -> np.ndarray:
    x = np.asarray(x, dtype=float).ravel()
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise ModelError(f"Column '{var}' has {bad} non-finite value(s) (NaN or infinite); a smooth needs finite x.")
    return x


def _check_smooth(x: np.ndarray, label: str, bs: str, k: object, vars: tuple[str, ...]) -> tuple[int, np.ndarray]:
    """The basis name, k (a whole number, at least 3, at most the number of unique x) and finite x."""
    if bs not in VALID_BASES:
        raise UsageError(f"Unknown smooth basis '{bs}'. Valid bases are: {', '.join(VALID_BASES)}.")
    if len(vars) > 1 and bs not in MULTI_BASES:
        raise ModelError(f"{label}: a {bs} smooth takes one variable; smooths of several use bs = 'tp' or 'ts'.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ModelError(f"k must be a whole number for {label}, got {k!r}.")
    k = int(k)
    if k < 3 or (bs == "ps" and k < 4):
        raise ModelError(f"k = {k} is too small for {label}: a {bs} smooth needs k >= {4 if bs == 'ps' else 3}.")
    x = np.asarray(x, dtype=float)
    x = x.reshape(x.shape[0], -1)
    for j, v in enumerate(vars):
        _finite(x[:, j], v)
    n_unique = np.unique(x, axis=0).shape[0]
    if k > n_unique:
        what = "unique values" if len(vars) == 1 else f"unique combinations of {', '.join(vars)}"
        raise ModelError(f"{label} has {n_unique} {what}, too few for k = {k}: use k <= {n_unique}.")
    from mmcli.memory import check_allocation

    check_allocation(8.0 * x.shape[0] * k, f"the basis of {label} with k = {k} ({x.shape[0]} x {k})")
    check_allocation(8.0 * k * k, f"the penalty of {label} with k = {k} ({k} x {k})")
    return k, (x[:, 0] if len(vars) == 1 else x)


def smooth_label(vars: tuple[str, ...], by: str | None = None, level: str | None = None) -> str:
    """mgcv's label of a smooth: ``s(x)``, ``s(x,z)``, ``s(x):z`` (numeric by), ``s(x):faa`` (a level)."""
    base = f"s({','.join(vars)})"
    return base if by is None else f"{base}:{by}{level if level is not None else ''}"


def _cr_unconstrained(
    x: np.ndarray, k: int, term: str, var: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The cr basis, its penalty, knots and F (mgcv's smooth.construct.cr.smooth.spec)."""
    knots = cr_knots(x, k)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        F, S0 = cr_F_S(knots)
    if not (np.all(np.isfinite(F)) and np.all(np.isfinite(S0))):
        gap = float(np.min(np.diff(knots)))
        raise ModelError(
            f"{term}: two of its knots are only {gap:.3g} apart, too close for a cubic spline on x from "
            f"{knots[0]:g} to {knots[-1]:g}. Use a smaller k, or round the values of '{var}'."
        )
    return cr_basis(x, knots, F), S0, knots, F


def smooth_construct(
    x: np.ndarray,
    *,
    var: str,
    bs: str = "cr",
    k: int = 10,
    cs_line_first: bool | None = None,
    vars: tuple[str, ...] | None = None,
    by: str | None = None,
    by_values: np.ndarray | None = None,
    by_level: str | None = None,
) -> Smooth:
    """Build ``s(vars, bs = bs, k = k, by = by)`` as mgcv's smoothCon(..., absorb.cons = TRUE,
    scale.penalty = TRUE).

    Steps (mgcv 1.8-41; Wood 2017 §5.3.1, §5.4.1):
      1. the unconstrained basis X (n×k) and penalty S: ``cr``/``cs`` from k knots at quantiles of the
         unique x (``cs`` with its null space shrunk, :func:`cs_shrink`); ``rk`` from k-2 interior knots
         j/(k-1) on x rescaled to [0, 1] (Wood 2006 §3.2); ``tp``/``ts`` the thin plate regression spline
         (:mod:`mmcli.tprs`, x may be n × d); ``ps`` the P-spline (:mod:`mmcli.pspline`);
      2. the centring constraint C = colMeans(X), taken before any scaling; none for a numeric ``by``
         that varies (mgcv: the smooth times z is then identifiable without it);
      3. S ← S / maS with maS = ‖S‖₁ / ‖X‖∞² (:func:`penalty_scale`), X before the by values;
      4. X ← (by ∘ X) Z, S ← Z'SZ with Z spanning {β : Cβ = 0} (:func:`constraint_null_space`). For a
         factor by, ``by_values`` is the 0/1 indicator of ``by_level``: one such smooth per level.

    ``cs_line_first`` picks which of R's two possible ``cs`` penalties to build (see :func:`cs_shrink`);
    the default is mmcli's fixed choice.
    """
    vars = tuple(vars) if vars else (var,)
    term = smooth_label(vars, by, by_level)
    k, x = _check_smooth(x, term, bs, k, vars)
    basis: Any = None
    xmin, xrange, unit_knots, F = 0.0, 1.0, np.zeros(0), None
    # 1. unconstrained basis and penalty
    if bs == "rk":
        X0, S0, knots, F, (xmin, xrange, unit_knots) = rk_unconstrained(x, k)
        rank, null_dim = k - 2, 2
    elif bs in ("tp", "ts", "ps"):
        if bs == "ps":
            from mmcli.pspline import ps_basis

            basis = ps_basis(x, k)
            knots = basis.knots
        else:
            from mmcli.tprs import TS_SHRINK, tprs_basis

            basis = tprs_basis(x, k, shrink=TS_SHRINK if bs == "ts" else None, label=term)
            knots = basis.knots + basis.shift
        X0, S0, rank, null_dim = basis.X, basis.S, basis.rank, basis.null_space_dim
        basis = _dropped(basis)
    else:
        X0, S0, knots, F = _cr_unconstrained(x, k, term, var)
        rank, null_dim = k - 2, 2
        if bs == "cs":
            S0 = cs_shrink(S0, knots, line_first=cs_line_first)
            rank, null_dim = k, 0

    # 2. centring constraint, 3. scaling, 4. absorption
    C = X0.mean(axis=0)[None, :]
    S_scale = penalty_scale(X0, S0)
    bv = None if by_values is None else np.asarray(by_values, dtype=float)
    if by is not None and by_level is None and bv is not None and np.std(bv) > abs(np.mean(bv)) * 2.2e-13:
        C, Z, n_con = np.zeros((0, k)), np.eye(k), 0
    else:
        Z, n_con = constraint_null_space(C), 1
    Xb = X0 if bv is None else X0 * bv[:, None]
    X = Xb @ Z
    S = Z.T @ (S0 / S_scale) @ Z
    S = (S + S.T) / 2
    xm = x.reshape(x.shape[0], -1)
    return Smooth(
        term=term,
        var=vars[0],
        bs=bs,
        k=k,
        knots=knots,
        X=X,
        S=S,
        rank=min(rank, k - n_con),
        null_space_dim=max(0, null_dim - n_con),
        C=C,
        Z=Z,
        S_scale=S_scale,
        X_unconstrained=Xb,
        S_unconstrained=S0,
        F=F,
        xmin=xmin,
        xrange=xrange,
        unit_knots=unit_knots,
        vars=vars,
        basis=basis,
        by=by,
        by_level=by_level,
        x_lo=xm.min(axis=0),
        x_hi=xm.max(axis=0),
        x_mid=xm.mean(axis=0),
    )


def _dropped(basis: Any) -> Any:
    """The basis without its data matrix (kept once, as the smooth's X): what prediction needs."""
    from dataclasses import replace

    return replace(basis, X=np.zeros((0, basis.X.shape[1])))


# ---------------------------------------------------------------------------------------------------------
# smooth2random: the smooth as a random effect


@dataclass(frozen=True, eq=False)
class MixedSmooth:
    """A smooth in mixed-model form (mgcv's ``smooth2random``; Wood 2017 §6.6).

    With S = U diag(d) U' (d decreasing, rank r): the random part ``Zr`` = X U₊ D₊^(-1/2) (n×r) with
    coefficients b ~ N(0, σ²_smooth I), and the fixed part ``Xf`` = X U₀ (n×(m-r)): one column for cr and
    rk, none for cs. ``trans_D`` is mgcv's ``trans.D``: 1/√d₊ for the penalized directions, 1 for the null
    space, so that X = [Zr, Xf] diag(1/trans_D) U'.
    """

    term: str
    Xf: np.ndarray
    Zr: np.ndarray
    U: np.ndarray
    d: np.ndarray
    trans_D: np.ndarray  # noqa: N815 - mgcv's trans.D
    rank: int
    fixed_names: tuple[str, ...]

    def coefficients(self, b_rand: np.ndarray, beta_fixed: np.ndarray) -> np.ndarray:
        """The smooth's coefficients in the constrained basis: β = U (trans_D ∘ [b_rand; beta_fixed]).

        This is gamm4's map back (``trans.U %*% (trans.D * b)``), so X β = Zr b_rand + Xf beta_fixed.
        """
        b = np.concatenate([np.asarray(b_rand, dtype=float).ravel(), np.asarray(beta_fixed, dtype=float).ravel()])
        if b.size != self.U.shape[0]:
            raise ValueError(f"{self.term}: expected {self.U.shape[0]} coefficients in all, got {b.size}.")
        return self.U @ (self.trans_D * b)

    def random_matrix(self, X_constrained: np.ndarray) -> np.ndarray:
        """The random-part columns X U₊ D₊^(-1/2) for a constrained basis (e.g. a ``predict_matrix``)."""
        return np.asarray(X_constrained) @ (self.U[:, : self.rank] * self.trans_D[: self.rank])

    def fixed_matrix(self, X_constrained: np.ndarray) -> np.ndarray:
        """The fixed-part columns X U₀ for a constrained basis."""
        return np.asarray(X_constrained) @ self.U[:, self.rank :]


def smooth_to_mixed(sm: Smooth) -> MixedSmooth:
    """Split a constrained smooth into fixed and random parts (mgcv's ``smooth2random``, Wood 2017 §6.6).

    S = U diag(d) U' with d decreasing; the first ``rank`` directions are penalized, the rest are the null
    space (mgcv takes the rank from the basis, not from the computed eigenvalues). Signs: a penalized
    eigenvector has its first clearly nonzero entry positive; the null-space column of cr and rk (a straight
    line) is signed so that Xf increases with x, so ``s(x)Fx1`` is the coefficient of a rising line. R's
    LAPACK picks signs arbitrarily (it matches this for gamm4's sleepstudy ``k = 5`` fit, not always): this
    changes Zr's columns and the sign of Fx1, but not Zr Zr', the fit or the criterion.
    Fixed columns are named as gamm4 names them: ``s(x)Fx1``, ...
    """
    d, U = np.linalg.eigh(sm.S)
    d, U = d[::-1].copy(), U[:, ::-1].copy()
    r = sm.rank
    for j in range(r):  # penalized directions: first clearly nonzero entry positive
        col = U[:, j]
        big = np.flatnonzero(np.abs(col) > 1e-8 * np.abs(col).max())
        if col[big[0]] < 0:
            U[:, j] = -col
    if r < U.shape[1]:  # null space (a line for cr and rk): signed to increase with x
        for c in range(r, U.shape[1]):
            for j in range(sm.dim):
                ends = sm.predict_matrix(sm.ends(j)) @ U[:, c]
                rise = ends[1] - ends[0]
                if abs(rise) > 1e-8 * max(1.0, float(np.abs(ends).max())):
                    U[:, c] *= -1.0 if rise < 0 else 1.0
                    break
    if r > 0 and d[r - 1] <= 0:
        raise ModelError(f"{sm.term}: the penalty has fewer than {r} positive eigenvalues.")
    trans_D = np.ones(d.size)
    trans_D[:r] = 1 / np.sqrt(d[:r])
    UD = U * trans_D
    XUD = sm.X @ UD
    n_fixed = d.size - r
    return MixedSmooth(
        term=sm.term,
        Xf=XUD[:, r:],
        Zr=XUD[:, :r],
        U=U,
        d=d,
        trans_D=trans_D,
        rank=r,
        fixed_names=tuple(f"{sm.term}Fx{j + 1}" for j in range(n_fixed)),
    )
