import pytest

from finetune.reports.common import render_report, with_promotion


def test_promotion_section_goes_at_the_end_of_the_body_with_its_numbers():
    report = render_report("SFT <lora>", [("Metrics", "<p>table</p>")])
    decision = {"promote": False, "stage": "production", "metric": "test_rougeL", "candidate": 0.41,
                "baseline": 0.05, "production": 0.40, "production_version": "3", "p_value": 0.2734, "n_items": 30,
                "alpha": 0.05, "reason": "test_rougeL 0.4100 vs production version 3 0.4000 on 30 shared items, "
                "paired student p = 0.273: better but not significant (alpha 0.05)"}
    html = with_promotion(report, decision)
    assert html.index("<p>table</p>") < html.index("<h2>Promotion</h2>") < html.index("</body>")
    assert "not promoted: test_rougeL 0.4100 vs production version 3" in html
    assert ">0.2734<" in html and ">30<" in html  # p-value and number of items in the table
    assert with_promotion(report, None) == report
    with pytest.raises(ValueError, match="no </body>"):
        with_promotion("<p>fragment</p>", decision)
