# Reference numbers for tests/test_gamm.py: gamm4 with two smooths, a parametric term and a random intercept
# on simulated data. Run from the repository root:
#   Rscript tests/reference/make_gamm_multi.R
# writes tests/reference/gamm_multi.json (the data themselves included, numbers with 17 significant digits,
# so that the test needs neither R nor R's random number generator).
suppressPackageStartupMessages({
  library(gamm4)
  library(mgcv)
  library(lme4)
})

## The tiny JSON writer of make_mgcv_basis.R: named list -> object, matrix -> array of rows, vector -> array.
num <- function(v) ifelse(is.finite(v), sprintf("%.17g", v), "null")
to_json <- function(x) {
  if (is.null(x)) return("null")
  if (is.list(x)) {
    if (!is.null(names(x))) {
      keys <- names(x)
      return(paste0("{", paste0('"', keys, '": ', vapply(x, to_json, ""), collapse = ", "), "}"))
    }
    return(paste0("[", paste(vapply(x, to_json, ""), collapse = ", "), "]"))
  }
  if (is.matrix(x)) {
    rows <- vapply(seq_len(nrow(x)), function(i) paste0("[", paste(num(x[i, ]), collapse = ", "), "]"), "")
    return(paste0("[", paste(rows, collapse = ", "), "]"))
  }
  if (is.character(x)) {
    s <- paste0('"', x, '"')
    return(if (inherits(x, "AsIs") || length(x) != 1) paste0("[", paste(s, collapse = ", "), "]") else s)
  }
  if (is.logical(x)) return(if (length(x) == 1) tolower(as.character(x)) else stop("logical vector"))
  if (inherits(x, "AsIs") || length(x) != 1) return(paste0("[", paste(num(as.numeric(x)), collapse = ", "), "]"))
  num(as.numeric(x))
}

## Simulated data: 20 groups of 10, a linear x1, a wiggly x2, a gentle bump in x3 (which bs = "cs" may shrink).
set.seed(20240611)
n_g <- 20
per <- 10
n <- n_g * per
g <- sprintf("g%02d", rep(seq_len(n_g), each = per))
x1 <- round(rnorm(n), 6)
x2 <- round(runif(n), 6)
x3 <- round(runif(n), 6)
u <- rnorm(n_g, sd = 0.6)
y <- 1 + 0.5 * x1 + sin(2 * pi * x2) + 0.6 * exp(-((x3 - 0.4) / 0.25)^2) + u[rep(seq_len(n_g), each = per)] +
  rnorm(n, sd = 0.4)
y <- round(y, 6)
d <- data.frame(y = y, x1 = x1, x2 = x2, x3 = x3, g = factor(g))

m <- gamm4(y ~ x1 + s(x2, bs = "cr") + s(x3, bs = "cs"), random = ~ (1 | g), data = d, REML = TRUE)
vc <- as.data.frame(VarCorr(m$mer))

## A prediction grid away from the data rows: x2 and x3 over their range, x1 at a few values.
grid <- data.frame(
  x1 = rep(c(-1.5, 0, 0.7), length.out = 25),
  x2 = seq(0.02, 0.98, length.out = 25),
  x3 = rev(seq(0.01, 0.99, length.out = 25))
)
pr <- predict(m$gam, newdata = grid, se.fit = TRUE)

out <- list(
  generator = "tests/reference/make_gamm_multi.R",
  R_version = R.version.string,
  gamm4_version = as.character(packageVersion("gamm4")),
  mgcv_version = as.character(packageVersion("mgcv")),
  lme4_version = as.character(packageVersion("lme4")),
  formula = "y ~ x1 + s(x2, bs = 'cr') + s(x3, bs = 'cs')",
  random = "~(1 | g)",
  data = list(y = I(d$y), x1 = I(d$x1), x2 = I(d$x2), x3 = I(d$x3), g = I(as.character(d$g))),
  REMLcrit = as.numeric(REMLcrit(m$mer)),
  varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], vcov = vc$vcov[i])),
  theta = I(as.numeric(getME(m$mer, "theta"))),
  theta_names = I(names(getME(m$mer, "theta"))),
  sigma = sigma(m$mer),
  mer_fixef = as.list(fixef(m$mer)),
  gam_coef = as.list(coef(m$gam)),
  gam_edf = list(`s(x2)` = sum(m$gam$edf[m$gam$smooth[[1]]$first.para:m$gam$smooth[[1]]$last.para]),
                 `s(x3)` = sum(m$gam$edf[m$gam$smooth[[2]]$first.para:m$gam$smooth[[2]]$last.para])),
  grid = list(x1 = I(grid$x1), x2 = I(grid$x2), x3 = I(grid$x3)),
  predict = I(as.numeric(pr$fit)),
  predict_se = I(as.numeric(pr$se.fit)),
  fitted_population = I(as.numeric(predict(m$gam))),
  lapack = paste(La_version(), La_library())
)
writeLines(to_json(out), "tests/reference/gamm_multi.json")
cat("wrote tests/reference/gamm_multi.json\n")
