"""`scorewatch query` in table mode, as a person sees it on an 80-column terminal (issue 13)."""

from __future__ import annotations

import pytest

from tests.kql.test_cli import cli, workspace  # noqa: F401 - the fixture

LONG = "x" * 150


@pytest.fixture(autouse=True)
def eighty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")


def table(capsys, *args: str) -> list[str]:  # type: ignore[no-untyped-def]
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    return out.splitlines()


def test_a_whole_table_shows_its_usual_columns(workspace, capsys):  # noqa: F811
    lines = table(capsys, "requests | take 10")
    assert lines[0].split() == ["timestamp", "[UTC]", "name", "resultCode", "duration", "operation_Id"]
    assert set(lines[1]) == {"─"}
    assert "2024-05-01 10:07:01.000  POST /score  200" in lines[2] or any(
        line.startswith("2024-05-01 10:07:01.000") for line in lines)
    assert lines[-1] == "9 rows · 5 of 37 columns · --columns all, --wide: whole values"
    assert max(len(line) for line in lines) <= 80


def test_traces_with_input_show_their_usual_columns_and_compact_json(workspace, capsys):  # noqa: F811
    lines = table(capsys, 'traces | where customDimensions contains "input" | limit 10')
    assert lines[0].split() == ["timestamp", "[UTC]", "message", "severityLevel", "customDimensions"]
    row = lines[2]
    assert row.startswith("2024-05-01 10:01:00.000  model_data_collection")
    assert row.endswith('{"Input":"{\\"dat…')  # one compact JSON line, shortened
    assert max(len(line) for line in lines) <= 80
    assert lines[-1] == "1 row · 4 of 31 columns · --columns all, --wide: whole values"


def test_long_values_end_in_an_ellipsis_and_wide_shows_them_whole(workspace, capsys):  # noqa: F811
    lines = table(capsys, f'print s = "{LONG}", d = dynamic({{"a": 1, "b": [1, 2]}})')
    assert lines[2].startswith("xxxx") and lines[2].endswith('x…  {"a":1,"b":[1,2]}') and len(lines[2]) == 80
    assert lines[-1] == "1 row · --wide: whole values"
    wide = table(capsys, f'print s = "{LONG}", d = dynamic({{"a": 1, "b": [1, 2]}})', "--wide")
    assert LONG in wide[2] and len(wide[2]) > 150


def test_bags_show_the_properties_that_differ_first(workspace, capsys):  # noqa: F811
    lines = table(capsys, 'union (print n = 1, d = dynamic({"same": "s", "id": "id-1", "x": 1})), '
                          '(print n = 2, d = dynamic({"same": "s", "id": "id-2", "x": 22})) | order by n asc')
    # the varying ones first, ids (one length, new on every row) after them, the same order on every row
    assert lines[2].split() == ["1", '{"x":1,"id":"id-1","same":"s"}']
    assert lines[3].split() == ["2", '{"x":22,"id":"id-2","same":"s"}']


def test_columns_chooses_and_all_shows_every_column_one_per_line(workspace, capsys):  # noqa: F811
    lines = table(capsys, "requests | where id == 'r3'", "--columns", "id,name")
    assert lines[0].split() == ["id", "name"] and lines[2].split() == ["r3", "POST", "/score"]
    lines = table(capsys, "requests | where id == 'r3'", "--columns", "all")
    assert lines[0].startswith("── row 1 ")
    assert "url                       http://svc1.local/score?x=3" in lines
    assert lines[-1] == "1 row · 37 columns, one per line · --wide: one line per row"
    assert max(len(line) for line in lines) <= 80
    code, _, err = cli(capsys, "requests | take 1", "--columns", "id,nope")
    assert code == 2 and "--columns: the result has no column 'nope'" in err


def test_a_wide_result_shows_the_columns_that_fit(workspace, capsys):  # noqa: F811
    lines = table(capsys, "requests | where id == 'r3' | project-away customMeasurements")
    assert lines[0].split()[:3] == ["timestamp", "[UTC]", "id"]
    assert lines[-1].startswith("1 row · ") and "of 36 columns" in lines[-1]
    assert max(len(line) for line in lines) <= 80


def test_timechart_draws_one_line_per_series(workspace, capsys):  # noqa: F811
    lines = table(capsys, "requests | where timestamp < datetime(2024-05-01 11:00) "
                          "| summarize count() by bin(timestamp, 10m), cloud_RoleName | render timechart")
    assert any("┤" in line for line in lines) and any(line.lstrip().startswith("└") for line in lines)
    legend = next(line for line in lines if "svc0" in line)
    assert "svc1" in legend and "•" in legend and "×" in legend
    assert any("2024-05-01 10:00:00.000" in line for line in lines)
    assert max(len(line) for line in lines) <= 80
    assert lines[-1].endswith(" rows (--columns all for the table, --format csv for the data)")


def test_bar_and_column_charts(workspace, capsys):  # noqa: F811
    bars = table(capsys, "requests | summarize n = count() by resultCode | order by resultCode asc "
                         "| render barchart")
    ok = next(line for line in bars if line.startswith("200"))
    failed = next(line for line in bars if line.startswith("500"))
    assert ok.endswith(" 7") and failed.endswith(" 2")
    assert ok.count("█") > 3 * failed.count("█") > 0
    columns = table(capsys, "requests | summarize n = count() by resultCode | order by resultCode asc "
                            "| render columnchart")
    assert any("█" in line for line in columns)
    assert any(line.split() == ["200", "500"] for line in columns)
    assert max(len(line) for line in bars + columns) <= 80


def test_other_visualizations_show_the_table(workspace, capsys):  # noqa: F811
    lines = table(capsys, "requests | summarize n = count() by success | render piechart")
    assert lines[0].split() == ["success", "n"]


def test_make_series_charts_point_by_point(workspace, capsys):  # noqa: F811
    lines = table(capsys, "requests | make-series n = count() on timestamp from datetime(2024-05-01 09:30) "
                          "to datetime(2024-05-01 11:00) step 10m by success | render timechart")
    assert any(line.startswith("2 ┤") for line in lines) and any(line.startswith("0 ┤") for line in lines)
    legend = next(line for line in lines if "true" in line and "false" in line)
    assert legend.startswith("• ") and "× " in legend  # one series per value of success
    assert any("2024-05-01 09:30:00.000" in line and "2024-05-01 10:50:00.000" in line for line in lines)
    assert max(len(line) for line in lines) <= 80
