"""Shared by the report-step tests: gate decisions to pass in, and a reader for the HTML pages they return."""

import pytest


class Page:
    """Reads a report: its table rows (floats as the tables print them), images and the promotion section."""

    def __init__(self, html: str):
        self.html = html

    def has_row(self, *cells: str) -> bool:
        """A table row with exactly these cells; a cell is ``"text"`` or ``Page.num("0.5000")`` (None: ``""``)."""
        return "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>" in self.html

    @staticmethod
    def num(text: str) -> str:
        return f'<td class="num">{text}</td>'

    @property
    def images(self) -> int:
        return self.html.count("data:image/png;base64,")

    @property
    def promotion(self) -> str:
        """The promotion section, which must close the page after every other section."""
        assert self.html.count("<h2>Promotion</h2>") == 1
        section = self.html.split("<h2>Promotion</h2>", 1)[1]
        assert "<h2>" not in section and section.rstrip().endswith("</html>")
        return section


@pytest.fixture
def promoted() -> dict:
    return {"promote": True, "stage": "production", "reason": "no production version yet; test_x 0.7000",
            "metric": "test_x", "candidate": 0.7, "baseline": 0.5, "production": None, "production_version": None,
            "p_value": None, "n_items": None, "alpha": 0.05}


@pytest.fixture
def refused(promoted) -> dict:
    return {**promoted, "promote": False, "candidate": 0.4,
            "reason": "test_x 0.4000 does not beat the baseline 0.5000 by more than 0.0"}


@pytest.fixture
def page():
    """``page(html)`` → a :class:`Page`."""
    return Page
