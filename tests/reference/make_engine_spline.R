# Reference numbers for tests/test_spline.py: the penalized regression spline of Wood (2006, section 3.2) on
# the engine-wear data (sample_data/engine.csv), with its rk basis, at a fixed lambda, with lambda chosen by
# GCV, and with lambda chosen by REML and ML on the mixed-model form (Wood 2006, section 6.6) fitted by nlme.
# Run from the repository root:
#   Rscript tests/reference/make_engine_spline.R
# writes tests/reference/engine_spline.json. Each number is written with as many significant digits (15 to 17)
# as it takes to read back the same double.
suppressPackageStartupMessages(library(nlme))
source("tests/reference/json_writer.R")  # to_json, write_json, versions

e <- read.csv("sample_data/engine.csv")
size <- e$size
wear <- e$wear
n <- length(wear)
x <- (size - min(size)) / (max(size) - min(size))
xk <- 1:7 / 8                                      # 7 interior knots on the scaled x
q <- length(xk) + 2

## Wood's rk basis and penalty: X = [1, x, R(x, xk_j)], S = [0 0; 0 R(xk_i, xk_j)].
rk <- function(x, z) {
  ((z - 0.5)^2 - 1 / 12) * ((x - 0.5)^2 - 1 / 12) / 4 -
    ((abs(x - z) - 0.5)^4 - (abs(x - z) - 0.5)^2 / 2 + 7 / 240) / 24
}
spl.X <- function(x, xk) {
  X <- matrix(1, length(x), length(xk) + 2)
  X[, 2] <- x
  X[, 3:(length(xk) + 2)] <- outer(x, xk, FUN = rk)
  X
}
spl.S <- function(xk) {
  S <- matrix(0, length(xk) + 2, length(xk) + 2)
  S[3:(length(xk) + 2), 3:(length(xk) + 2)] <- outer(xk, xk, FUN = rk)
  S
}
## The symmetric square root B = U D^1/2 U' (B'B = S).
mat.sqrt <- function(S) {
  d <- eigen(S, symmetric = TRUE)
  d$vectors %*% diag(d$values^0.5) %*% t(d$vectors)
}
## The incorrect square root that the tests keep out: crossprod(U) %*% D^1/2 = D^1/2, not a root of S.
## (Two eigenvalues of S are zero; eigen() returns them as exact zeros here, so the square root is defined.)
wrong.mat.sqrt <- function(S) {
  d <- eigen(S, symmetric = TRUE)
  crossprod(d$vectors) %*% diag(d$values^0.5)
}

X <- spl.X(x, xk)
S <- spl.S(xk)

## The fit at lambda: least squares on the augmented system [X; sqrt(lambda) B] beta ~ [y; 0].
fit_at <- function(lambda, msqrt = mat.sqrt) {
  Xa <- rbind(X, msqrt(S) * sqrt(lambda))
  ya <- c(wear, rep(0, q))
  mod <- lm(ya ~ Xa - 1)
  edf <- sum(influence(mod)$hat[1:n])
  fitted <- as.numeric(fitted(mod)[1:n])
  rss <- sum((wear - fitted)^2)
  list(coef = unname(coef(mod)), fitted = fitted, edf = edf, rss = rss, gcv = n * rss / (n - edf)^2)
}

## 1. lambda = 1e-4, and predictions on the scaled grid 0, 0.01, ..., 1.
lambda <- 1e-4
f4 <- fit_at(lambda)
grid <- 0:100 / 100

## 2. GCV: Wood's grid 1e-8 * 1.5^i (i = 0..59), then optimize() on log(lambda) between the best grid
##    point's neighbours. GCV is flat at its minimum, so lambda is fixed only to about 1e-10 relative.
lam_grid <- 1e-8 * 1.5^(0:59)
gcv_grid <- vapply(lam_grid, function(l) fit_at(l)$gcv, 0)
i <- which.min(gcv_grid)
opt <- optimize(function(r) fit_at(exp(r))$gcv, log(lam_grid[c(i - 1, i + 1)]), tol = 1e-12)
lam_gcv <- exp(opt$minimum)
fg <- fit_at(lam_gcv)

## 3. REML and ML: the mixed-model form. With S = U D U' (eigenvalues decreasing; the last two are the null
##    space), fixed effects X U_F and one random block Z = X U_R D_+^(-1/2) with independent, equal-variance
##    effects (pdIdent): lambda = sigma^2 / sigma_g^2.
ev <- eigen(S, symmetric = TRUE)
pos <- ev$values > max(ev$values) * 1e-10
Xf <- X %*% ev$vectors[, !pos]
Zr <- X %*% ev$vectors[, pos] %*% diag(1 / sqrt(ev$values[pos]))
g <- factor(rep(1, n))
mixed <- function(method) {
  m <- lme(wear ~ Xf - 1, random = list(g = pdIdent(~ Zr - 1)), method = method)
  rel <- pdMatrix(m$modelStruct$reStruct[[1]])[1, 1]    # sigma_g^2 / sigma^2, unrounded
  list(m = m, lambda = 1 / rel)
}
reml <- mixed("REML")
ml <- mixed("ML")
fr <- fit_at(reml$lambda)

## 4. The incorrect square root at lambda = 1e-4, for comparison only.
fw <- fit_at(lambda, wrong.mat.sqrt)

out <- list(
  data = "engine.csv",
  x = "size",
  y = "wear",
  x_scaling = "x = (size - min(size)) / (max(size) - min(size))",
  knots_scaled = I(xk),
  lambda = lambda,
  coef = I(f4$coef),
  fitted = I(f4$fitted),
  edf = f4$edf,
  rss = f4$rss,
  gcv = f4$gcv,
  predict_grid_scaled = I(grid),
  predict = I(as.numeric(spl.X(grid, xk) %*% f4$coef)),
  gcv_choice = list(
    lambda = lam_gcv,
    gcv = fg$gcv,
    edf = fg$edf,
    coef = I(fg$coef),
    grid_best_lambda = lam_grid[i],
    grid_best_gcv = gcv_grid[i]
  ),
  reml_choice = list(
    lambda = reml$lambda,
    sigma = reml$m$sigma,
    edf = fr$edf,
    coef = I(fr$coef),
    fitted_lme = I(as.numeric(fitted(reml$m))),
    REMLlogLik = as.numeric(logLik(reml$m))
  ),
  ml_choice = list(
    lambda = ml$lambda,
    logLik = as.numeric(logLik(ml$m))
  ),
  ## The name is the one tests/test_spline.py reads.
  tutorial_matsqrt_variant = list(
    note = paste("the tutorial's matSqrt returns crossprod(U) %*% sqrt(D) = sqrt(D), not a square root of S;",
                 "its fit at lambda 1e-4 is given for comparison only"),
    coef = I(fw$coef),
    fitted = I(fw$fitted)
  ),
  script = "tests/reference/make_engine_spline.R",
  versions = versions(c("nlme"))
)
write_json(out, "tests/reference/engine_spline.json")
