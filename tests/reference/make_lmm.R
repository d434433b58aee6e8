# Reference numbers for tests/test_lmm.py and tests/test_cli_fit.py: sixteen lme4 fits (eight models, each by
# ML and by REML) on the CSV files in sample_data/. Run from the repository root:
#   Rscript tests/reference/make_lmm.R
# writes tests/reference/<stem>_<ml|reml>.json. Each number is written with as many
# significant digits (15 to 17) as it takes to read back the same double.
suppressPackageStartupMessages({
  library(lme4)
  library(Matrix)
})

source("tests/reference/json_writer.R")  # to_json, write_json, versions

## Everything the tests read from an lmer fit. `extra` (a named list) is appended to the fields.
lmm_fields <- function(m, dataset, formula, seconds, script, extra = list()) {
  reml <- isREML(m)
  vc <- as.data.frame(VarCorr(m))
  varcorr <- lapply(seq_len(nrow(vc)), function(i) {
    r <- list(grp = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])
    r[!vapply(r, function(v) is.na(v), TRUE)]       # as jsonlite writes a data frame: NA cells left out
  })
  ## Conditional modes and SDs, one entry per (grouping factor, term); grouping factors in sorted order.
  rr <- as.data.frame(ranef(m, condVar = TRUE))
  ranef <- list()
  for (g in sort(unique(as.character(rr$grpvar)))) {
    for (tm in unique(as.character(rr$term[rr$grpvar == g]))) {
      s <- rr[rr$grpvar == g & rr$term == tm, ]
      ranef[[length(ranef) + 1]] <- list(group = g, term = tm, levels = I(as.character(s$grp)),
                                         mode = I(s$condval), condsd = I(s$condsd))
    }
  }
  sm <- summary(m)
  cf <- coef(sm)
  ll <- logLik(m)
  out <- list(
    dataset = dataset,
    formula = formula,
    REML = reml,
    lme4_version = as.character(packageVersion("lme4")),
    nobs = nobs(m),
    ngroups = as.list(ngrps(m)),
    theta = as.numeric(getME(m, "theta")),
    sigma = sigma(m),
    varcorr = varcorr,
    fixef = as.list(fixef(m)),
    se = setNames(as.list(cf[, "Std. Error"]), rownames(cf)),
    tvalue = setNames(as.list(cf[, "t value"]), rownames(cf)),
    vcov = as.matrix(vcov(m)),
    logLik = as.numeric(ll),
    df = attr(ll, "df"),
    AIC = AIC(m),
    BIC = BIC(m),
    deviance = if (reml) NULL else deviance(m),
    REMLcrit = if (reml) REMLcrit(m) else NULL,
    df_resid = df.residual(m),
    singular = isSingular(m),
    scaled_resid_quantiles = I(as.numeric(quantile(residuals(m, "pearson", scaled = TRUE)))),  # as summary()
    fitted = I(as.numeric(fitted(m))),
    ranef = ranef,
    lme4_fit_seconds = seconds
  )
  out <- c(out, extra)
  out$script <- script
  out$versions <- versions(c("lme4", "Matrix"))
  out
}

read_data <- function(file) {
  d <- read.csv(file.path("sample_data", file), stringsAsFactors = TRUE)
  if (file == "sleepstudy.csv") d$Subject <- factor(d$Subject)
  if (file == "cake.csv") {
    d$replicate <- factor(d$replicate)          # 1..15, levels in numeric order
    d$temperature <- factor(d$temperature)      # unordered (lme4's own cake has it ordered)
  }
  d
}

if (sys.nframe() == 0L) {
  models <- list(
    c("sleepstudy_intercept", "sleepstudy.csv", "Reaction ~ Days + (1 | Subject)"),
    c("sleepstudy_slope", "sleepstudy.csv", "Reaction ~ Days + (Days | Subject)"),
    c("sleepstudy_slope_uncorr", "sleepstudy.csv", "Reaction ~ Days + (Days || Subject)"),
    c("dyestuff", "dyestuff.csv", "Yield ~ 1 + (1 | Batch)"),
    c("dyestuff2", "dyestuff2.csv", "Yield ~ 1 + (1 | Batch)"),
    c("penicillin", "penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    c("pastes", "pastes.csv", "strength ~ 1 + (1 | batch/cask)"),
    c("cake", "cake.csv", "angle ~ recipe * temperature + (1 | recipe:replicate)")
  )
  for (mod in models) {
    d <- read_data(mod[2])
    for (reml in c(FALSE, TRUE)) {
      f <- as.formula(mod[3])
      seconds <- round(system.time(m <- lmer(f, data = d, REML = reml))[["elapsed"]], 3)
      out <- lmm_fields(m, mod[2], mod[3], seconds, "tests/reference/make_lmm.R")
      write_json(out, file.path("tests/reference", sprintf("%s_%s.json", mod[1], if (reml) "reml" else "ml")))
    }
  }
}
