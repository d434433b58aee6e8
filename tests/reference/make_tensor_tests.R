# Reference numbers for tests/test_tensor_tests.py: the smooth-terms table of summary.gam (edf, Ref.df, F,
# p-value) for te() fitted by mgcv's gam and for t2() fitted by gamm4, with and without a random intercept; the
# random intercepts' conditional modes (ranef(fit$mer) for gamm4, the coefficients of s(g, bs = "re") for gam)
# and predictions conditional on the group. Data: tests/reference/tensor_surface.csv (made by make_tensor.R) and
# tests/reference/tensor_weak.csv (made here).
# Run from the repository root:
#   Rscript tests/reference/make_tensor_tests.R
# writes tests/reference/tensor_tests.json. Each fit records its own parameters (gam's sp, gamm4's theta) so that
# the tests can evaluate mmcli there (a deterministic evaluation) as well as at mmcli's own optimum.
suppressPackageStartupMessages({
  library(mgcv)
  library(gamm4)
  library(lme4)
})
source("tests/reference/json_writer.R")
`%||%` <- function(a, b) if (is.null(a)) b else a

d <- read.csv("tests/reference/tensor_surface.csv", stringsAsFactors = TRUE)
## a weak surface, so that the p-values are not all zero: the same (x, z, g), y = 0.12 sin(2 pi x) z + u_g + e,
## u_g ~ N(0, 0.3^2), e ~ N(0, 0.3^2); written to tests/reference/tensor_weak.csv
set.seed(1129)
uw <- rnorm(nlevels(d$g), sd = 0.3)
weak <- data.frame(y = round(0.12 * sin(2 * pi * d$x) * d$z + uw[as.integer(d$g)] + rnorm(nrow(d), sd = 0.3), 6),
                   x = d$x, z = d$z, g = d$g)
write.csv(weak, "tests/reference/tensor_weak.csv", row.names = FALSE, quote = FALSE)
weak <- read.csv("tests/reference/tensor_weak.csv", stringsAsFactors = TRUE)
## new rows for conditional predictions: a 6 x 5 grid, the groups in turn
grid <- expand.grid(x = seq(0.05, 0.95, length.out = 6), z = seq(0.1, 0.9, length.out = 5))
grid$g <- factor(rep(levels(d$g), length.out = nrow(grid)), levels = levels(d$g))

s_table <- function(m) {
  s <- summary(m)
  st <- s$s.table
  list(
    rows = lapply(seq_len(nrow(st)), function(i) list(term = rownames(st)[i], edf = st[i, "edf"],
      Ref.df = st[i, "Ref.df"], F = st[i, "F"], p_value = st[i, "p-value"])),
    residual_df = s$residual.df
  )
}

gam_case <- function(formula, mmcli, data = d) {
  m <- gam(formula, data = data, method = "REML")
  st <- s_table(m)
  out <- list(formula = deparse(formula), mmcli = mmcli, sp = I(as.numeric(m$sp)), scale = m$sig2,
              score = as.numeric(m$gcv.ubre), edf1 = I(as.numeric(m$edf1)),
              s_table = st$rows, residual_df = st$residual_df)
  re <- grep("^s\\(g\\)", names(coef(m)))
  if (length(re)) {
    out$ranef <- list(level = I(levels(d$g)), mode = I(as.numeric(coef(m)[re])),
                      sd = I(as.numeric(sqrt(diag(vcov(m))[re]))))
    pr <- predict(m, newdata = grid, se.fit = TRUE)
    out$conditional <- list(fit = I(as.numeric(pr$fit)), se = I(as.numeric(pr$se.fit)))
  }
  out
}

gamm4_case <- function(formula, random, mmcli, data = d) {
  m <- if (is.null(random)) gamm4(formula, data = data, REML = TRUE) else
    gamm4(formula, random = random, data = data, REML = TRUE)
  st <- s_table(m$gam)
  out <- list(formula = deparse(formula), random = if (is.null(random)) "none" else deparse(random), mmcli = mmcli,
              REMLcrit = as.numeric(REMLcrit(m$mer)),
              theta = I(as.numeric(getME(m$mer, "theta"))), theta_names = I(names(getME(m$mer, "theta"))),
              sigma = sigma(m$mer), s_table = st$rows, residual_df = st$residual_df)
  ## gamm4 1.8-41's summary takes R from its fit basis (t2's constraint on the unpenalized columns) but the
  ## coefficients and Vp in its prediction basis (the sum-to-zero constraint), so its t2 F depends on the signs
  ## LAPACK gives the margins' eigenvectors. The test as testStat defines it, R and the coefficients in one
  ## basis: R'R = X' V^-1 X with X the prediction basis (model.matrix) and V the covariance of y over the random
  ## intercept alone (the smooth's parts are its penalty).
  X <- model.matrix(m$gam)
  Vy <- diag(nrow(X)) * sigma(m$mer)^2
  if (!is.null(random)) {
    Zg <- model.matrix(~ g - 1, data)
    Vy <- Vy + tcrossprod(Zg) * as.numeric(VarCorr(m$mer)$g)
  }
  Xw <- backsolve(chol(Vy), X, transpose = TRUE)
  sm <- m$gam$smooth[[1]]
  ind <- sm$first.para:sm$last.para
  edf <- sum(m$gam$edf[ind])
  ts <- mgcv:::testStat(coef(m$gam)[ind], Xw[, ind], m$gam$Vp[ind, ind], min(length(ind), edf), type = 0,
                        res.df = st$residual_df)
  out$s_table_consistent <- list(edf = edf, Ref.df = attr(ts, "rank") %||% ts$rank, F = ts$stat / ts$rank,
                                 p_value = ts$pval)
  if (!is.null(random)) {
    re <- ranef(m$mer, condVar = TRUE)$g
    pv <- attr(re, "postVar")
    out$ranef <- list(level = I(rownames(re)), mode = I(as.numeric(re[, 1])), sd = I(sqrt(as.numeric(pv[1, 1, ]))))
    pop <- as.numeric(predict(m$gam, newdata = grid))
    out$conditional <- list(fit = I(pop + re[as.character(grid$g), 1]))
    out$fitted_conditional <- I(as.numeric(fitted(m$mer)))
  }
  out
}

out <- list(
  script = "tests/reference/make_tensor_tests.R",
  versions = versions(c("mgcv", "gamm4", "lme4", "Matrix")),
  data = "tests/reference/tensor_surface.csv",
  grid = list(x = I(grid$x), z = I(grid$z), g = I(as.character(grid$g))),
  te = gam_case(y0 ~ te(x, z), "y0 ~ te(x, z)"),
  te_re = gam_case(y ~ te(x, z) + s(g, bs = "re"), "y ~ te(x, z) + (1 | g)"),
  t2 = gamm4_case(y0 ~ t2(x, z), NULL, "y0 ~ t2(x, z)"),
  t2_re = gamm4_case(y ~ t2(x, z, k = c(5, 6)), ~ (1 | g), "y ~ t2(x, z, k = c(5, 6)) + (1 | g)"),
  te_weak = gam_case(y ~ te(x, z) + s(g, bs = "re"), "y ~ te(x, z) + (1 | g)", weak),
  t2_weak = gamm4_case(y ~ t2(x, z), ~ (1 | g), "y ~ t2(x, z) + (1 | g)", weak)
)
write_json(out, "tests/reference/tensor_tests.json")
