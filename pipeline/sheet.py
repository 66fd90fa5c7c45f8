"""Large workbooks fast: a frame's sheet XML built by Polars, not cell by cell.

openpyxl writes some 30 000–100 000 cells a second; an export of 1 000 000 accounts has
10 000 000 cells. :func:`frame_xlsx_bytes` writes the same SpreadsheetML (inline strings,
numbers as numbers, dates with a date format) from vectorised string expressions, a chunk
of rows at a time, into a ZIP whose members carry the fixed time ``created`` — so the same
frame gives the same bytes. More rows than a sheet holds continue on the next sheet
(``Реестр (2)``…), each with the header row. openpyxl and Excel read it (the tests read
every export back with openpyxl). The exports, the reports (``billing report``, ``osv``,
``card``) and the query results of ``billing sql`` all write their workbooks through it.
"""

from __future__ import annotations

from datetime import date, datetime
from io import BytesIO
from typing import Any
from xml.sax.saxutils import escape
from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo

import polars as pl

__all__ = ["MAX_SHEET_ROWS", "frame_xlsx_bytes"]

#: Data rows per sheet (a sheet holds 1 048 576 rows; the header takes one).
MAX_SHEET_ROWS = 1_048_575
_CHUNK = 100_000
_EPOCH = date(1899, 12, 30)
#: Characters XML 1.0 does not allow (a register cell may hold them; they are dropped).
_BAD_XML = r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]"

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    '{sheets}'
    '<Override PartName="/docProps/core.xml" '
    'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
    '</Types>')
_SHEET_TYPE = ('<Override PartName="/xl/worksheets/sheet{n}.xml" '
               'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>')
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/>'
    '<Relationship Id="rId2" '
    'Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" '
    'Target="docProps/core.xml"/>'
    '</Relationships>')
_CORE = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    '<dcterms:created xsi:type="dcterms:W3CDTF">{stamp}</dcterms:created>'
    '<dcterms:modified xsi:type="dcterms:W3CDTF">{stamp}</dcterms:modified>'
    '</cp:coreProperties>')
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>{sheets}</sheets>'
    '</workbook>')
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}'
    '<Relationship Id="rIdStyles" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>'
    '</Relationships>')
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="22" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    '</styleSheet>')
_SHEET_HEAD = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
               '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
_SHEET_TAIL = "</sheetData></worksheet>"


def _text(value: pl.Expr) -> pl.Expr:
    return (value.str.replace_all(_BAD_XML, "").str.replace_all("&", "&amp;", literal=True)
            .str.replace_all("<", "&lt;", literal=True).str.replace_all(">", "&gt;", literal=True))


def _nested_text(col: pl.Expr, dtype: Any) -> pl.Expr:  # a DataType or its class (a list's inner)
    """A list (``[a, b]``) or a struct (its JSON) of a query's result as one text cell."""
    if isinstance(dtype, pl.Array):
        col, dtype = col.arr.to_list(), pl.List(dtype.inner)
    if isinstance(dtype, pl.List):
        items = col.list.eval(_nested_text(pl.element(), dtype.inner) if dtype.inner.is_nested()
                              else pl.element().cast(pl.String))
        return pl.concat_str([pl.lit("["), items.list.join(", "), pl.lit("]")])
    return col.struct.json_encode()


def _cell(name: str, dtype: pl.DataType) -> pl.Expr:
    """One cell's XML; no ``r`` reference (cells and rows run in order, an empty one is ``<c/>``:
    a third less XML), ``xml:space="preserve"`` only on a text that begins or ends with a space
    (a query's or a report's text keeps it; register texts come stripped)."""
    col = pl.col(name)
    if dtype == pl.Date:
        value = (col - pl.lit(_EPOCH)).dt.total_days().cast(pl.String)
        xml = pl.concat_str([pl.lit('<c s="1"><v>'), value, pl.lit("</v></c>")])
    elif isinstance(dtype, pl.Datetime):  # a serial day with its fraction, to the second
        seconds = (col.dt.replace_time_zone(None) - pl.lit(datetime(1899, 12, 30))).dt.total_seconds()
        value = (seconds / 86_400).round(10).cast(pl.String)
        xml = pl.concat_str([pl.lit('<c s="2"><v>'), value, pl.lit("</v></c>")])
    elif dtype.is_numeric() or isinstance(dtype, pl.Decimal):
        xml = pl.concat_str([pl.lit("<c><v>"), col.cast(pl.String), pl.lit("</v></c>")])
    elif dtype == pl.Boolean:
        flag = col.cast(pl.Int8).cast(pl.String)
        xml = pl.concat_str([pl.lit('<c t="b"><v>'), flag, pl.lit("</v></c>")])
    else:
        text = _nested_text(col, dtype) if dtype.is_nested() else col.cast(pl.String)
        open_t = pl.when(text.str.contains(r"^\s|\s$")).then(pl.lit('<t xml:space="preserve">')).otherwise(
            pl.lit("<t>"))
        xml = pl.concat_str([pl.lit('<c t="inlineStr"><is>'), open_t, _text(text), pl.lit("</t></is></c>")])
    return xml.fill_null("<c/>")


