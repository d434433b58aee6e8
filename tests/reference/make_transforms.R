# Reference numbers for tests/test_formula_transforms.py: lme4 fits (ML) whose fixed and random parts use the
# transforms mmcli evaluates itself (I(), log, sqrt, exp, abs, scale, poly, factor) and Wilkinson's operators,
# plus a data set whose column names need backquotes (a space, a dot, a non-ASCII letter). For each fit: the
# model matrix's column names, the estimates, the log-likelihood and the fixed-effects prediction at new rows
# (predict(re.form = NA): R's makepredictcall keeps poly's and scale's fitted state). Run from the root:
#   Rscript tests/reference/make_transforms.R
# writes tests/reference/transforms.json and tests/reference/awkward_names.csv.
suppressPackageStartupMessages(library(lme4))
source("tests/reference/json_writer.R")
source("tests/reference/make_lmm.R")  # read_data (its models run only when it is the main script)

ss <- read_data("sleepstudy.csv")
awk <- data.frame(check.names = FALSE,
                  `Reaction time` = ss$Reaction, Days.n = ss$Days, `Größe` = (ss$Days - 4.5)^2 / 10,
                  `Subj ID` = paste("S", ss$Subject))
write.csv(awk, "tests/reference/awkward_names.csv", row.names = FALSE, fileEncoding = "UTF-8")
awk <- read.csv("tests/reference/awkward_names.csv", check.names = FALSE, stringsAsFactors = TRUE,
                encoding = "UTF-8")

new_ss <- data.frame(Days = c(0.5, 3, 7.25, 12), Subject = factor("308"))
cake <- read_data("cake.csv")
new_cake <- data.frame(recipe = factor(c("A", "B", "C", "B")), temp = c(170, 200, 230, 212.5),
                       temperature = factor(c("175", "195", "225", "205")))
new_awk <- data.frame(check.names = FALSE, Days.n = c(1, 4.5, 8), `Größe` = c(0.2, 1.1, 0.05))

cases <- list(
  list("sleepstudy.csv", "Reaction ~ poly(Days, 2) + (1 | Subject)", ss, new_ss),
  list("sleepstudy.csv", "Reaction ~ Days + I(Days^2) + (Days | Subject)", ss, new_ss),
  list("sleepstudy.csv", "Reaction ~ log(Days + 1) + sqrt(Days) + (1 | Subject)", ss, new_ss),
  list("sleepstudy.csv", "Reaction ~ scale(Days) + (scale(Days) | Subject)", ss, new_ss),
  list("sleepstudy.csv", "Reaction ~ scale(Days, scale = FALSE) + (1 | Subject)", ss, new_ss),
  list("sleepstudy.csv", "Reaction ~ poly(Days, 3, raw = TRUE) + (1 | Subject)", ss, new_ss),
  list("sleepstudy.csv", "Reaction ~ exp(Days/10) + abs(Days - 4) + I(-Days/2) + (1 | Subject)", ss, new_ss),
  list("cake.csv", "angle ~ recipe * poly(temp, 2) + (1 | recipe:replicate)", cake, new_cake),
  list("cake.csv", "angle ~ recipe:temp + (1 | replicate)", cake, new_cake),
  list("cake.csv", "angle ~ 0 + recipe + temp + (1 | replicate)", cake, new_cake),
  list("cake.csv", "angle ~ recipe/temp + (1 | replicate)", cake, new_cake),
  list("cake.csv", "angle ~ (recipe + temp + I(temp^2))^2 + (1 | replicate)", cake, new_cake),
  list("cake.csv", "angle ~ recipe + factor(temperature) + (1 | replicate)", cake, new_cake),
  list("awkward_names.csv", "`Reaction time` ~ Days.n + `Größe` + (Days.n | `Subj ID`)", awk, new_awk)
)

out <- lapply(cases, function(cs) {
  m <- lmer(as.formula(cs[[2]]), data = cs[[3]], REML = FALSE)
  X <- getME(m, "X")
  list(data = cs[[1]], formula = cs[[2]],
       xnames = I(colnames(X)),
       fixef = I(as.numeric(fixef(m))),
       se = I(as.numeric(sqrt(diag(as.matrix(vcov(m)))))),
       logLik = as.numeric(logLik(m)),
       theta = I(as.numeric(getME(m, "theta"))),
       groups = I(names(getME(m, "flist"))),
       new_rows = cs[[4]],
       prediction = I(as.numeric(predict(m, newdata = cs[[4]], re.form = NA))),
       X_head = X[1:3, , drop = FALSE])
})
write_json(list(fits = out, script = "tests/reference/make_transforms.R", versions = versions(c("lme4", "Matrix"))),
           "tests/reference/transforms.json")
