# Reference numbers for tests/test_tensor.py: mgcv's tensor-product smooths te() and t2(), with and without a
# random intercept, on a documented simulated surface. Run from the repository root:
#   Rscript tests/reference/make_tensor.R
# writes tests/reference/tensor_surface.csv (the data) and tests/reference/tensor.json.
#
# The data: 400 points (x, z) uniform on the unit square, in 20 groups g01..g20 of 20 points, and the surface
#   f(x, z) = 1.5 exp(-((x - 0.3)^2 / 0.08 + (z - 0.6)^2 / 0.12)) + 0.8 sin(2 pi x) z.
# y0 = f + N(0, 0.3^2) (no group effect), y = f + u_g + N(0, 0.3^2) with u_g ~ N(0, 0.5^2), and
# ys = 2x + sin(6z) + N(0, 0.2^2), a surface straight in x; all rounded.
suppressPackageStartupMessages({
  library(mgcv)
  library(gamm4)
  library(lme4)
})
source("tests/reference/json_writer.R")

set.seed(20261129)
n_g <- 20
per <- 20
n <- n_g * per
x <- round(runif(n), 4)
z <- round(runif(n), 4)
g <- factor(sprintf("g%02d", rep(seq_len(n_g), each = per)))
f <- 1.5 * exp(-((x - 0.3)^2 / 0.08 + (z - 0.6)^2 / 0.12)) + 0.8 * sin(2 * pi * x) * z
u <- rnorm(n_g, sd = 0.5)
y0 <- round(f + rnorm(n, sd = 0.3), 6)
y <- round(f + u[as.integer(g)] + rnorm(n, sd = 0.3), 6)
ys <- round(2 * x + sin(6 * z) + rnorm(n, sd = 0.2), 6)  # straight in x: te's x penalty goes to infinity
d <- data.frame(y = y, y0 = y0, ys = ys, x = x, z = z, g = g)
write.csv(d, "tests/reference/tensor_surface.csv", row.names = FALSE, quote = FALSE)
d <- read.csv("tests/reference/tensor_surface.csv", stringsAsFactors = TRUE)

## a prediction grid inside the data's range (6 x 5 points)
grid <- expand.grid(x = seq(0.05, 0.95, length.out = 6), z = seq(0.1, 0.9, length.out = 5))
grid$g <- d$g[1]

smooth_of <- function(m, i = 1) m$smooth[[i]]
edf_of <- function(m, i = 1) sum(m$edf[m$smooth[[i]]$first.para:m$smooth[[i]]$last.para])

gam_case <- function(formula, method, exclude = NULL) {
  m <- gam(formula, data = d, method = method)
  pr <- predict(m, newdata = grid, se.fit = TRUE, exclude = exclude)
  sm <- smooth_of(m)
  out <- list(
    formula = deparse(formula), method = method,
    score = as.numeric(m$gcv.ubre), sp = I(as.numeric(m$sp)), scale = m$sig2,
    edf = edf_of(m), edf_total = sum(m$edf),
    coefficients = I(as.numeric(coef(m))), coef_names = I(names(coef(m))),
    predict = I(as.numeric(pr$fit)), predict_se = I(as.numeric(pr$se.fit)),
    fitted = I(as.numeric(fitted(m))),
    basis_grid = PredictMat(sm, grid),
    S = lapply(sm$S, function(S) S), S_scale = I(sm$S.scale),
    knots = lapply(sm$margin, function(mg) I(as.numeric(mg$xp))),
    converged = m$converged
  )
  if (!is.null(exclude)) {
    vc <- gam.vcomp(m, rescale = FALSE)
    out$vcomp_sd <- I(as.numeric(vc[, 1]))
    out$vcomp_names <- I(rownames(vc))
  }
  out
}

gamm4_case <- function(formula, random) {
  m <- if (is.null(random)) gamm4(formula, data = d, REML = TRUE) else gamm4(formula, random = random, data = d, REML = TRUE)
  vc <- as.data.frame(VarCorr(m$mer))
  pr <- predict(m$gam, newdata = grid, se.fit = TRUE)
  sm <- smooth_of(m$gam)
  list(
    formula = deparse(formula), random = if (is.null(random)) NULL else deparse(random),
    REMLcrit = as.numeric(REMLcrit(m$mer)),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], vcov = vc$vcov[i])),
    theta = I(as.numeric(getME(m$mer, "theta"))), theta_names = I(names(getME(m$mer, "theta"))),
    sigma = sigma(m$mer),
    mer_fixef = as.list(fixef(m$mer)),
    edf = edf_of(m$gam),
    gam_coef = I(as.numeric(coef(m$gam))),
    predict = I(as.numeric(pr$fit)), predict_se = I(as.numeric(pr$se.fit)),
    basis_grid = PredictMat(sm, grid),
    S = lapply(sm$S, function(S) I(diag(S))),
    P = lapply(sm$P, function(P) P),
    knots = lapply(sm$margin, function(mg) I(as.numeric(mg$xp)))
  )
}

out <- list(
  script = "tests/reference/make_tensor.R",
  versions = versions(c("mgcv", "gamm4", "lme4")),
  data = "tests/reference/tensor_surface.csv",
  grid = list(x = I(grid$x), z = I(grid$z)),
  te_reml = gam_case(y0 ~ te(x, z), "REML"),
  te_ml = gam_case(y0 ~ te(x, z), "ML"),
  te_k = gam_case(y0 ~ te(x, z, k = c(4, 6)), "REML"),
  te_straight = gam_case(ys ~ te(x, z), "REML"),
  te_re = gam_case(y ~ te(x, z) + s(g, bs = "re"), "REML", exclude = "s(g)"),
  t2_gam_re = gam_case(y ~ t2(x, z, k = c(5, 6)) + s(g, bs = "re"), "REML", exclude = "s(g)"),
  t2 = gamm4_case(y0 ~ t2(x, z), NULL),
  t2_re = gamm4_case(y ~ t2(x, z, k = c(5, 6)), ~ (1 | g))
)
write_json(out, "tests/reference/tensor.json")
