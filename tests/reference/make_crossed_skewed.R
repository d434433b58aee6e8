# Reference numbers for tests/test_gradient.py: crossed random intercepts with Zipf-like level frequencies in
# both factors (a few levels of a meet most levels of b), the shape of large crossed designs, small enough for a
# test. lme4's lmer by ML and REML. Run from the repository root:
#   Rscript tests/reference/make_crossed_skewed.R
# writes tests/reference/crossed_skewed.csv and crossed_skewed.json.
suppressPackageStartupMessages(library(lme4))
source("tests/reference/json_writer.R")

set.seed(20261129)
n <- 1500
zipf <- function(k) {
  idx <- c(seq_len(k), sample.int(k, n - k, replace = TRUE, prob = 1 / seq_len(k)))
  sample(idx)
}
a <- zipf(120)
b <- zipf(40)
x <- rnorm(n)
y <- 2 + 0.3 * x + rnorm(120, 0, 0.6)[a] + rnorm(40, 0, 0.4)[b] + rnorm(n)
d <- data.frame(y = y, x = x, a = sprintf("a%03d", a), b = sprintf("b%02d", b))
write.csv(d, "tests/reference/crossed_skewed.csv", row.names = FALSE)
d <- read.csv("tests/reference/crossed_skewed.csv", stringsAsFactors = TRUE)

form <- y ~ x + (1 | a) + (1 | b)
out <- lapply(c(FALSE, TRUE), function(reml) {
  m <- lmer(form, data = d, REML = reml, control = lmerControl(optimizer = "bobyqa"))
  list(REML = reml,
       criterion = if (reml) REMLcrit(m) else deviance(m),
       logLik = as.numeric(logLik(m)),
       theta = I(as.numeric(getME(m, "theta"))),
       fixef = I(as.numeric(fixef(m))),
       sigma = sigma(m))
})
write_json(list(data = "crossed_skewed.csv", formula = "y ~ x + (1 | a) + (1 | b)", fits = out,
                script = "tests/reference/make_crossed_skewed.R", versions = versions(c("lme4", "Matrix"))),
           "tests/reference/crossed_skewed.json")
