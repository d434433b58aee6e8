# Reference numbers for tests/test_tprs.py: mgcv's thin plate (tp, ts), P-spline (ps) and by= smooths, as
# bases (smooth.construct / smoothCon) and as gamm4 fits, with and without a random intercept.
# Run from the repository root:
#   Rscript tests/reference/make_tprs.R
# writes tests/reference/mcycle.csv (MASS's motorcycle data), tests/reference/tprs_sim.csv (simulated data) and
# tests/reference/tprs.json.
suppressPackageStartupMessages({
  library(gamm4)
  library(mgcv)
  library(lme4)
  library(MASS)
})
source("tests/reference/json_writer.R")

write.csv(mcycle, "tests/reference/mcycle.csv", row.names = FALSE)

## Simulated data: 12 groups of 20; a smooth surface in (x, z), a factor fa with its own curve in x per level.
set.seed(20261129)
n_g <- 12
per <- 20
n <- n_g * per
g <- sprintf("g%02d", rep(seq_len(n_g), each = per))
x <- round(runif(n), 5)
z <- round(runif(n), 5)
fa <- sample(c("a", "b", "c"), n, replace = TRUE)
u <- rnorm(n_g, sd = 0.5)
fx <- ifelse(fa == "a", sin(2 * pi * x), ifelse(fa == "b", 2 * x^2, 0.5 - x))
y <- 1 + fx + 0.8 * exp(-((x - 0.5)^2 + (z - 0.4)^2) / 0.1) + z * cos(3 * x) + u[rep(seq_len(n_g), each = per)] +
  rnorm(n, sd = 0.3)
sim <- data.frame(y = round(y, 6), x = x, z = z, fa = fa, g = g)
write.csv(sim, "tests/reference/tprs_sim.csv", row.names = FALSE)
sim$fa <- factor(sim$fa)
sim$g <- factor(sim$g)
sleep <- read.csv("sample_data/sleepstudy.csv")
sleep$Subject <- factor(sleep$Subject)

## A basis: the unconstrained X and S of smooth.construct and the constrained, scaled ones of smoothCon.
basis <- function(spec, data) {
  raw <- smooth.construct(spec, data, NULL)
  con <- smoothCon(spec, data, absorb.cons = TRUE, scale.penalty = TRUE)[[1]]
  list(X = raw$X, S = raw$S[[1]], Xc = con$X, Sc = con$S[[1]], S_scale = con$S.scale, rank = raw$rank,
       null_space_dim = raw$null.space.dim, knots = if (is.null(raw$Xu)) raw$knots else raw$Xu,
       shift = if (is.null(raw$shift)) NULL else I(raw$shift))
}
bases <- list(
  mcycle_tp = basis(s(times), mcycle),
  mcycle_tp_k20 = basis(s(times, k = 20), mcycle),
  mcycle_ts = basis(s(times, bs = "ts"), mcycle),
  mcycle_ps = basis(s(times, bs = "ps"), mcycle),
  sim_tp_2d = basis(s(x, z), sim)
)

## More unique points than mgcv's max.knots (2000): mgcv draws 2000 knots with set.seed(1).
big <- data.frame(x = round(sqrt((1:2500) / 2500) + sin((1:2500) / 7) / 50, 8))
big$y <- round(sin(5 * big$x) + cos(17 * big$x) / 3, 8)
bb <- smooth.construct(s(x), big, NULL)
big_fit <- lm.fit(bb$X, big$y)
big_case <- list(
  x = I(big$x),
  y = I(big$y),
  knots = I(sort(as.numeric(bb$Xu)) + bb$shift[1]),
  projection = I(as.numeric(big_fit$fitted.values)),
  gen_eigen = I(sort(Re(eigen(solve(crossprod(bb$X), bb$S[[1]]), only.values = TRUE)$values)))
)

## gamm4 fits (REML) and the same models' gam side: criterion, each smooth's EDF, sp and S.scale, predictions.
fit_case <- function(formula, random, data, grid) {
  m <- if (is.null(random)) gamm4(formula, data = data, REML = TRUE) else
    gamm4(formula, random = random, data = data, REML = TRUE)
  vc <- as.data.frame(VarCorr(m$mer))
  sm <- m$gam$smooth
  pr <- predict(m$gam, newdata = grid, se.fit = TRUE)
  list(
    formula = paste(deparse(formula), collapse = ""),
    random = if (is.null(random)) NULL else paste(deparse(random), collapse = ""),
    REMLcrit = as.numeric(REMLcrit(m$mer)),
    sigma = sigma(m$mer),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], sdcor = vc$sdcor[i])),
    smooths = lapply(seq_along(sm), function(i) list(
      label = sm[[i]]$label,
      edf = sum(m$gam$edf[sm[[i]]$first.para:sm[[i]]$last.para]),
      sp = as.numeric(m$gam$sp[i]),
      S_scale = sm[[i]]$S.scale
    )),
    mer_fixef_names = I(names(fixef(m$mer))),
    grid = lapply(grid, function(v) I(as.character(v))),
    predict = I(as.numeric(pr$fit)),
    predict_se = I(as.numeric(pr$se.fit))
  )
}
mc_grid <- data.frame(times = seq(3, 57, length.out = 19))
sl_grid <- data.frame(Days = seq(0, 9, length.out = 13))
sim_grid <- data.frame(x = seq(0.03, 0.97, length.out = 15), z = rev(seq(0.05, 0.95, length.out = 15)),
                       fa = rep(c("a", "b", "c"), 5))
fits <- list(
  mcycle_tp = fit_case(accel ~ s(times), NULL, mcycle, mc_grid),
  mcycle_tp_k20 = fit_case(accel ~ s(times, k = 20), NULL, mcycle, mc_grid),
  mcycle_ts = fit_case(accel ~ s(times, bs = "ts"), NULL, mcycle, mc_grid),
  mcycle_ps = fit_case(accel ~ s(times, bs = "ps"), NULL, mcycle, mc_grid),
  sleep_tp = fit_case(Reaction ~ s(Days), ~ (1 | Subject), sleep, sl_grid),
  sim_tp_k15 = fit_case(y ~ s(x, k = 15), NULL, sim, sim_grid),
  sim_tp_k15_re = fit_case(y ~ s(x, k = 15), ~ (1 | g), sim, sim_grid),
  sim_2d = fit_case(y ~ s(x, z), NULL, sim, sim_grid),
  sim_2d_re = fit_case(y ~ s(x, z), ~ (1 | g), sim, sim_grid),
  sim_fby = fit_case(y ~ fa + s(x, by = fa), NULL, sim, sim_grid),
  sim_fby_re = fit_case(y ~ fa + s(x, by = fa), ~ (1 | g), sim, sim_grid),
  sim_nby = fit_case(y ~ s(x, by = z), NULL, sim, sim_grid),
  sim_nby_re = fit_case(y ~ s(x, by = z), ~ (1 | g), sim, sim_grid)
)

write_json(c(
  list(generator = "tests/reference/make_tprs.R"),
  versions(c("mgcv", "gamm4", "lme4", "Matrix")),
  list(bases = bases, big = big_case, fits = fits)
), "tests/reference/tprs.json")