def _rows_xml(frame: pl.DataFrame) -> bytes:
    """``frame``'s rows as ``<row>`` elements."""
    cells = [_cell(n, t) for n, t in frame.schema.items()]
    xml = frame.select(pl.concat_str([pl.lit("<row>"), *cells, pl.lit("</row>")]).str.join("").alias("x"))
    return str(xml["x"][0] or "").encode()


def frame_xlsx_bytes(frame: pl.DataFrame, created: datetime, sheet: str = "Лист1",
                     titles: dict[str, str] | None = None) -> bytes:
    """``frame`` as a workbook (header row of ``titles``), stamped ``created``; deterministic.

    >>> data = frame_xlsx_bytes(pl.DataFrame({"a": [1], "b": ["<x>"]}), datetime(2026, 8, 31))
    >>> data == frame_xlsx_bytes(pl.DataFrame({"a": [1], "b": ["<x>"]}), datetime(2026, 8, 31))
    True
    """
    header = pl.DataFrame({c: [(titles or {}).get(c, c)] for c in frame.columns},
                          schema=dict.fromkeys(frame.columns, pl.String))
    parts = [frame.slice(i, MAX_SHEET_ROWS) for i in range(0, max(frame.height, 1), MAX_SHEET_ROWS)]
    names = [sheet if n == 1 else f"{sheet} ({n})" for n in range(1, len(parts) + 1)]
    when = (max(created.year, 1980), created.month, created.day, created.hour, created.minute,
            created.second)
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    out = BytesIO()

    def member(name: str) -> ZipInfo:
        info = ZipInfo(name, date_time=when)
        info.compress_type = ZIP_DEFLATED
        info.external_attr = 0o600 << 16
        # The fastest deflate: a sheet of 1 000 000 rows compresses 3× faster, ~15 % larger.
        for attr in ("compress_level", "_compresslevel"):  # the name of Python ≥ 3.13, of 3.11
            if hasattr(info, attr):
                setattr(info, attr, 1)
        return info

    with ZipFile(out, "w", ZIP_DEFLATED) as book:
        sheets = "".join(_SHEET_TYPE.format(n=n) for n in range(1, len(parts) + 1))
        book.writestr(member("[Content_Types].xml"), _CONTENT_TYPES.format(sheets=sheets))
        book.writestr(member("_rels/.rels"), _RELS)
        book.writestr(member("docProps/core.xml"), _CORE.format(stamp=stamp))
        book.writestr(member("xl/workbook.xml"), _WORKBOOK.format(sheets="".join(
            f'<sheet name="{escape(name[:31], {chr(34): "&quot;"})}" sheetId="{n}" r:id="rId{n}"/>'
            for n, name in enumerate(names, start=1))))
        book.writestr(member("xl/_rels/workbook.xml.rels"), _WORKBOOK_RELS.format(rels="".join(
            f'<Relationship Id="rId{n}" '
            f'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
            f'Target="worksheets/sheet{n}.xml"/>' for n in range(1, len(parts) + 1))))
        book.writestr(member("xl/styles.xml"), _STYLES)
        for n, part in enumerate(parts, start=1):
            with book.open(member(f"xl/worksheets/sheet{n}.xml"), "w") as fh:
                fh.write(_SHEET_HEAD.encode())
                fh.write(_rows_xml(header))
                for start in range(0, part.height, _CHUNK):
                    fh.write(_rows_xml(part.slice(start, _CHUNK)))
                fh.write(_SHEET_TAIL.encode())
    return out.getvalue()
