"""The streaming workbook writer (pipeline.sheet) with the types reports and queries bring."""

from __future__ import annotations

import io
from datetime import date, datetime
from decimal import Decimal

import polars as pl
from openpyxl import load_workbook

from pipeline.sheet import frame_xlsx_bytes
from pipeline.tables import xlsx_bytes


def test_reports_and_queries_keep_their_types_in_the_workbook() -> None:
    frame = pl.DataFrame({
        "at": [datetime(2026, 8, 31, 14, 5, 9), None],
        "on": [date(2026, 8, 31), date(1999, 1, 1)],
        "sum": [Decimal("1234.56"), Decimal("-0.05")],
        "n": [1, None],
        "ok": [True, False],
        "tags": [["a", "b"], []],
        "pair": [{"x": 1, "y": "а"}, None],
        "text": ["Ёлки & <палки>", "  отступ "],
    }).with_columns(pl.col("sum").cast(pl.Decimal(18, 2)))
    data = xlsx_bytes(frame, datetime(2026, 8, 31), sheet="Запрос", titles={"sum": "Сумма, ₽"})
    assert data == frame_xlsx_bytes(frame, datetime(2026, 8, 31), sheet="Запрос", titles={"sum": "Сумма, ₽"})
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert sheet.title == "Запрос"
    assert rows[0] == ["at", "on", "Сумма, ₽", "n", "ok", "tags", "pair", "text"]
    assert rows[1][0] == datetime(2026, 8, 31, 14, 5, 9) and rows[1][1] == datetime(2026, 8, 31)
    assert [rows[1][2], rows[2][2]] == [1234.56, -0.05]  # numbers stay numbers
    assert rows[1][3:7] == [1, True, "[a, b]", '{"x":1,"y":"а"}'] and rows[2][3:6] == [None, False, "[]"]
    assert rows[1][7] == "Ёлки & <палки>" and rows[2][7] == "  отступ "  # the spaces kept
    assert rows[2][0] is None
    from zipfile import ZipFile

    xml = ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml").decode()
    assert '<t xml:space="preserve">  отступ </t>' in xml and "<t>Ёлки &amp; &lt;палки&gt;</t>" in xml
