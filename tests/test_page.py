"""The verdict tables as a reader sees them: the zoo page gives, per model, what the single-model
report gives (the statistic, its value with its interval against the rule, the untrained network),
and both say what stood in for the CLS token in a model without one."""
import html
import re

import pytest

from tgo.claims import REGISTRY
from tgo.page import render_html

CLS = {"prefix_tokens": ["cls"], "head_input": None}
GAP = {"prefix_tokens": ["reg_1", "reg_2"], "head_input": "average of the patch tokens"}
STAND_IN = "no class token: the head's input (average of the patch tokens) stands in for CLS"
ABOUT_CLS, OTHER = "tgo1.final_cls_max_erank", "info_geom.alpha_falls"


def record(claim_id, value):
    """A record as tgo.claims.judge writes it, for a model with weights."""
    c = REGISTRY[claim_id]
    return {"id": c.id, "claim": c.text, "statistic": c.statistic, "null": c.null, "rule": c.rule,
            "value": value, "ci": (value - 0.04, value + 0.04), "verdict": "observed", "origin": "training",
            "evidence": "the numbers behind it", "init_value": 0.0125, "init_verdict": "not observed",
            "init_evidence": "", "effect": 0.0875, "effect_ci": (0.05, 0.125),
            "null_words": "the same architecture at random initialisation"}


def cells(page):
    """The table's rows, each a list of its cells' HTML."""
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", page) if "<td" in row]


def zoo_page():
    judged = {m: [record(ABOUT_CLS, value), record(OTHER, value)] for m, value in (("plain", 0.25), ("gap", 0.5))}
    return render_html("zoo", "", [{"title": "Verdicts per model", "zoo_verdicts": judged,
                                    "layouts": {"plain": CLS, "gap": GAP}}], {})


def report_page(layout, value=0.25):
    return render_html("report", "", [{"title": "claims", "verdicts": [record(ABOUT_CLS, value), record(OTHER, value)],
                                       "layout": layout}], {})


def test_zoo_cells_say_what_the_report_says():
    rows = cells(zoo_page())
    assert len(rows) == 2 and all(len(r) == 3 for r in rows)
    for (claim, *models), claim_id in zip(rows, (ABOUT_CLS, OTHER)):
        assert html.escape(REGISTRY[claim_id].statistic) in claim  # what the value is, once per claim
        for cell, value in zip(models, (0.25, 0.5)):
            # The value with its interval against the rule, and the untrained network with the difference,
            # in the words of the single-model report's cells for the same record.
            report = dict(zip((ABOUT_CLS, OTHER), cells(report_page(CLS, value))))[claim_id]
            decided_on = report[2].split(html.escape(REGISTRY[claim_id].statistic) + ": ", 1)[1]
            assert decided_on in cell and f"<b>{value:.3g}</b> [{value - 0.04:.3g}, {value + 0.04:.3g}]" in cell
            assert html.escape(f"observed when {REGISTRY[claim_id].rule}") in cell
            assert report[3] in cell and "trained minus untrained: <b>0.0875</b> [0.05, 0.125]" in cell
            assert "produced by training" in cell


def test_zoo_cells_say_what_stood_in_for_the_cls_token():
    (_, plain_cls, gap_cls), (_, plain_other, gap_other) = cells(zoo_page())
    assert html.escape(STAND_IN) in gap_cls
    assert "stands in" not in plain_cls + plain_other + gap_other


@pytest.mark.parametrize("layout, shown", [(GAP, True), (CLS, False)], ids=["no_class_token", "class_token"])
def test_report_says_what_stood_in_for_the_cls_token(layout, shown):
    (about_cls, *_), (other, *_) = cells(report_page(layout))
    assert (html.escape(STAND_IN) in about_cls) is shown
    assert "stands in" not in other
