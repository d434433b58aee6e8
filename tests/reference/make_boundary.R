# Reference numbers for tests/test_boundary.py: two correlated-slope models of R's own data sets where an
# optimizer can stop at a non-stationary point on the boundary (the intercept's Cholesky diagonal at 0).
# lme4 is fitted with its default optimizer (bobyqa) and with Nelder-Mead; the tests ask mmcli's criterion to
# be no worse than the better of the two. Run from the repository root:
#   Rscript tests/reference/make_boundary.R
# writes tests/reference/loblolly.csv, orange.csv and boundary.json.
suppressPackageStartupMessages(library(lme4))
source("tests/reference/json_writer.R")

lob <- data.frame(height = Loblolly$height, age = Loblolly$age, Seed = as.character(Loblolly$Seed))
ora <- data.frame(circumference = Orange$circumference, age = Orange$age, Tree = as.character(Orange$Tree))
write.csv(lob, "tests/reference/loblolly.csv", row.names = FALSE)
write.csv(ora, "tests/reference/orange.csv", row.names = FALSE)
lob <- read.csv("tests/reference/loblolly.csv", stringsAsFactors = TRUE)
ora <- read.csv("tests/reference/orange.csv", stringsAsFactors = TRUE)

fits <- list(
  list("loblolly.csv", "height ~ age + (age | Seed)", lob, TRUE),
  list("orange.csv", "circumference ~ age + (age | Tree)", ora, FALSE)
)
out <- lapply(fits, function(f) {
  one <- function(opt) {
    m <- suppressWarnings(lmer(as.formula(f[[2]]), data = f[[3]], REML = f[[4]],
                               control = lmerControl(optimizer = opt)))
    list(optimizer = opt,
         criterion = if (f[[4]]) REMLcrit(m) else deviance(m),
         logLik = as.numeric(logLik(m)),
         theta = I(as.numeric(getME(m, "theta"))),
         fixef = I(as.numeric(fixef(m))),
         messages = I(as.character(unlist(m@optinfo$conv$lme4$messages))))
  }
  list(data = f[[1]], formula = f[[2]], REML = f[[4]], fits = list(one("bobyqa"), one("Nelder_Mead")))
})
write_json(list(models = out, script = "tests/reference/make_boundary.R", versions = versions(c("lme4", "Matrix"))),
           "tests/reference/boundary.json")
