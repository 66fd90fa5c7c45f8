"""What a person reads: tables in the terminal, CSV for Russian Excel, a one-sheet workbook.

One printer for every table a command shows (:func:`render_table`): column titles
as given (Russian for the commands' own tables, the query's names for ``billing
sql``), dates ``ДД.ММ.ГГГГ``, decimals the Russian way (``1 234,56``: groups split
by a no-break space, a decimal comma), numbers aligned right, no dtype row and no
"shape:" line.

CSV a person opens in Excel (:func:`excel_csv_bytes`: reports, reject reports):
``;``-separated, UTF-8 with BOM, and a decimal comma, because Russian Excel takes
``1234.56`` for text and will not add it up. Machine formats (bank registers,
Parquet, ``billing sql --format csv``) keep the decimal point.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import polars as pl

NBSP = "\u00a0"


def _ru_date(day: date) -> str:
    return f"{day.day:02d}.{day.month:02d}.{day.year:04d}"


def decimal_text(value: Decimal | int) -> str:
    """A number the Russian way: groups split by a no-break space, comma before the fraction.

    The value's own places are kept (money has two).

    >>> decimal_text(Decimal("1234567.89")), decimal_text(Decimal("-0.05")), decimal_text(12)
    ('1\\xa0234\\xa0567,89', '-0,05', '12')
    """
    text = format(value, "f") if isinstance(value, Decimal) else str(value)
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    grouped = f"{int(whole):,}".replace(",", NBSP)
    return sign + grouped + ("," + fraction if fraction else "")


def cell_text(value: Any) -> str:
    """One cell as a person reads it.

    >>> cell_text(date(2026, 9, 5)), cell_text(Decimal("1234.56")), cell_text(None), cell_text(True)
    ('05.09.2026', '1\\xa0234,56', '', 'да')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "да" if value else "нет"
    if isinstance(value, datetime):
        return f"{_ru_date(value)} {value:%H:%M:%S}"
    if isinstance(value, date):
        return _ru_date(value)
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, float):
        return repr(value).replace(".", ",")
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def _numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric()


def render_table(frame: pl.DataFrame, titles: dict[str, str] | None = None, *,
                 limit: int | None = None, max_width: int | None = None) -> str:
    """``frame`` as an aligned text table: a title row, a rule, one line per row.

    ``titles`` renames columns (others keep their names); ``limit`` shows the first
    rows only and says how many there are in all; ``max_width`` cuts longer cells
    with «…».

    >>> print(render_table(pl.DataFrame({"id": ["p1"], "amount": [Decimal("1234.50")]}),
    ...                    {"id": "Платёж", "amount": "Сумма, ₽"}).replace(NBSP, " "))
    Платёж  Сумма, ₽
    ------  --------
    p1      1 234,50
    """
    titles = titles or {}
    shown = frame.head(limit) if limit is not None else frame
    header = [titles.get(c, c) for c in frame.columns]
    right = [_numeric(t) for t in frame.dtypes]
    rows = []
    for row in shown.iter_rows():
        cells = [cell_text(v) for v in row]
        if max_width is not None:
            cells = [c if len(c) <= max_width else c[:max_width - 1] + "…" for c in cells]
        rows.append(cells)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, right, strict=True)).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    if not frame.height:
        out.append("(строк нет)")
    elif shown.height < frame.height:
        out.append(f"… показаны первые {shown.height} строк из {decimal_text(frame.height)}")
    return "\n".join(out)


def excel_csv_bytes(frame: pl.DataFrame, titles: dict[str, str] | None = None) -> bytes:
    """``frame`` as the CSV Russian Excel opens: ``;``, UTF-8 with BOM, decimal comma.

    Decimal and float columns become text with ``,`` (``1234.56`` → ``1234,56``, no
    grouping, so Excel reads a number); everything else is written as polars writes it.

    >>> excel_csv_bytes(pl.DataFrame({"a": [Decimal("-1234.50")]}).cast({"a": pl.Decimal(18, 2)}),
    ...                 {"a": "Сумма"}).decode("utf-8-sig")
    'Сумма\\n-1234,50\\n'
    """
    decimals = [c for c, t in frame.schema.items() if isinstance(t, pl.Decimal) or t.is_float()]
    text = frame.with_columns(
        pl.col(c).cast(pl.String).str.replace(".", ",", literal=True) for c in decimals)
    renamed = text.rename({c: (titles or {}).get(c, c) for c in frame.columns})
    return b"\xef\xbb\xbf" + renamed.write_csv(separator=";").encode()


def xlsx_bytes(frame: pl.DataFrame, created: datetime, sheet: str = "Лист1",
               titles: dict[str, str] | None = None) -> bytes:
    """``frame`` as a workbook (numbers stay numbers, dates dates), stamped ``created``.

    Written by :func:`pipeline.sheet.frame_xlsx_bytes` (a million rows in seconds, where
    openpyxl took a minute and a half); more rows than a sheet holds go on to a next sheet.
    """
    from pipeline.sheet import frame_xlsx_bytes

    return frame_xlsx_bytes(frame, created, sheet=sheet, titles=titles)
