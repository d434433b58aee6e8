# Reference numbers for tests/test_confint.py: lme4's confidence intervals, confint(m, method = "profile")
# and confint(m, method = "Wald"), for three models of the sample data, each fitted by REML (lme4's default)
# and by ML. lme4 interpolates each profile by a spline through a grid of points spaced delta = cutoff / 8
# apart on the zeta scale; profile_fine is the same with delta = 0.05, where the spline's error is much
# smaller (the ends move by up to 2e-3 on Dyestuff's .sig01): mmcli solves for the ends exactly, and the tests
# hold it to both. Run from the repository root:
#   Rscript tests/reference/make_confint.R
# writes tests/reference/confint.json.
suppressPackageStartupMessages(library(lme4))
source("tests/reference/json_writer.R")

models <- list(
  list("dyestuff", "dyestuff.csv", "Yield ~ 1 + (1 | Batch)"),
  list("sleepstudy_slope", "sleepstudy.csv", "Reaction ~ Days + (Days | Subject)"),
  list("penicillin", "penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
  list("dyestuff2", "dyestuff2.csv", "Yield ~ 1 + (1 | Batch)")  # a singular fit: the sd's profile starts at 0
)
interval <- function(ci) {
  lapply(seq_len(nrow(ci)), function(i) list(name = rownames(ci)[i], lower = ci[i, 1], upper = ci[i, 2]))
}
out <- list()
for (m in models) {
  data <- read.csv(file.path("sample_data", m[[2]]), stringsAsFactors = TRUE)
  if ("Subject" %in% names(data)) data$Subject <- factor(data$Subject)
  for (reml in c(TRUE, FALSE)) {
    fit <- suppressMessages(lmer(as.formula(m[[3]]), data = data, REML = reml))
    prof <- suppressWarnings(profile(fit))
    out[[length(out) + 1]] <- list(
      stem = m[[1]], data = m[[2]], formula = m[[3]], REML = reml,
      profile = interval(confint(prof, level = 0.95)),
      profile_90 = interval(confint(prof, level = 0.90)),
      profile_fine = tryCatch(interval(confint(profile(fit, delta = 0.05), level = 0.95)), error = function(e) NULL),
      wald = interval(confint(fit, method = "Wald")),
      wald_90 = interval(confint(fit, method = "Wald", level = 0.90))
    )
  }
}
# Prior weights and an offset (the data of make_lmm_weights.R), ML. lme4 1.1-31's profile intervals of the fixed
# effects of a weighted fit are far narrower than its Wald intervals (with warnings): the tests use only the
# variance parameters' rows of this model.
w <- read.csv("tests/reference/sleepstudy_weighted.csv", stringsAsFactors = TRUE)
w$Subject <- factor(w$Subject)
fit <- lmer(Reaction ~ Days + offset(off) + (1 | Subject), data = w, weights = w, REML = FALSE)
prof <- suppressWarnings(profile(fit))
out[[length(out) + 1]] <- list(
  stem = "sleepstudy_weights_offset", data = "tests/reference/sleepstudy_weighted.csv",
  formula = "Reaction ~ Days + offset(off) + (1 | Subject)", weights = "w", REML = FALSE,
  profile = interval(confint(prof, level = 0.95)),
  profile_fine = interval(suppressWarnings(confint(profile(fit, delta = 0.05), level = 0.95))),
  wald = interval(confint(fit, method = "Wald"))
)
# A term of three correlated effects, ML: the correlations' profiles (.sig02, .sig03, .sig05) hold one
# correlation of a 3 x 3 matrix. lme4's default grid is off by up to 4e-3 here, so the fine grid is kept for
# those three rows.
s <- read.csv("sample_data/sleepstudy.csv")
s$Subject <- factor(s$Subject)
fit <- suppressWarnings(lmer(Reaction ~ Days + (Days + I(Days^2) | Subject), data = s, REML = FALSE))
out[[length(out) + 1]] <- list(
  stem = "sleepstudy_quadratic", data = "sleepstudy.csv",
  formula = "Reaction ~ Days + (Days + I(Days^2) | Subject)", REML = FALSE,
  profile = interval(suppressWarnings(confint(profile(fit)))),
  profile_fine = interval(suppressWarnings(confint(profile(fit, which = c(2, 3, 5), delta = 0.05))))
)
write_json(list(models = out, script = "tests/reference/make_confint.R", versions = versions(c("lme4", "Matrix"))),
           "tests/reference/confint.json")
