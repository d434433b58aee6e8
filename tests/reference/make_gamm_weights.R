# Reference numbers for tests/test_weights_offset.py: gamm4 with prior weights and an offset, REML, on the
# simulated data of gamm_multi.json (a sine in x2) with two deterministic columns added: w = 1 + (i mod 4) / 3
# and off = 0.3 * x1. Run from the repository root:
#   Rscript tests/reference/make_gamm_weights.R
# writes tests/reference/gamm_weighted.csv (the data) and tests/reference/gamm_weights_offset.json (theta included, so that the tests can evaluate at exactly
# gamm4's parameters). Numbers carry as many significant digits (15 to 17) as it takes to read back the same
# double.
suppressPackageStartupMessages({
  library(gamm4)
  library(mgcv)
  library(lme4)
})
source("tests/reference/json_writer.R")  # to_json, write_json, versions

src <- jsonlite::fromJSON("tests/reference/gamm_multi.json")$data
d <- data.frame(y = src$y, x1 = src$x1, x2 = src$x2, g = src$g)
i <- seq_len(nrow(d)) - 1
d$w <- 1 + (i %% 4) / 3
d$off <- 0.3 * d$x1
write.csv(d, "tests/reference/gamm_weighted.csv", row.names = FALSE)
d <- read.csv("tests/reference/gamm_weighted.csv")  # exactly the numbers the tests read
d$g <- factor(d$g)
formula <- 'y ~ x1 + s(x2, bs = "cr") + offset(off)'
m <- gamm4(as.formula(formula), random = ~ (1 | g), data = d, weights = d$w, REML = TRUE)
grid <- data.frame(x1 = seq(-1, 1, length = 11), x2 = seq(0, 1, length = 11), off = seq(0, 0.5, length = 11))
pr <- predict(m$gam, newdata = grid, se.fit = TRUE)
vc <- as.data.frame(VarCorr(m$mer))
sm <- m$gam$smooth[[1]]
out <- list(
  dataset = "gamm_weighted.csv",
  formula = formula,
  random = "~(1 | g)",
  weights = "w",
  offset = "off",
  REMLcrit = as.numeric(REMLcrit(m$mer)),
  theta = I(as.numeric(getME(m$mer, "theta"))),
  theta_names = I(names(getME(m$mer, "theta"))),
  varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], var1 = vc$var1[i], vcov = vc$vcov[i])),
  mer_fixef = as.list(fixef(m$mer)),
  gam_coef = as.list(coef(m$gam)),
  gam_edf = sum(m$gam$edf[sm$first.para:sm$last.para]),
  grid = lapply(seq_len(nrow(grid)), function(i) list(x1 = grid$x1[i], x2 = grid$x2[i], off = grid$off[i])),
  predict = I(as.numeric(pr$fit)),
  predict_se = I(as.numeric(pr$se.fit)),
  script = "tests/reference/make_gamm_weights.R",
  versions = versions(c("gamm4", "mgcv", "lme4", "Matrix"))
)
write_json(out, "tests/reference/gamm_weights_offset.json")
