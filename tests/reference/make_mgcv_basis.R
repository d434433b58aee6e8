# Reference numbers for mmcli/smooths.py: mgcv's cr/cs bases, constraint absorption, penalty scaling,
# PredictMat and smooth2random. Run from the repository root:
#   Rscript tests/reference/make_mgcv_basis.R
# writes tests/reference/mgcv_basis.json. Numbers are written with 17 significant digits.
suppressPackageStartupMessages(library(mgcv))

## A tiny JSON writer: named list -> object, matrix -> array of rows, vector -> array, scalar -> value.
## (jsonlite rounds to 15 significant digits; the basis tests run at 1e-10, but exact is better.)
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

sleep <- read.csv("sample_data/sleepstudy.csv")
engine <- read.csv("sample_data/engine.csv")
## An unevenly spaced covariate with ties and a long right tail (no random numbers, so it is exact).
uneven <- c(0.013, 0.05, 0.051, 0.2, 0.21, 0.21, 0.9, 1.7, 1.71, 3.2, 5.5, 8, 8, 13.1, 20, 20, 20)

cases <- list(
  list(name = "sleepstudy_cr10", data = "sleepstudy.csv", var = "Days", x = sleep$Days, bs = "cr", k = 10),
  list(name = "sleepstudy_cs10", data = "sleepstudy.csv", var = "Days", x = sleep$Days, bs = "cs", k = 10),
  list(name = "sleepstudy_cr5", data = "sleepstudy.csv", var = "Days", x = sleep$Days, bs = "cr", k = 5),
  list(name = "engine_cr6", data = "engine.csv", var = "size", x = engine$size, bs = "cr", k = 6),
  list(name = "engine_cs6", data = "engine.csv", var = "size", x = engine$size, bs = "cs", k = 6),
  list(name = "uneven_cr7", data = "(inline)", var = "x", x = uneven, bs = "cr", k = 7),
  list(name = "uneven_cs8", data = "(inline)", var = "x", x = uneven, bs = "cs", k = 8)
)

one_case <- function(cs) {
  dat <- data.frame(cs$x)
  names(dat) <- cs$var
  spec <- eval(substitute(s(v, bs = b, k = kk), list(v = as.name(cs$var), b = cs$bs, kk = cs$k)))
  raw <- smooth.construct(spec, dat, NULL)           # unconstrained, unscaled
  con <- smoothCon(spec, dat, knots = NULL, absorb.cons = TRUE, scale.penalty = TRUE)[[1]]
  k <- cs$k
  qrc <- attr(con, "qrc")
  Z <- qr.Q(qrc, complete = TRUE)[, -1, drop = FALSE]  # the null space of the constraint, as absorbed
  r <- range(cs$x); w <- diff(r)
  newx <- sort(c(r[1] - 0.4 * w, r[1] - 1e-3 * w, raw$xp, (raw$xp[-1] + raw$xp[-k]) / 2,
                 r[1] + 0.123 * w, r[2] + 1e-3 * w, r[2] + 0.35 * w))
  nd <- data.frame(newx); names(nd) <- cs$var
  re <- smooth2random(con, names(dat), type = 2)
  list(
    name = cs$name, data = cs$data, var = cs$var, bs = cs$bs, k = k, label = con$label,
    x = I(cs$x),
    knots = I(as.numeric(raw$xp)),
    F_R = matrix(raw$F, k, k),                        # as mgcv stores it: column-major k x k of the C code
    X_raw = raw$X,
    S_raw = raw$S[[1]],
    C = matrix(colMeans(raw$X), 1, k),
    S_scale = con$S.scale,
    Z = Z,
    X = con$X,
    S = con$S[[1]],
    rank = con$rank, null_space_dim = con$null.space.dim, df = con$df,
    newx = I(newx),
    predict_raw = Predict.matrix(raw, nd),
    predict = PredictMat(con, nd),
    s2r_Xf = re$Xf,
    s2r_Xr = re$rand[[1]],
    s2r_trans_U = re$trans.U,
    s2r_trans_D = I(re$trans.D),
    s2r_eigenvalues = I(eigen(con$S[[1]], symmetric = TRUE)$values)
  )
}

out <- list(
  generator = "tests/reference/make_mgcv_basis.R",
  R_version = R.version.string,
  mgcv_version = as.character(packageVersion("mgcv")),
  lapack = paste(La_version(), La_library()),
  note = paste("F_R is matrix(sm$F, k, k) as mgcv stores it; it is the transpose of F = [0; B^-1 D; 0].",
               "X_raw, S_raw, F_R, predict_raw: smooth.construct (unconstrained, unscaled).",
               "X, S, S_scale, predict: smoothCon(absorb.cons = TRUE, scale.penalty = TRUE) and PredictMat.",
               "s2r_*: smooth2random(type = 2)."),
  cases = lapply(cases, one_case)
)
writeLines(to_json(out), "tests/reference/mgcv_basis.json")
cat("wrote tests/reference/mgcv_basis.json\n")
