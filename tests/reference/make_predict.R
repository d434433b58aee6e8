# Reference numbers for tests/test_predict.py and tests/test_compare.py: lme4's predict.merMod for new data,
# population level (re.form = NA) and conditional (re.form = NULL), with new grouping levels allowed; and
# lme4's anova() of nested fits. Run from the repository root:
#   Rscript tests/reference/make_predict.R
# writes tests/reference/predict_<case>.csv (the new data), predict_<case>.json and compare_<case>.json.
source("tests/reference/make_lmm.R")  # lme4, read_data() and the JSON writer; fits nothing

## The new data of each case: known levels, new levels, values between and beyond the data's.
newdata <- list(
  sleepstudy = data.frame(
    Days = c(0, 0.5, 2.25, 7.75, 12, 3, 4.5, 9),
    Subject = c("308", "308", "309", "372", "372", "999", "new", "335")
  ),
  penicillin = data.frame(
    plate = c("a", "b", "x", "w", "z", "a"),
    sample = c("A", "F", "C", "Z", "Z", "D")
  ),
  pastes = data.frame(
    batch = c("A", "A", "B", "J", "K", "C"),
    cask = c("a", "c", "b", "c", "a", "d")
  ),
  cake = data.frame(
    recipe = c("A", "B", "C", "A", "B", "C"),
    temperature = c("175", "185", "225", "215", "195", "205"),
    replicate = c("1", "7", "15", "16", "3", "99")
  )
)
cases <- list(
  list(name = "sleepstudy", file = "sleepstudy.csv", formula = "Reaction ~ Days + (Days | Subject)", REML = TRUE),
  list(name = "sleepstudy_ml", file = "sleepstudy.csv", nd = "sleepstudy",
       formula = "Reaction ~ Days + (Days | Subject)", REML = FALSE),
  list(name = "sleepstudy_uncorr", file = "sleepstudy.csv", nd = "sleepstudy",
       formula = "Reaction ~ Days + (Days || Subject)", REML = TRUE),
  list(name = "penicillin", file = "penicillin.csv", formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", REML = TRUE),
  list(name = "pastes", file = "pastes.csv", formula = "strength ~ 1 + (1 | batch/cask)", REML = TRUE),
  list(name = "cake", file = "cake.csv", formula = "angle ~ recipe * temperature + (1 | recipe:replicate)",
       REML = FALSE, factor = "temperature")
)

for (cs in cases) {
  d <- read_data(cs$file)
  ndname <- if (is.null(cs$nd)) cs$name else cs$nd
  nd_csv <- newdata[[ndname]]
  csv_path <- sprintf("tests/reference/predict_%s.csv", ndname)
  if (is.null(cs$nd)) {
    write.csv(nd_csv, csv_path, row.names = FALSE)
    cat("wrote", csv_path, "\n")
  }
  ## the new data as R's predict sees them: factors with the fitted data's levels where they exist
  nd <- nd_csv
  for (v in names(nd)) {
    if (is.factor(d[[v]])) nd[[v]] <- factor(nd[[v]], levels = union(levels(d[[v]]), unique(nd[[v]])))
  }
  m <- lmer(as.formula(cs$formula), d, REML = cs$REML)
  pop <- predict(m, newdata = nd, re.form = NA)
  cond <- predict(m, newdata = nd, re.form = NULL, allow.new.levels = TRUE)
  ## population standard errors: sqrt(diag(X vcov X')) with X the fixed-effects model matrix of the new rows
  ndX <- nd
  for (v in names(ndX)) if (is.factor(d[[v]])) ndX[[v]] <- factor(nd_csv[[v]], levels = levels(d[[v]]))
  X <- model.matrix(delete.response(terms(m, fixed.only = TRUE)), ndX)
  se <- sqrt(rowSums((X %*% as.matrix(vcov(m))) * X))
  out <- list(
    case = cs$name,
    dataset = cs$file,
    formula = cs$formula,
    REML = cs$REML,
    factor = cs$factor,
    newdata = basename(csv_path),
    call = sprintf("predict(lmer(%s, REML = %s), newdata, re.form = NA) and (newdata, re.form = NULL, allow.new.levels = TRUE)",
                   cs$formula, cs$REML),
    theta = as.numeric(getME(m, "theta")),
    sigma = sigma(m),
    fixef = as.list(fixef(m)),
    objective = if (cs$REML) REMLcrit(m) else deviance(m),
    population = I(unname(as.numeric(pop))),
    population_se = I(unname(as.numeric(se))),
    conditional = I(unname(as.numeric(cond))),
    script = "tests/reference/make_predict.R",
    versions = versions(c("lme4", "Matrix"))
  )
  write_json(out, sprintf("tests/reference/predict_%s.json", cs$name))
}

## an offset and prior weights (the weighted sleepstudy of make_lmm_weights.R): the offset of the new rows enters
## both predictions, the weights neither
d <- read.csv("tests/reference/sleepstudy_weighted.csv")
d$Subject <- factor(d$Subject)
nd_csv <- data.frame(Days = c(1, 2, 5.5), off = c(0, 10, -3), Subject = c("308", "999", "372"))
write.csv(nd_csv, "tests/reference/predict_offset.csv", row.names = FALSE)
cat("wrote tests/reference/predict_offset.csv\n")
m <- lmer(Reaction ~ Days + offset(off) + (1 | Subject), d, weights = w, REML = TRUE)
X <- model.matrix(~ Days, nd_csv)
write_json(list(
  case = "offset", dataset = "tests/reference/sleepstudy_weighted.csv",
  formula = "Reaction ~ Days + offset(off) + (1 | Subject)", weights = "w", REML = TRUE,
  newdata = "predict_offset.csv",
  call = "predict(lmer(Reaction ~ Days + offset(off) + (1 | Subject), weights = w), newdata, re.form = NA / NULL)",
  theta = I(as.numeric(getME(m, "theta"))), sigma = sigma(m), fixef = as.list(fixef(m)), objective = REMLcrit(m),
  population = I(unname(as.numeric(predict(m, nd_csv, re.form = NA)))),
  population_se = I(unname(sqrt(rowSums((X %*% as.matrix(vcov(m))) * X)))),
  conditional = I(unname(as.numeric(predict(m, nd_csv, allow.new.levels = TRUE)))),
  script = "tests/reference/make_predict.R", versions = versions(c("lme4", "Matrix"))
), "tests/reference/predict_offset.json")

## anova(m1, m2, m3): fitted by REML, so that anova refits them by ML
compare_cases <- list(
  list(name = "sleepstudy", file = "sleepstudy.csv", REML = TRUE,
       formulas = c("Reaction ~ 1 + (1 | Subject)", "Reaction ~ Days + (1 | Subject)",
                    "Reaction ~ Days + (Days | Subject)")),
  ## given out of order (anova sorts by npar), fitted by ML
  list(name = "cake", file = "cake.csv", REML = FALSE,
       formulas = c("angle ~ recipe * temperature + (1 | recipe:replicate)",
                    "angle ~ recipe + temperature + (1 | recipe:replicate)",
                    "angle ~ temperature + (1 | recipe:replicate)"))
)
for (cs in compare_cases) {
  d <- read_data(cs$file)
  m1 <- lmer(as.formula(cs$formulas[1]), d, REML = cs$REML)
  m2 <- lmer(as.formula(cs$formulas[2]), d, REML = cs$REML)
  m3 <- lmer(as.formula(cs$formulas[3]), d, REML = cs$REML)
  printed <- NULL
  a <- withCallingHandlers(anova(m1, m2, m3), message = function(msg) {
    printed <<- c(printed, conditionMessage(msg))
    invokeRestart("muffleMessage")
  })
  rows <- lapply(seq_len(nrow(a)), function(i) {
    list(model = rownames(a)[i], npar = a$npar[i], AIC = a$AIC[i], BIC = a$BIC[i], logLik = a$logLik[i],
         deviance = a$deviance[i], Chisq = a$Chisq[i], Df = a$Df[i], p = a[["Pr(>Chisq)"]][i])
  })
  text <- capture.output(print(a, signif.stars = FALSE))
  out <- list(
    case = cs$name,
    dataset = cs$file,
    REML = cs$REML,
    formulas = I(cs$formulas),
    call = "anova(m1, m2, m3)",
    messages = I(if (is.null(printed)) character(0) else trimws(printed)),
    heading = I(attr(a, "heading")),
    rows = rows,
    printed = I(text),
    script = "tests/reference/make_predict.R",
    versions = versions(c("lme4", "Matrix"))
  )
  write_json(out, sprintf("tests/reference/compare_%s.json", cs$name))
}
