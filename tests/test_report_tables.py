"""The one Markdown table writer of the reports."""

import pytest

from uniseg.report.tables import markdown_table


def test_a_table_is_its_header_separator_and_rows_with_cells_as_given():
    lines = markdown_table(["model", "kitti", "mean"], [["ce", "50.0", ""], ["crbce", "–", "51.2"]], "lrr")
    assert lines == [
        "| model | kitti | mean |",
        "|---|---:|---:|",
        "| ce | 50.0 |  |",
        "| crbce | – | 51.2 |",
    ]
    assert markdown_table(["a", "b"], [])[1] == "|---|---|", "no alignment: Markdown's default"


def test_a_row_or_alignment_of_the_wrong_width_is_an_error():
    with pytest.raises(ValueError, match="2 cells"):
        markdown_table(["a", "b", "c"], [["1", "2"]])
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], "l")
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], "lc")
