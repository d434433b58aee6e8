# Reference numbers for tests/test_gamm_glmm.py: additive mixed models with a binomial or Poisson response fitted
# by gamm4 (glmer on the mixed-model form of the smooths, Laplace approximation): the mer part (logLik, deviance,
# AIC, BIC, fixed effects with standard errors, variances) and the gam part (edf, lambda, population-level
# predictions with standard errors on the link scale). Run from the repository root:
#   Rscript tests/reference/make_gamm_glmm.R
# writes tests/reference/gamm_glmm.csv (simulated data, a fixed seed) and tests/reference/gamm_glmm.json.
suppressPackageStartupMessages({
  library(gamm4)
  library(mgcv)
  library(lme4)
})
source("tests/reference/json_writer.R")

set.seed(20261130)
ng <- 20; nper <- 20; n <- ng * nper
g <- rep(sprintf("g%02d", seq_len(ng)), each = nper)
x <- round(runif(n), 4)
z <- round(rnorm(n), 3)
b <- rnorm(ng, sd = 0.7)[as.integer(factor(g))]
f <- sin(2 * pi * x)
y <- rbinom(n, 1, plogis(0.2 + 1.5 * f + 0.4 * z + b))
size <- sample(2:8, n, replace = TRUE)
succ <- rbinom(n, size, plogis(-0.3 + f + b))
exposure <- round(runif(n, 0.5, 3), 2)
count <- rpois(n, exposure * exp(0.3 + 0.8 * f + b / 2))
sim <- data.frame(y = y, succ = succ, size = size, count = count, exposure = exposure, x = x, z = z, g = g)
write.csv(sim, "tests/reference/gamm_glmm.csv", row.names = FALSE, quote = FALSE)
sim <- read.csv("tests/reference/gamm_glmm.csv")
sim$g <- factor(sim$g)

grid <- data.frame(x = c(0.05, 0.25, 0.5, 0.8), z = c(0, 1, -0.5, 0.2), size = 1, succ = 0, exposure = 1)

cases <- list(
  binary_cr = list(formula = 'y ~ z + s(x, bs = "cr", k = 8)', family = binomial(),
                   mmcli = "y ~ z + s(x, bs='cr', k=8) + (1|g)", family_name = "binomial", link = "logit"),
  binary_tp_probit = list(formula = "y ~ s(x, k = 6)", family = binomial(link = "probit"),
                          mmcli = "y ~ s(x, k=6) + (1|g)", family_name = "binomial", link = "probit"),
  cbind_cr = list(formula = 'cbind(succ, size - succ) ~ s(x, bs = "cr", k = 8)', family = binomial(),
                  mmcli = "cbind(succ, size - succ) ~ s(x, bs='cr', k=8) + (1|g)", family_name = "binomial",
                  link = "logit"),
  poisson_offset = list(formula = 'count ~ s(x, bs = "cr", k = 8) + offset(log(exposure))', family = poisson(),
                        mmcli = "count ~ s(x, bs='cr', k=8) + offset(log(exposure)) + (1|g)",
                        family_name = "poisson", link = "log")
)

out <- list()
for (nm in names(cases)) {
  cs <- cases[[nm]]
  m <- gamm4(as.formula(cs$formula), random = ~ (1 | g), family = cs$family, data = sim)
  s <- summary(m$mer)
  vc <- as.data.frame(VarCorr(m$mer))
  fe <- s$coefficients
  pr <- predict(m$gam, newdata = grid, se.fit = TRUE)
  smooth_lambda <- m$gam$sp
  edf_by_smooth <- sapply(m$gam$smooth, function(sm) sum(m$gam$edf[sm$first.para:sm$last.para]))
  out[[nm]] <- list(
    formula = cs$mmcli, family = cs$family_name, link = cs$link,
    loglik = as.numeric(logLik(m$mer)), deviance = as.numeric(deviance(m$mer)),
    minus2loglik = -2 * as.numeric(logLik(m$mer)),
    aic = AIC(m$mer), bic = BIC(m$mer), df_resid = df.residual(m$mer),
    fixed_names = I(rownames(fe)), fixed = I(unname(fe[, 1])), fixed_se = I(unname(fe[, 2])),
    re_groups = I(vc$grp), re_variance = I(vc$vcov),
    theta = I(unname(getME(m$mer, "theta"))),
    edf = I(unname(edf_by_smooth)), lambda = I(unname(smooth_lambda)),
    gam_coefficients = I(unname(coef(m$gam))), gam_edf_total = sum(m$gam$edf),
    s_table = I(unname(summary(m$gam)$s.table[1, ])), s_table_columns = I(colnames(summary(m$gam)$s.table)),
    predict_x = I(grid$x), predict_z = I(grid$z),
    predict_link = I(unname(as.numeric(pr$fit))), predict_link_se = I(unname(as.numeric(pr$se.fit)))
  )
}
out$versions <- versions(c("lme4", "mgcv", "gamm4"))
write_json(out, "tests/reference/gamm_glmm.json")
