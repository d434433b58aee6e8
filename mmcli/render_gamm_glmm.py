"""The table of a gamm with a family: gamm4's mer part as summary(glmer(...)), then its smooth terms."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from mmcli import render


def print_gamm_glmm(d: dict[str, Any], *, predictions: bool) -> None:
    """summary(fit$mer), the smooth terms (summary.gam's with the scale known: Chi.sq) and the predictions."""
    from mmcli.render_glmm import print_glmm

    print_glmm(d)
    cols = ("term", "basis", "k", "edf", "Ref.df", "Chi.sq", "p-value", "lambda", "variance")
    st = render._plain_table(*cols, right=(2, 3, 4, 5, 6, 7, 8))
    for s in d["smooths"]:
        st.add_row(
            s["term"],
            s["basis"],
            str(s["k"]),
            render.fixed(s["edf"], 3),
            render.fixed(s.get("ref_df"), 3),
            render.sig(s.get("chi_sq")),
            render.p_coef(s.get("p_value")),
            render.sig(s["lambda"]),
            render.sig(s["variance"]),
        )
    parts: list[Any] = [Text("\nSmooth terms (link scale):", style="bold"), st]
    if predictions:
        rows = d.get("predictions") or []
        parts += render._predictions(rows, list(rows[0].keys()) if rows else [])
    render._show(*parts)
