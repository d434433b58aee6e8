"""mgcv's tensor-product smooths ``te()`` and ``t2()`` of cubic regression spline margins, and t2's mixed form.

Everything here follows mgcv 1.8-41 (Wood 2017, *Generalized Additive Models*, 2nd ed., §5.6):

- the margins are mgcv's ``cr`` (or ``cs``) bases as ``smooth.construct`` leaves them: unconstrained,
  unscaled (:mod:`mmcli.crspline`);
- ``te`` (``smooth.construct.tensor.smooth.spec``, Wood 2006): each margin's penalty divided by its largest
  eigenvalue (a cr margin's coefficients are already the function's values at its knots, so mgcv's
  reparametrization to values is not applied); the basis is the row-wise Kronecker product of the margins
  (the first varying slowest) and there is one penalty per margin, S₁ ⊗ I and I ⊗ S₂. They overlap, so a
  te term is not a set of independent random effects: it is fitted with several smoothing parameters by
  :mod:`mmcli.gam_reml`;
- ``t2`` (``smooth.construct.t2.smooth.spec``; Wood, Scheipl & Faraway 2013): each margin in its natural
  parametrization (mgcv's ``nat.param`` type 3: penalty diagonal, range and null space each scaled to unit
  mean square, the null space rotated so that its first column is the most nearly constant); the basis is
  the products of the margins' range (r) and null (n) parts, in mgcv's order ``rr, nr, rn, nn`` for two
  margins, each product but ``nn`` with its own identity penalty. The penalties do not overlap, so each is
  one variance component: gamm4's mixed form (``smooth2random.t2.smooth``);
- ``smoothCon(..., absorb.cons = TRUE, scale.penalty = TRUE)``: the centring constraint (the column means of
  the basis for te; the column sums of the unpenalized ``nn`` block for t2) absorbed by mgcv's Householder
  reflection, and each penalty scaled by ‖S‖₁ / ‖X‖∞². Numbers only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmcli.crspline import cr_basis, cr_F_S, cr_knots, cs_shrink
from mmcli.errors import ModelError, UsageError
from mmcli.smooths import constraint_null_space, penalty_scale

MARGIN_BASES = ("cr", "cs")
DEFAULT_MARGIN_K = 5  # te()'s and t2()'s default: k = 5 per one-dimensional margin


# ---------------------------------------------------------------------------------------------------------
# margins


@dataclass(frozen=True, eq=False)
class Margin:
    """One margin as ``smooth.construct`` builds it: knots, F, the unconstrained penalty, then the linear map
    ``P`` (k × k) from the raw basis to the tensor's parametrization of this margin (te: the values at k
    evenly spaced points; t2: the natural parametrization), and the rank of its penalty."""

    var: str
    bs: str
    k: int
    knots: np.ndarray
    F: np.ndarray
    S_raw: np.ndarray
    P: np.ndarray
    rank: int

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The margin's unconstrained basis at x (mgcv's ``Predict.matrix`` of a cr smooth)."""
        return cr_basis(np.asarray(x, dtype=float), self.knots, self.F)

    def matrix(self, x: np.ndarray) -> np.ndarray:
        """The margin's basis in the tensor's parametrization: raw(x) P."""
        return self.raw(x) @ self.P


def check_margin(x: np.ndarray, *, label: str, var: str, bs: str, k: int) -> np.ndarray:
    """Finite x, a known basis, and 3 <= k <= the number of unique values of x; one clear error otherwise."""
    if bs not in MARGIN_BASES:
        raise UsageError(
            f"{label}: margin basis '{bs}' is not available; tensor products take the margins "
            f"{' or '.join(repr(b) for b in MARGIN_BASES)}."
        )
    x = np.asarray(x, dtype=float).ravel()
    if not np.all(np.isfinite(x)):
        raise ModelError(f"Column '{var}' has non-finite values (NaN or infinite); {label} needs finite values.")
    if k < 3:
        raise ModelError(f"{label}: k = {k} for the margin of '{var}' is too small: a {bs} margin needs k >= 3.")
    n_unique = np.unique(x).size
    if k > n_unique:
        raise ModelError(
            f"{label}: '{var}' has {n_unique} unique values, too few for k = {k} in its margin: use k <= {n_unique}."
        )
    return x


