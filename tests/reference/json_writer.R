# The JSON writer of the make_*.R scripts in this folder (make_lmm.R, make_lmm_weights.R,
# make_engine_spline.R, make_gamm_sleepstudy.R), sourced from the repository root:
#   source("tests/reference/json_writer.R")

## A small JSON writer (that of make_mgcv_basis.R, indented): named list -> object, unnamed list -> array,
## matrix -> array of rows, vector -> array, length-1 vector -> scalar unless wrapped in I(), NULL/NA -> null.
## Each number gets the fewest significant digits (15, 16 or 17) that read back as the same double.
num <- function(v) {
  v <- as.numeric(v)
  s <- rep("null", length(v))
  ok <- is.finite(v)
  s[ok] <- sprintf("%.15g", v[ok])
  for (d in c(16, 17)) {
    redo <- ok & suppressWarnings(as.numeric(s)) != v
    redo[is.na(redo)] <- FALSE
    s[redo] <- sprintf(paste0("%.", d, "g"), v[redo])
  }
  s
}
str_json <- function(s) ifelse(is.na(s), "null", paste0('"', gsub('"', '\\\\"', s), '"'))
to_json <- function(x, indent = "") {
  inner <- paste0(indent, "  ")
  if (is.null(x)) return("null")
  if (is.list(x)) {
    if (length(x) == 0) return(if (is.null(names(x))) "[]" else "{}")
    parts <- vapply(x, to_json, "", indent = inner)
    if (!is.null(names(x))) parts <- paste0('"', names(x), '": ', parts)
    br <- if (is.null(names(x))) c("[", "]") else c("{", "}")
    return(paste0(br[1], "\n", inner, paste(parts, collapse = paste0(",\n", inner)), "\n", indent, br[2]))
  }
  if (is.matrix(x)) {
    rows <- vapply(seq_len(nrow(x)), function(i) paste0("[", paste(num(x[i, ]), collapse = ", "), "]"), "")
    return(paste0("[\n", inner, paste(rows, collapse = paste0(",\n", inner)), "\n", indent, "]"))
  }
  scalar <- length(x) == 1 && !inherits(x, "AsIs")
  if (is.character(x) || is.factor(x)) {
    s <- str_json(as.character(x))
  } else if (is.logical(x)) {
    s <- ifelse(is.na(x), "null", tolower(as.character(x)))
  } else {
    s <- num(as.numeric(x))
  }
  if (scalar) s else paste0("[", paste(s, collapse = ", "), "]")
}
write_json <- function(x, path) {
  writeLines(to_json(x), path)
  cat("wrote", path, "\n")
}

versions <- function(pkgs) {
  c(list(R = R.version.string),
    setNames(lapply(pkgs, function(p) as.character(packageVersion(p))), pkgs),
    list(BLAS = unname(extSoftVersion()["BLAS"]), LAPACK = paste(La_version(), La_library())))
}
