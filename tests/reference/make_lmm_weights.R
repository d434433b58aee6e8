# Reference numbers for prior weights and offsets in lmer fits. Run from the repository root:
#   Rscript tests/reference/make_lmm_weights.R
# It adds deterministic columns to two data sets of sample_data/ and writes them here, as
#   tests/reference/sleepstudy_weighted.csv   (sleepstudy + w = 1 + (Days %% 3) / 2, off = 2.5 * Days)
#   tests/reference/penicillin_weighted.csv   (penicillin + w = 1 + (as.integer(factor(sample)) %% 4) / 3)
# then reads those files back, fits five models with lmer and writes tests/reference/<name>.json with the fields
# of make_lmm.R and weights, offset, devcomp_cmp, ldW. Numbers, in the CSVs as in the JSONs, are written with
# as many significant digits (15 to 17) as it takes to read back the same double.
source("tests/reference/make_lmm.R")  # lme4, lmm_fields(), read_data() and the JSON writer; fits nothing

script <- "tests/reference/make_lmm_weights.R"

## Write a data frame as CSV: header, no row names, text columns quoted (as in sample_data/), numbers exact.
write_exact_csv <- function(d, path) {
  text_cols <- which(!vapply(d, is.numeric, TRUE))
  for (j in seq_along(d)) if (is.numeric(d[[j]])) d[[j]] <- num(d[[j]])
  write.csv(d, path, row.names = FALSE, quote = text_cols)
  cat("wrote", path, "\n")
}

sleep <- read_data("sleepstudy.csv")
sleep$w <- 1 + (sleep$Days %% 3) / 2
sleep$off <- 2.5 * sleep$Days
pen <- read_data("penicillin.csv")
pen$w <- 1 + (as.integer(factor(pen$sample)) %% 4) / 3
write_exact_csv(sleep, "tests/reference/sleepstudy_weighted.csv")
write_exact_csv(pen, "tests/reference/penicillin_weighted.csv")

## Fit from the files just written, so that the references are exactly what a reader of the CSVs gets.
reread <- function(file, factors) {
  d <- read.csv(file.path("tests/reference", file))
  for (f in factors) d[[f]] <- factor(d[[f]])
  d
}
sleep2 <- reread("sleepstudy_weighted.csv", "Subject")
pen2 <- reread("penicillin_weighted.csv", c("plate", "sample"))
stopifnot(isTRUE(all.equal(sleep2$w, sleep$w, tolerance = 0)), isTRUE(all.equal(pen2$w, pen$w, tolerance = 0)))

models <- list(
  list(name = "sleepstudy_weights_ml", file = "sleepstudy_weighted.csv", data = sleep2, reml = FALSE,
       formula = "Reaction ~ Days + (Days | Subject)", weights = "w"),
  list(name = "sleepstudy_weights_reml", file = "sleepstudy_weighted.csv", data = sleep2, reml = TRUE,
       formula = "Reaction ~ Days + (Days | Subject)", weights = "w"),
  list(name = "sleepstudy_offset_ml", file = "sleepstudy_weighted.csv", data = sleep2, reml = FALSE,
       formula = "Reaction ~ Days + offset(off) + (1 | Subject)", weights = NULL),
  list(name = "sleepstudy_weights_offset_reml", file = "sleepstudy_weighted.csv", data = sleep2, reml = TRUE,
       formula = "Reaction ~ Days + offset(off) + (1 | Subject)", weights = "w"),
  list(name = "penicillin_weights_ml", file = "penicillin_weighted.csv", data = pen2, reml = FALSE,
       formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", weights = "w")
)

for (mod in models) {
  d <- mod$data
  f <- as.formula(mod$formula)
  seconds <- round(system.time(
    m <- if (is.null(mod$weights)) lmer(f, data = d, REML = mod$reml)
         else lmer(f, data = d, REML = mod$reml, weights = d[[mod$weights]])
  )[["elapsed"]], 3)
  ## lme4 keeps sum(log(w)) in its response object (d_ldW in C++), not in devcomp$cmp; from the cmp entries
  ##   ML:   deviance = ldL2 - ldW + n (1 + log(2 pi pwrss / n))
  ##   REML: REMLcrit = ldL2 - ldW + ldRX2 + (n - p) (1 + log(2 pi pwrss / (n - p)))
  cmp <- getME(m, "devcomp")$cmp
  dims <- getME(m, "devcomp")$dims
  ldW <- sum(log(weights(m)))
  nn <- if (mod$reml) dims[["n"]] - dims[["p"]] else dims[["n"]]
  crit <- cmp[["ldL2"]] - ldW + (if (mod$reml) cmp[["ldRX2"]] else 0) +
    nn * (1 + log(2 * pi * cmp[["pwrss"]] / nn))
  lme4_crit <- if (mod$reml) REMLcrit(m) else deviance(m)
  stopifnot(abs(crit - lme4_crit) < 1e-10 * abs(lme4_crit))
  offset_col <- if (grepl("offset(", mod$formula, fixed = TRUE)) sub(".*offset\\(([^)]*)\\).*", "\\1", mod$formula)
  extra <- list(
    weights = mod$weights,
    offset = offset_col,
    devcomp_cmp = as.list(cmp),
    ldW = ldW,
    criterion_from_devcomp = crit
  )
  out <- lmm_fields(m, mod$file, mod$formula, seconds, script, extra)
  write_json(out, sprintf("tests/reference/%s.json", mod$name))
}
