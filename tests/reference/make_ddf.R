# Reference numbers for tests/test_ddf.py: lmerTest's t tests of the fixed effects and its type III anova
# tables, with Satterthwaite's and Kenward-Roger's (pbkrtest) denominator degrees of freedom. Run from the
# repository root:
#   Rscript tests/reference/make_ddf.R
# writes tests/reference/oats.csv (nlme's Oats, Block as a plain factor) and tests/reference/ddf.json.
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
})

source("tests/reference/json_writer.R")  # to_json, write_json, versions

oats <- as.data.frame(nlme::Oats)
oats$Block <- as.character(oats$Block)
oats$Variety <- as.character(oats$Variety)
write.csv(oats[, c("yield", "nitro", "Variety", "Block")], "tests/reference/oats.csv", row.names = FALSE)

coef_rows <- function(tab) {
  lapply(seq_len(nrow(tab)), function(i) list(
    term = rownames(tab)[i], estimate = tab[i, "Estimate"], std_error = tab[i, "Std. Error"],
    df = tab[i, "df"], t_value = tab[i, "t value"], p_value = tab[i, "Pr(>|t|)"]))
}
anova_rows <- function(tab) {
  lapply(seq_len(nrow(tab)), function(i) list(
    term = rownames(tab)[i], sum_sq = tab[i, "Sum Sq"], mean_sq = tab[i, "Mean Sq"], num_df = tab[i, "NumDF"],
    den_df = tab[i, "DenDF"], f_value = tab[i, "F value"], p_value = tab[i, "Pr(>F)"]))
}

case <- function(name, csv, formula, data, reml, factors = character(0), weights = NULL) {
  m <- if (is.null(weights)) {
    lmerTest::lmer(as.formula(formula), data = data, REML = reml)
  } else {
    data$w__ <- data[[weights]]
    lmerTest::lmer(as.formula(formula), data = data, REML = reml, weights = w__)
  }
  out <- list(
    name = name, csv = csv, formula = formula, REML = reml, factors = I(factors), weights = weights,
    theta = I(as.numeric(getME(m, "theta"))), sigma = sigma(m),
    vcov_varpar = m@vcov_varpar,
    jacobian = lapply(m@Jac_list, function(J) J),
    satterthwaite = list(coefficients = coef_rows(summary(m, ddf = "Satterthwaite")$coefficients),
                         anova = anova_rows(anova(m, ddf = "Satterthwaite")))
  )
  if (reml) {
    out$kenward_roger <- list(coefficients = coef_rows(summary(m, ddf = "Kenward-Roger")$coefficients),
                              anova = anova_rows(anova(m, ddf = "Kenward-Roger")),
                              vcov_adjusted = as.matrix(vcovAdj(m)))
  }
  out
}

ss <- read.csv("sample_data/sleepstudy.csv")
cake <- read.csv("sample_data/cake.csv")
cake$temperature <- factor(cake$temperature)
pen <- read.csv("sample_data/penicillin.csv")
ssw <- read.csv("tests/reference/sleepstudy_weighted.csv")

cases <- list(
  case("sleepstudy_reml", "sample_data/sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", ss, TRUE),
  case("sleepstudy_ml", "sample_data/sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", ss, FALSE),
  case("cake_reml", "sample_data/cake.csv", "angle ~ recipe * temperature + (1 | recipe:replicate)", cake, TRUE,
       factors = "temperature"),
  case("oats_reml", "tests/reference/oats.csv", "yield ~ nitro * Variety + (1 | Block/Variety)", oats, TRUE),
  case("penicillin_reml", "sample_data/penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", pen, TRUE),
  case("sleepstudy_quadratic_ml", "sample_data/sleepstudy.csv", "Reaction ~ Days + I(Days^2) + (1 | Subject)", ss,
       FALSE),
  case("cake_numeric_ml", "sample_data/cake.csv", "angle ~ recipe * temp + (1 | recipe:replicate)", cake, FALSE),
  case("weighted_offset_reml", "tests/reference/sleepstudy_weighted.csv",
       "Reaction ~ Days + offset(off) + (1 | Subject)", ssw, TRUE, weights = "w")
)
names(cases) <- vapply(cases, function(x) x$name, "")

write_json(list(script = "tests/reference/make_ddf.R",
                versions = versions(c("lme4", "lmerTest", "pbkrtest", "Matrix", "nlme")),
                cases = cases),
           "tests/reference/ddf.json")
