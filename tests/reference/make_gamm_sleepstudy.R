# Reference numbers for tests/test_gamm.py: gamm4 on sleepstudy with a random intercept per Subject, REML, for a
# linear term, a shrinkage smooth (cs, k = 10) and a small cubic regression spline (cr, k = 5). Run from the
# repository root:
#   Rscript tests/reference/make_gamm_sleepstudy.R
# writes tests/reference/gamm_sleepstudy_{linear,cs,cr5}.json. Each number is written with as many significant
# digits (15 to 17) as it takes to read back the same double.
#
# gamm4's answer for the cs model is not the same in every R process: two versions are seen (REML criterion
# 1795.3284813 and 1795.3284077, the first an early stop on a flat surface), fixed for the life of a process.
# So each model is fitted in RUNS separate R processes (this script calls itself with --fit), the criterion of
# every run is recorded in `runs_REMLcrit`, and the file holds the run with the lowest criterion, with its theta.
suppressPackageStartupMessages({
  library(gamm4)
  library(mgcv)
  library(lme4)
})
source("tests/reference/json_writer.R")  # to_json, write_json, versions

d <- read.csv("sample_data/sleepstudy.csv")
d$Subject <- factor(d$Subject)

## The prediction grid: Days 0, 0.25, ..., 9. The Reaction column (the first observed value) is a placeholder
## that predict() does not use; it is kept because the earlier files had it.
grid <- data.frame(Days = seq(0, 9, by = 0.25), Reaction = d$Reaction[1])

cases <- list(
  linear = "Reaction ~ Days",
  cs = 'Reaction ~ s(Days, bs = "cs")',
  cr5 = 'Reaction ~ s(Days, bs = "cr", k = 5)'
)

RUNS <- 6
args <- commandArgs(trailingOnly = TRUE)
script <- "tests/reference/make_gamm_sleepstudy.R"

fit_one <- function(name) {
  m <- gamm4(as.formula(cases[[name]]), random = ~ (1 | Subject), data = d, REML = TRUE)
  vc <- as.data.frame(VarCorr(m$mer))
  varcorr <- lapply(seq_len(nrow(vc)), function(i) {
    r <- list(grp = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])
    r[!vapply(r, function(v) is.na(v), TRUE)]
  })
  cf <- coef(summary(m$mer))
  sm <- m$gam$smooth
  gam_edf <- if (length(sm) == 0) NULL else
    setNames(lapply(sm, function(s) sum(m$gam$edf[s$first.para:s$last.para])), vapply(sm, function(s) s$label, ""))
  pr <- predict(m$gam, newdata = grid, se.fit = TRUE)
  out <- list(
    dataset = "sleepstudy.csv",
    formula = cases[[name]],
    random = "~(1 | Subject)",
    gamm4_version = as.character(packageVersion("gamm4")),
    mgcv_version = as.character(packageVersion("mgcv")),
    REMLcrit = as.numeric(REMLcrit(m$mer)),
    mer_logLik = as.numeric(logLik(m$mer)),
    varcorr = varcorr,
    mer_fixef = as.list(fixef(m$mer)),
    mer_se = setNames(as.list(cf[, "Std. Error"]), rownames(cf)),
    gam_coef = as.list(coef(m$gam)),
    gam_edf = gam_edf,
    smooth_knots = lapply(sm, function(s) I(as.numeric(s$xp))),
    grid = lapply(seq_len(nrow(grid)), function(i) list(Days = grid$Days[i], Reaction = grid$Reaction[i])),
    predict = I(as.numeric(pr$fit)),
    predict_se = I(as.numeric(pr$se.fit)),
    r_sq = summary(m$gam)$r.sq,
    theta = I(as.numeric(getME(m$mer, "theta"))),
    theta_names = I(names(getME(m$mer, "theta"))),
    script = script,
    versions = versions(c("gamm4", "mgcv", "lme4", "Matrix", "nlme"))
  )
  out
}

if (length(args) == 3 && args[1] == "--fit") {  # one run, in its own process
  saveRDS(fit_one(args[2]), args[3])
} else {
  for (name in names(cases)) {
    runs <- lapply(seq_len(RUNS), function(i) {
      tmp <- tempfile(fileext = ".rds")
      status <- system2("Rscript", c(script, "--fit", name, tmp))
      stopifnot(status == 0)
      readRDS(tmp)
    })
    crit <- vapply(runs, function(r) r$REMLcrit, 0)
    out <- runs[[which.min(crit)]]
    out$runs_REMLcrit <- I(crit)
    write_json(out, sprintf("tests/reference/gamm_sleepstudy_%s.json", name))
  }
}
