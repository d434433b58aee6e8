"""The table of a GLMM fit, as summary(glmer(...)) prints it."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from mmcli import render


def print_glmm(d: dict[str, Any]) -> None:
    """Header, family, criteria, scaled residuals, random effects, fixed effects with z tests, correlations."""
    how = "Laplace Approximation" if d["nagq"] == 1 else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {d['nagq']}"
    head = Text()
    head.append(f"Generalized linear mixed model fit by maximum likelihood ({how})\n", style="bold")
    head.append(f" Family: {d['family']}  ( {d['link']} )\n")
    head.append(f"Formula: {d['formula']}\n")
    head.append(f"   Data: {d.get('data', '')}")
    stats = render._plain_table("AIC", "BIC", "logLik", "deviance", "df.resid", right=(0, 1, 2, 3, 4))
    f1 = render.fixed
    stats.add_row(f1(d["aic"], 1), f1(d["bic"], 1), f1(d["loglik"], 1), f1(d["deviance"], 1), str(d["df_resid"]))
    out: list[Any] = [head, stats]
    if d.get("scaled_residuals"):
        res = render._plain_table("Min", "1Q", "Median", "3Q", "Max", right=(0, 1, 2, 3, 4))
        res.add_row(*[f1(v, 4) for v in d["scaled_residuals"]])
        out += [Text("\nScaled residuals:", style="bold"), res]
    out += render._random_effects(d)
    fe = d["fixed_effects"]
    if fe:
        dec = render._decimals([x["std_error"] for x in fe])
        ft = render._plain_table("", "Estimate", "Std. Error", "z value", "Pr(>|z|)", right=(1, 2, 3, 4))
        for x in fe:
            ft.add_row(
                x["term"],
                f1(x["estimate"], dec),
                f1(x["std_error"], dec),
                f1(x["z_value"], 3),
                render.p_coef(x["p_value"]),
            )
        out += [Text("\nFixed effects:", style="bold"), ft]
        as_t = [{**x, "t_value": x["z_value"]} for x in fe]  # the correlation table only
        out += render._fixed_effects({"fixed_effects": as_t, "fixed_correlation": d.get("fixed_correlation")})[2:]
    if d.get("singular"):
        out.append(
            Text("boundary (singular) fit: a variance component is estimated as zero (see theta)", style="yellow")
        )
    if not d.get("converged", True):
        out.append(Text(f"The optimizer did not converge: {d['optimizer']['message']}", style="red"))
    render._show(*out)