def raw_margin(x: np.ndarray, *, label: str, var: str, bs: str, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """knots, F and the unscaled penalty of a cr (or cs) margin (``smooth.construct.cr.smooth.spec``)."""
    knots = cr_knots(x, k)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        F, S = cr_F_S(knots)
    if not (np.all(np.isfinite(F)) and np.all(np.isfinite(S))):
        raise ModelError(f"{label}: two knots of the margin of '{var}' are too close; use a smaller k.")
    if bs == "cs":
        S = cs_shrink(S, knots)
    return knots, F, S


def _eigh_desc(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d, U = np.linalg.eigh((S + S.T) / 2)
    return d[::-1].copy(), U[:, ::-1].copy()


def te_margin(x: np.ndarray, *, label: str, var: str, bs: str, k: int) -> tuple[Margin, np.ndarray]:
    """A te margin and its penalty: mgcv's te reparametrizes a margin so that its coefficients are function
    values (``np = TRUE``), but a cr or cs basis already has the values at its knots as coefficients (mgcv's
    ``noterp``), so P = I; the penalty is divided by its largest eigenvalue."""
    x = check_margin(x, label=label, var=var, bs=bs, k=k)
    knots, F, S_raw = raw_margin(x, label=label, var=var, bs=bs, k=k)
    S = S_raw / _eigh_desc(S_raw)[0][0]
    rank = k if bs == "cs" else k - 2
    return Margin(var, bs, k, knots, F, S_raw, np.eye(k), rank), (S + S.T) / 2


def t2_margin(x: np.ndarray, *, label: str, var: str, bs: str, k: int) -> Margin:
    """A t2 margin in mgcv's natural parametrization (``nat.param(X, S, rank, type = 3, unit.fnorm = TRUE)``).

    S = U diag(e) U' (decreasing); the range columns of XU are divided by √e, the null columns scaled to the
    range's average column norm; the null space is then rotated by the eigenvectors of its centred cross
    product, the direction of largest spread last; finally the range and the null columns are each scaled to
    mean square 1 over the data. P is the product of these steps, so the margin's matrix is raw(x) P.
    """
    x = check_margin(x, label=label, var=var, bs=bs, k=k)
    knots, F, S_raw = raw_margin(x, label=label, var=var, bs=bs, k=k)
    X0 = cr_basis(x, knots, F)
    r = k if bs == "cs" else k - 2
    e, U = _eigh_desc(S_raw)
    if r < k:
        U[:, r:] = null_pair(knots)
    E = np.ones(k)
    E[:r] = np.sqrt(e[:r])
    XU = X0 @ U
    col_norm = np.sum(XU**2, axis=0) / E**2
    E[r:] = np.sqrt(col_norm[r:] / col_norm[:r].mean())
    P = U / E
    X = XU / E
    if k - r > 1:  # rotate the null space: centred cross product, eigenvectors in reverse order
        Xn = X[:, r:] - X[:, r:].mean(axis=0)
        _, V = _eigh_desc(Xn.T @ Xn)
        V = V[:, ::-1]
        X[:, r:] = X[:, r:] @ V
        P[:, r:] = P[:, r:] @ V
    for cols in (slice(0, r), slice(r, k)):
        if X[:, cols].size:
            scale = 1 / np.sqrt(np.mean(X[:, cols] ** 2))
            P[:, cols] *= scale
    return Margin(var, bs, k, knots, F, S_raw, P, r)


def null_pair(knots: np.ndarray) -> np.ndarray:
    """The orthonormal basis of a cr penalty's null space (the knot values of straight lines) that R's
    ``eigen`` returns: a ∝ knots − knots[0] and b ⊥ a (see :func:`mmcli.crspline.cs_shrink`). t2's natural
    parametrization scales the null columns one by one, so the basis changes the model (not only its
    coordinates); any other orthonormal pair of the plane gives another t2 smooth than mgcv's. The order of a
    and b does not matter: the rotation that follows depends on the pair only."""
    t = np.asarray(knots, dtype=float)
    a = t - t[0]
    a = a / np.linalg.norm(a)
    one = np.ones(t.size)
    b = one - a * (a @ one)
    b = b / np.linalg.norm(b)
    return np.column_stack([a, b])


def row_kron(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The row-wise Kronecker product: row i is kron(A[i], B[i]), A's columns varying slowest."""
    return (A[:, :, None] * B[:, None, :]).reshape(A.shape[0], A.shape[1] * B.shape[1])


# ---------------------------------------------------------------------------------------------------------
# te


@dataclass(frozen=True, eq=False)
class TensorSmooth:
    """A te() or t2() term as smoothCon leaves it: the constrained basis ``X`` (n × m), the scaled penalties
    ``S`` (each m × m), their ranks, the margins, the constraint map ``Z`` (m₀ × m) and the scales
    (mgcv's ``S.scale``). For t2, ``blocks`` gives each penalty's columns and ``labels`` mgcv's names for them
    (``rr``, ``nr``, ``rn``); ``null_cols`` are the unpenalized columns after the constraint."""

    kind: str  # "te" or "t2"
    term: str
    vars: tuple[str, ...]
    margins: tuple[Margin, ...]
    X: np.ndarray
    S: tuple[np.ndarray, ...]
    ranks: tuple[int, ...]
    Z: np.ndarray
    S_scale: tuple[float, ...]
    blocks: tuple[np.ndarray, ...] = ()
    labels: tuple[str, ...] = ()
    null_cols: np.ndarray | None = None

    @property
    def bs(self) -> str:
        return self.kind

    @property
    def by(self) -> None:
        """Tensor products take no by variable (the interface of a one-term smooth)."""
        return None

    @property
    def by_level(self) -> None:
        return None

    @property
    def k(self) -> tuple[int, ...]:
        return tuple(mg.k for mg in self.margins)

    @property
    def knots(self) -> list[np.ndarray]:
        return [mg.knots for mg in self.margins]

    @property
    def null_space_dim(self) -> int:
        """Directions of the constrained basis that no penalty reaches (0 when every direction is penalized)."""
        total = sum(Sj / max(np.abs(Sj).max(), 1e-300) for Sj in self.S)
        w = np.linalg.eigvalsh((total + np.transpose(total)) / 2)
        return int(np.sum(w <= w.max() * 1e-10))

    @property
    def var(self) -> list[str]:
        """The columns of the term (so that ``frame[var]`` gives its n × d data)."""
        return list(self.vars)

    def unconstrained_matrix(self, x: np.ndarray) -> np.ndarray:
        """The basis at new rows x (n × d, one column per margin) before the constraint."""
        x = np.asarray(x, dtype=float).reshape(-1, len(self.margins))
        if not np.all(np.isfinite(x)):
            raise ModelError(f"{self.term} needs finite values of {', '.join(self.vars)}.")
        mats = [mg.matrix(x[:, i]) for i, mg in enumerate(self.margins)]
        return (
            te_model_matrix(mats) if self.kind == "te" else t2_model_matrix(mats, [mg.rank for mg in self.margins])[0]
        )

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """The constrained basis at new rows (mgcv's ``PredictMat``); cr margins extrapolate linearly."""
        return self.unconstrained_matrix(x) @ self.Z


def te_model_matrix(mats: list[np.ndarray]) -> np.ndarray:
    """mgcv's ``tensor.prod.model.matrix``: the row-wise Kronecker product of the margins, in order."""
    X = mats[0]
    for M in mats[1:]:
        X = row_kron(X, M)
    return X


def _kron_penalties(Sm: list[np.ndarray]) -> list[np.ndarray]:
    """mgcv's ``tensor.prod.penalties``: I ⊗ ... ⊗ S_i ⊗ ... ⊗ I, one per margin."""
    dims = [S.shape[0] for S in Sm]
    out = []
    for i, Si in enumerate(Sm):
        M = np.ones((1, 1))
        for j, d in enumerate(dims):
            M = np.kron(M, Si if j == i else np.eye(d))
        out.append(M)
    return out


def _absorb(
    kind: str,
    label: str,
    vars_: tuple[str, ...],
    margins: list[Margin],
    X0: np.ndarray,
    S0: list[np.ndarray],
    ranks: list[int],
    C: np.ndarray | None,
    **extra: object,
) -> TensorSmooth:
    """smoothCon's scaling (S / (‖S‖₁ / ‖X‖∞²), from the unconstrained X) and constraint absorption."""
    scales = [penalty_scale(X0, S) for S in S0]
    m0 = X0.shape[1]
    Z = np.eye(m0) if C is None else constraint_null_space(C)
    S = []
    for Sj, sc in zip(S0, scales):
        Sc = Z.T @ (Sj / sc) @ Z
        S.append((Sc + Sc.T) / 2)
    return TensorSmooth(kind, label, vars_, tuple(margins), X0 @ Z, tuple(S), tuple(ranks), Z, tuple(scales), **extra)  # type: ignore[arg-type]


def te_construct(
    xs: list[np.ndarray], *, vars_: tuple[str, ...], bs: tuple[str, ...], k: tuple[int, ...]
) -> TensorSmooth:
    """``te(x, z, bs = bs, k = k)`` as smoothCon builds it (see the module docstring)."""
    label = f"te({','.join(vars_)})"
    margins, Sm = [], []
    for x, v, b, kk in zip(xs, vars_, bs, k):
        mg, S = te_margin(x, label=label, var=v, bs=b, k=kk)
        margins.append(mg)
        Sm.append(S)
    _check_size(label, xs[0].size, int(np.prod(k)))
    X0 = te_model_matrix([mg.matrix(x) for mg, x in zip(margins, xs)])
    d = np.array(k)
    ranks = [int(np.prod(d) * mg.rank // mg.k) for mg in margins]
    C = X0.mean(axis=0)[None, :]
    return _absorb("te", label, vars_, margins, X0, _kron_penalties(Sm), ranks, C)


# ---------------------------------------------------------------------------------------------------------
# t2


def t2_model_matrix(mats: list[np.ndarray], ranks: list[int]) -> tuple[np.ndarray, list[int], list[str], bool]:
    """mgcv's ``t2.model.matrix`` (``full = FALSE``): the products of the margins' range and null parts.

    Start from the first margin's [range (r), null (n)] parts; for each further margin, every part so far
    times its range part (labels + "r"), then every part so far times its null part (labels + "n"). Returns
    the matrix, the number of columns of each penalized part, their labels, and whether the last part (the
    product of all null spaces) is unpenalized."""
    parts = [mats[0][:, : ranks[0]]]
    labels = ["r"]
    no_null = ranks[0] == mats[0].shape[1]
    if not no_null:
        parts.append(mats[0][:, ranks[0] :])
        labels.append("n")
    for M, r in zip(mats[1:], ranks[1:]):
        R, N = M[:, :r], M[:, r:]
        new = [row_kron(A, R) for A in parts]
        new_labels = [lab + "r" for lab in labels]
        if N.shape[1]:
            new += [row_kron(A, N) for A in parts]
            new_labels += [lab + "n" for lab in labels]
        else:
            no_null = True
        parts, labels = new, new_labels
    cols = [A.shape[1] for A in parts]
    if not no_null:
        cols, labels = cols[:-1], labels[:-1]
    return np.column_stack(parts), cols, labels, not no_null


def t2_construct(
    xs: list[np.ndarray], *, vars_: tuple[str, ...], bs: tuple[str, ...], k: tuple[int, ...]
) -> TensorSmooth:
    """``t2(x, z, bs = bs, k = k)`` as smoothCon builds it (see the module docstring)."""
    label = f"t2({','.join(vars_)})"
    margins = [t2_margin(x, label=label, var=v, bs=b, k=kk) for x, v, b, kk in zip(xs, vars_, bs, k)]
    _check_size(label, xs[0].size, int(np.prod(k)))
    X0, cols, labels, has_null = t2_model_matrix(
        [mg.matrix(x) for mg, x in zip(margins, xs)], [mg.rank for mg in margins]
    )
    m0 = X0.shape[1]
    edges = np.concatenate([[0], np.cumsum(cols)]).astype(int)
    S0 = []
    for a, b in zip(edges[:-1], edges[1:]):
        dd = np.zeros(m0)
        dd[a:b] = 1.0
        S0.append(np.diag(dd))
    nup = int(edges[-1])
    null_dim = m0 - nup
    C = None
    if null_dim > 1:
        C = np.zeros((1, m0))
        C[0, nup:] = X0[:, nup:].sum(axis=0)
    elif null_dim == 1:  # pragma: no cover - products of cr/cs margins have 0 or >= 4 null columns
        raise ModelError(f"{label}: a one-dimensional null space is not supported.")
    blocks = tuple(np.arange(a, b) for a, b in zip(edges[:-1], edges[1:]))
    null_cols = np.arange(nup, m0 - (1 if C is not None else 0))
    return _absorb(
        "t2", label, vars_, margins, X0, S0, list(cols), C, blocks=blocks, labels=tuple(labels), null_cols=null_cols
    )


def _check_size(label: str, n: int, m: int) -> None:
    from mmcli.memory import check_allocation

    check_allocation(8.0 * n * m, f"the basis of {label} ({n} x {m})")
