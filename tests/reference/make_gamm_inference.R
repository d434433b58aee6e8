# Reference numbers for tests/test_gamm_inference.py: the smooth-terms table of summary(fit$gam) (edf, Ref.df, F,
# p-value; mgcv's testStat, or reTest for a smooth without a null space such as cs), the conditional modes of the
# random effects (ranef(fit$mer, condVar = TRUE)) and the conditional fitted values (fitted(fit$mer)) of gamm4
# fits, REML. Run from the repository root:
#   Rscript tests/reference/make_gamm_inference.R
# writes tests/reference/gamm_inference_sim.csv (mgcv's gamSim(1) data with a grouping factor added) and
# tests/reference/gamm_inference.json. Each case records gamm4's theta, so that the tests can evaluate mmcli at
# that theta (a deterministic evaluation) as well as at mmcli's own optimum.
suppressPackageStartupMessages({
  library(gamm4)
  library(mgcv)
  library(lme4)
})
source("tests/reference/json_writer.R")  # to_json, write_json, versions

sleep <- read.csv("sample_data/sleepstudy.csv")
sleep$Subject <- factor(sleep$Subject)

## Simulated data: Gu and Wahba's four-term example (gamSim(1)), plus 15 groups with a random intercept.
set.seed(16)
sim <- gamSim(1, n = 300, dist = "normal", scale = 2, verbose = FALSE)
g <- sprintf("g%02d", rep(1:15, length.out = 300))
u <- rnorm(15, sd = 1.5)
sim <- data.frame(
  y = round(sim$y + u[as.integer(factor(g))], 6),
  x0 = round(sim$x0, 6), x1 = round(sim$x1, 6), x2 = round(sim$x2, 6), x3 = round(sim$x3, 6),
  g = g
)
write.csv(sim, "tests/reference/gamm_inference_sim.csv", row.names = FALSE, quote = FALSE)
sim <- read.csv("tests/reference/gamm_inference_sim.csv")
sim$g <- factor(sim$g)
## make_gamm_weights.R's data: prior weights, an offset and a parametric term.
weighted <- read.csv("tests/reference/gamm_weighted.csv")
weighted$g <- factor(weighted$g)

## New rows for conditional predictions: known and unknown levels.
new_sleep <- data.frame(Days = c(0.5, 4.25, 9, 2), Subject = c("308", "372", "335", "999"))
new_sim <- data.frame(x0 = c(0.1, 0.5, 0.9), x1 = c(0.3, 0.6, 0.2), x2 = c(0.2, 0.45, 0.8), x3 = c(0.7, 0.1, 0.5),
                      g = c("g01", "g07", "g99"))

cases <- list(
  sleep_cr = list(data = "sleep", formula = 'Reaction ~ s(Days, bs = "cr")', random = "~ (1 | Subject)",
                  mmcli = "Reaction ~ s(Days, bs='cr') + (1|Subject)"),
  sleep_cs = list(data = "sleep", formula = 'Reaction ~ s(Days, bs = "cs")', random = "~ (1 | Subject)",
                  mmcli = "Reaction ~ s(Days, bs='cs') + (1|Subject)"),
  sleep_cr_slope = list(data = "sleep", formula = 'Reaction ~ s(Days, bs = "cr", k = 6)',
                        random = "~ (Days | Subject)", mmcli = "Reaction ~ s(Days, bs='cr', k=6) + (Days|Subject)"),
  sim_three = list(data = "sim", formula = 'y ~ s(x0, bs = "cr") + s(x2, bs = "cr") + s(x3, bs = "cr")',
                   random = NULL, mmcli = "y ~ s(x0, bs='cr') + s(x2, bs='cr') + s(x3, bs='cr')"),
  sim_four_g = list(data = "sim",
                    formula = 'y ~ s(x0, bs = "cr") + s(x1, bs = "cs") + s(x2, bs = "cr", k = 12) + s(x3, bs = "cs")',
                    random = "~ (1 | g)",
                    mmcli = "y ~ s(x0, bs='cr') + s(x1, bs='cs') + s(x2, bs='cr', k=12) + s(x3, bs='cs') + (1|g)"),
  weighted = list(data = "weighted", formula = 'y ~ x1 + s(x2, bs = "cr") + offset(off)', random = "~ (1 | g)",
                  weights = "w", mmcli = "y ~ x1 + s(x2, bs='cr') + offset(off) + (1|g)")
)

