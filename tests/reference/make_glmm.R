# Reference numbers for tests/test_glmm*.py: generalized linear mixed models fitted by lme4's glmer with its
# defaults (Laplace, or adaptive Gauss-Hermite with nAGQ = 25; two stages, bobyqa then Nelder-Mead; standard
# errors from the finite-difference Hessian, as summary() prints them). Run from the repository root:
#   Rscript tests/reference/make_glmm.R
# writes tests/reference/glmm_*.csv (the data, as mmcli reads them) and tests/reference/glmm.json.
suppressPackageStartupMessages(library(lme4))
source("tests/reference/json_writer.R")

## the data: lme4's cbpp and grouseticks, and simulated binary and count data (a fixed seed)
cbpp_df <- data.frame(herd = as.character(cbpp$herd), incidence = cbpp$incidence, size = cbpp$size,
                      period = as.character(cbpp$period))
write.csv(cbpp_df, "tests/reference/glmm_cbpp.csv", row.names = FALSE)
gt <- data.frame(INDEX = as.character(grouseticks$INDEX), TICKS = grouseticks$TICKS,
                 BROOD = as.character(grouseticks$BROOD), YEAR = as.character(grouseticks$YEAR),
                 LOCATION = as.character(grouseticks$LOCATION), cHEIGHT = grouseticks$cHEIGHT)
write.csv(gt, "tests/reference/glmm_grouseticks.csv", row.names = FALSE)

set.seed(20261129)
ng <- 30; nper <- 12; n <- ng * nper
g <- rep(sprintf("g%02d", seq_len(ng)), each = nper)
site <- rep(sprintf("s%d", 1:8), length.out = n)[sample(n)]
x <- round(rnorm(n), 3)
tr <- sample(c("a", "b", "c"), n, replace = TRUE)
b0 <- rnorm(ng, sd = 0.8)[as.integer(factor(g))]
b1 <- rnorm(ng, sd = 0.5)[as.integer(factor(g))]
c0 <- rnorm(8, sd = 0.6)[as.integer(factor(site))]
eta <- -0.3 + 0.9 * x + 0.5 * (tr == "b") - 0.4 * (tr == "c") + b0 + b1 * x + c0
y <- rbinom(n, 1, plogis(eta))
exposure <- round(runif(n, 0.5, 4), 2)
count <- rpois(n, exposure * exp(0.2 + 0.4 * x + b0 / 2))
bin <- data.frame(y = y, outcome = ifelse(y == 1, "yes", "no"), x = x, tr = tr, g = g, site = site,
                  exposure = exposure, count = count)
write.csv(bin, "tests/reference/glmm_binary.csv", row.names = FALSE)

cbpp_df <- read.csv("tests/reference/glmm_cbpp.csv", stringsAsFactors = TRUE)
gt <- read.csv("tests/reference/glmm_grouseticks.csv", stringsAsFactors = TRUE)
bin <- read.csv("tests/reference/glmm_binary.csv", stringsAsFactors = TRUE)
cbpp_df$period <- factor(cbpp_df$period)  # mmcli: --factor period
gt$YEAR <- factor(gt$YEAR)                # mmcli: --factor YEAR

fits <- list(
  list("cbpp", "glmm_cbpp.csv", "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp_df,
       binomial(), 1L),
  list("cbpp_agq25", "glmm_cbpp.csv", "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp_df,
       binomial(), 25L),
  list("grouseticks", "glmm_grouseticks.csv",
       "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", gt, poisson(), 1L),
  list("binary_probit", "glmm_binary.csv", "y ~ x + tr + (1 | g)", bin, binomial(link = "probit"), 1L),
  list("binary_cloglog", "glmm_binary.csv", "y ~ x + tr + (1 | g)", bin, binomial(link = "cloglog"), 1L),
  list("binary_text_logit", "glmm_binary.csv", "outcome ~ x + tr + (1 | g)", bin, binomial(), 1L),
  list("binary_slope", "glmm_binary.csv", "y ~ x + tr + (x | g)", bin, binomial(), 1L),
  list("binary_crossed", "glmm_binary.csv", "y ~ x + tr + (1 | g) + (1 | site)", bin, binomial(), 1L),
  list("poisson_offset", "glmm_binary.csv", "count ~ x + offset(log(exposure)) + (1 | g)", bin, poisson(), 1L)
)

## each model twice: with glmer's defaults (the numbers users see), and with PIRLS run to tolPwrss = 1e-10 and
## bobyqa in both stages (glmer's default tolPwrss = 1e-7 leaves its Laplace deviance inexact by up to ~1e-3, and
## its finite-difference Hessian, hence the standard errors, by up to ~1e-2: the tight fit is the exact Laplace
## estimate, and the default fit is what "within the acceptance tolerances of glmer" is measured against)
summarize <- function(m) {
  s <- summary(m)
  vc <- as.data.frame(VarCorr(m))
  list(deviance = unname(m@devcomp$cmp["dev"]),
       logLik = as.numeric(logLik(m)), AIC = AIC(m), BIC = BIC(m), df_resid = df.residual(m),
       theta = I(as.numeric(getME(m, "theta"))),
       fixef_names = I(names(fixef(m))),
       fixef = I(as.numeric(fixef(m))),
       se = I(as.numeric(sqrt(diag(as.matrix(vcov(m)))))),
       z = I(as.numeric(s$coefficients[, 3])), p = I(as.numeric(s$coefficients[, 4])),
       varcorr = list(grp = I(vc$grp), var1 = I(vc$var1), var2 = I(as.character(vc$var2)),
                      vcov = I(vc$vcov), sdcor = I(vc$sdcor)),
       messages = I(as.character(unlist(m@optinfo$conv$lme4$messages))))
}
out <- lapply(fits, function(f) {
  m0 <- glmer(as.formula(f[[3]]), data = f[[4]], family = f[[5]], nAGQ = f[[6]])
  m <- glmer(as.formula(f[[3]]), data = f[[4]], family = f[[5]], nAGQ = f[[6]],
             control = glmerControl(optimizer = c("bobyqa", "bobyqa"), tolPwrss = 1e-10))
  re <- ranef(m, condVar = TRUE)
  ## glmer's deviance function evaluated afresh at its estimates with PIRLS to tolPwrss = 1e-12 (the deviance a fit
  ## reports is that of its optimizer's last state, which can differ from this by ~1e-4)
  devfun <- update(m, devFunOnly = TRUE, control = glmerControl(tolPwrss = 1e-12))
  dev_at <- devfun(c(getME(m, "theta"), fixef(m)))
  modes <- lapply(names(re), function(gn) {
    r <- re[[gn]]
    pv <- attr(r, "postVar")
    sds <- t(apply(pv, 3, function(M) sqrt(diag(M))))
    if (ncol(r) == 1) sds <- matrix(sds, ncol = 1)
    list(group = gn, terms = I(colnames(r)), levels = I(rownames(r)), modes = as.matrix(r), cond_sd = sds)
  })
  c(list(name = f[[1]], data = f[[2]], formula = f[[3]], family = f[[5]]$family, link = f[[5]]$link,
         nAGQ = f[[6]], control = "glmerControl(optimizer = c('bobyqa', 'bobyqa'), tolPwrss = 1e-10)"),
    summarize(m),
    list(deviance_at_estimates = dev_at,
         ranef = modes,
         fitted_link = I(as.numeric(predict(m, type = "link"))),
         fitted_response = I(as.numeric(fitted(m))),
         default = summarize(m0)))
})
write_json(list(models = out, script = "tests/reference/make_glmm.R", versions = versions(c("lme4", "Matrix"))),
           "tests/reference/glmm.json")
