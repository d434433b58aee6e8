"""The linear mixed-model core: the Gram matrix of [Z X y], the blocked Cholesky, profiled ML/REML, the optimizer.

The model is y = X beta + Z b + e with b = Lambda(theta) u, u ~ N(0, sigma^2 I), e ~ N(0, sigma^2 W^-1)
(Bates, Maechler, Bolker & Walker 2015, sections 2-3), laid out as MixedModels.jl does (Bates, Alday &
Kokandakar 2025). No n x n matrix is formed on the fast path; the tutorial's dense formulation is kept for
small data and as the reference the tests check the fast path against.

The modules, in the order of the chain theta -> update L -> criterion:

- terms:     random-effects terms, the layout of theta, the blocks of Z by grouping factor
- rank:      aliased fixed-effect columns (as R's qr)
- transform: the working parametrization (weights, offset, conditioning) and the one way back
- gram:      the Gram matrix, formed once
- factor:    update_L, the blocked Cholesky at theta
- criterion: the ML and REML criteria, the degrees of freedom of sigma^2
- gradient:  the analytic gradient of both criteria with respect to theta
- optimizer: L-BFGS-B on the gradient (the default), BOBYQA
- stationarity: the KKT check at the optimizer's end
- results:   beta, conditional modes and covariances at theta; the fitted model
- dense:     the tutorial's V-based formulation
- satterthwaite, kenward_roger: denominator degrees of freedom for tests of the fixed effects
- model:     the public entry points
- profile:   profile confidence intervals (lme4's confint(profile(m)))
- bootstrap: the parametric bootstrap (lme4's bootMer) and boot's percentile ends
- pls:       penalized weighted least squares at a given theta and weights (a GLMM's PIRLS step)

Only the names below are public; nothing outside this package uses another.
"""

from mmcli.lmm.bootstrap import bootstrap, percentile
from mmcli.lmm.compiled import preload
from mmcli.lmm.dense import DENSE_MAX_ROWS
from mmcli.lmm.kenward_roger import KR_MAX_ROWS, KenwardRoger, kenward_roger
from mmcli.lmm.model import LmmModel, check_terms, fit_at_theta, fit_lmm, xtvinvx
from mmcli.lmm.optimizer import OptimizerRecord
from mmcli.lmm.pls import PlsStep, WeightedPls
from mmcli.lmm.profile import parameter_names, profile_intervals, sdcor
from mmcli.lmm.rank import aliased_columns
from mmcli.lmm.results import SINGULAR_TOL, LmmFit
from mmcli.lmm.satterthwaite import Satterthwaite, satterthwaite, varpar_deviance
from mmcli.lmm.terms import ReTerm, general_term, indicator_term, lower_bounds, templates, theta_offsets

__all__ = [
    "DENSE_MAX_ROWS",
    "KR_MAX_ROWS",
    "KenwardRoger",
    "SINGULAR_TOL",
    "LmmFit",
    "LmmModel",
    "OptimizerRecord",
    "PlsStep",
    "ReTerm",
    "Satterthwaite",
    "WeightedPls",
    "aliased_columns",
    "bootstrap",
    "check_terms",
    "fit_at_theta",
    "fit_lmm",
    "general_term",
    "indicator_term",
    "kenward_roger",
    "lower_bounds",
    "satterthwaite",
    "parameter_names",
    "percentile",
    "preload",
    "profile_intervals",
    "sdcor",
    "templates",
    "theta_offsets",
    "varpar_deviance",
    "xtvinvx",
]
