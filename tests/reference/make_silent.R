# Reference numbers for tests/test_no_silent.py: lme4 fits (ML) where a tool could go wrong without a word:
# a numeric column used both as a fixed effect and as a grouping factor (lme4 keeps it numeric in the fixed
# part), and two terms on one grouping factor (VarCorr names the second 'Subject.1'). Run from the root:
#   Rscript tests/reference/make_silent.R
# writes tests/reference/silent.json.
suppressPackageStartupMessages(library(lme4))
source("tests/reference/json_writer.R")

ss <- read.csv("sample_data/sleepstudy.csv")
ss$Subject <- factor(ss$Subject)

fits <- list(
  list("sample_data/sleepstudy.csv", "Reaction ~ Days + (1 | Days)", ss, function(f, d) {
    d2 <- d; d2$g <- factor(d2$Days)
    lmer(Reaction ~ Days + (1 | g), data = d2, REML = FALSE)  # what lme4 does with (1 | Days): a factor there only
  }),
  list("sample_data/sleepstudy.csv", "Reaction ~ Days + (Days || Subject)", ss, NULL),
  list("sample_data/sleepstudy.csv", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", ss, NULL)
)
out <- lapply(fits, function(f) {
  m <- if (is.null(f[[4]])) lmer(as.formula(f[[2]]), data = f[[3]], REML = FALSE) else f[[4]](f[[2]], f[[3]])
  vc <- as.data.frame(VarCorr(m))
  list(data = f[[1]], formula = f[[2]],
       xnames = I(names(fixef(m))), fixef = I(as.numeric(fixef(m))),
       logLik = as.numeric(logLik(m)), theta = I(as.numeric(getME(m, "theta"))),
       varcorr_groups = I(as.character(vc$grp[is.na(vc$var2)])),
       varcorr_sdcor = I(as.numeric(vc$sdcor[is.na(vc$var2)])))
})
# the direct lmer call with (1 | Days) agrees with the factor copy above
m_direct <- lmer(Reaction ~ Days + (1 | Days), data = ss, REML = FALSE)
stopifnot(abs(as.numeric(logLik(m_direct)) - out[[1]]$logLik) < 1e-8)
write_json(list(fits = out, script = "tests/reference/make_silent.R", versions = versions(c("lme4", "Matrix"))),
           "tests/reference/silent.json")