## Conditional predictions for new rows, by hand: predict.gam's population prediction plus each row's random
## effects (0 for a level the fit does not have, as lme4's allow.new.levels = TRUE).
conditional <- function(m, new, group, slope) {
  pop <- as.numeric(predict(m$gam, newdata = new))
  re <- ranef(m$mer)[[group]]
  lev <- as.character(new[[group]])
  known <- lev %in% rownames(re)
  add <- rep(0, nrow(new))
  add[known] <- re[lev[known], "(Intercept)"]
  if (!is.null(slope)) add[known] <- add[known] + re[lev[known], slope] * new[[slope]][known]
  list(population = I(pop), conditional = I(pop + add), new_level = I(!known))
}

fit_case <- function(cs) {
  d <- switch(cs$data, sleep = sleep, sim = sim, weighted = weighted)
  if (!is.null(cs$weights)) prior_w <<- d[[cs$weights]]  # gamm4 looks its weights up outside this function
  m <- if (is.null(cs$random)) gamm4(as.formula(cs$formula), data = d, REML = TRUE) else if (is.null(cs$weights))
    gamm4(as.formula(cs$formula), random = as.formula(cs$random), data = d, REML = TRUE) else
    gamm4(as.formula(cs$formula), random = as.formula(cs$random), data = d, weights = prior_w, REML = TRUE)
  s <- summary(m$gam)
  st <- s$s.table
  s_table <- lapply(seq_len(nrow(st)), function(i) list(term = rownames(st)[i], edf = st[i, "edf"],
    Ref.df = st[i, "Ref.df"], F = st[i, "F"], p_value = st[i, "p-value"]))
  re <- ranef(m$mer, condVar = TRUE)
  groups <- setdiff(names(re), grep("^Xr", names(re), value = TRUE))
  ranef_rows <- list()
  for (gr in groups) {
    b <- re[[gr]]
    pv <- attr(b, "postVar")
    for (j in seq_len(nrow(b))) for (i in seq_len(ncol(b))) {
      ranef_rows[[length(ranef_rows) + 1]] <- list(group = gr, level = rownames(b)[j], term = colnames(b)[i],
                                                   mode = b[j, i], cond_sd = sqrt(pv[i, i, j]))
    }
  }
  out <- list(
    data = switch(cs$data, sleep = "sample_data/sleepstudy.csv", sim = "tests/reference/gamm_inference_sim.csv",
                  weighted = "tests/reference/gamm_weighted.csv"),
    formula = cs$formula, random = if (is.null(cs$random)) "none" else cs$random, mmcli = cs$mmcli,
    weights = if (is.null(cs$weights)) NULL else cs$weights,
    REMLcrit = as.numeric(REMLcrit(m$mer)),
    theta = I(as.numeric(getME(m$mer, "theta"))),
    theta_names = I(names(getME(m$mer, "theta"))),
    sigma = sigma(m$mer),
    residual_df = s$residual.df,
    s_table = s_table,
    ranef = ranef_rows,
    fitted_conditional = I(as.numeric(fitted(m$mer)))
  )
  if (cs$data == "sleep") {
    out$newdata <- list(Days = I(new_sleep$Days), Subject = I(new_sleep$Subject))
    out$predict <- conditional(m, new_sleep, "Subject", if (grepl("Days \\|", cs$random)) "Days" else NULL)
  } else if (cs$data == "sim" && !is.null(cs$random)) {
    out$newdata <- list(x0 = I(new_sim$x0), x1 = I(new_sim$x1), x2 = I(new_sim$x2), x3 = I(new_sim$x3),
                        g = I(new_sim$g))
    out$predict <- conditional(m, new_sim, "g", NULL)
  }
  out
}

res <- lapply(cases, fit_case)
write_json(list(
  script = "tests/reference/make_gamm_inference.R",
  versions = versions(c("gamm4", "mgcv", "lme4", "Matrix")),
  cases = res
), "tests/reference/gamm_inference.json")
