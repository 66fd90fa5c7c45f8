"""Reading register files into all-text frames: CSV (UTF-8 or cp1251, ``;`` or ``,``), XLSX, Parquet.

Every cell arrives as text (or null when empty) with the file's own row number in
``source_row`` (the header is row 1), so that parsing and every message that names
a row happen in one place, whatever the file format.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import polars as pl

from pipeline.workspace import BillingError

SUFFIXES = (".csv", ".xlsx", ".parquet")
ROW = "source_row"


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode register bytes: UTF-8 (with or without BOM), else Windows-1251.

    Returns the text and the encoding used. cp1251 decodes any byte string, so
    UTF-8 is tried first; Cyrillic cp1251 text is practically never valid UTF-8.

    >>> decode_text("Дом".encode("cp1251"))
    ('Дом', 'cp1251')
    >>> decode_text("\\ufeffДом".encode())
    ('Дом', 'utf-8')
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1251"), "cp1251"


def sniff_separator(header_line: str) -> str:
    """The field separator of a CSV header: ``;``, TAB or ``,`` (most frequent wins).

    >>> sniff_separator("a;b;c"), sniff_separator("a,b"), sniff_separator("a")
    (';', ',', ',')
    """
    counts = {sep: header_line.count(sep) for sep in (";", "\t", ",")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def read_table(path: Path) -> pl.DataFrame:
    """Read a register file as text columns plus ``source_row``.

    Raises :class:`BillingError` with the file name when the file cannot be read.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = _read_csv(path)
        elif suffix == ".xlsx":
            frame = _read_xlsx(path)
        elif suffix == ".parquet":
            frame = _read_parquet(path)
        else:
            raise BillingError(f"{path.name}: неизвестный формат файла (нужен CSV, XLSX или Parquet)")
    except BillingError:
        raise
    except Exception as exc:  # any parser failure is "unreadable file" for the user
        raise BillingError(f"{path.name}: файл не читается: {exc}") from exc
    frame = frame.rename({c: c.strip() for c in frame.columns})
    return frame.with_row_index(ROW, offset=2).with_columns(pl.col(ROW).cast(pl.Int64))


def _read_csv(path: Path) -> pl.DataFrame:
    text, _ = decode_text(path.read_bytes())
    if not text.strip():
        raise BillingError(f"{path.name}: файл пуст (нет даже строки заголовка)")
    header = text.split("\n", 1)[0]
    frame = pl.read_csv(
        io.StringIO(text),
        separator=sniff_separator(header),
        infer_schema=False,
        quote_char='"',
        truncate_ragged_lines=False,
    )
    return _clean_text(frame)


def _read_xlsx(path: Path) -> pl.DataFrame:
    frame = pl.read_excel(path, engine="calamine", infer_schema_length=0)
    return _clean_text(frame.select(_as_text(frame, c) for c in frame.columns))


def _read_parquet(path: Path) -> pl.DataFrame:
    frame = pl.read_parquet(path)
    return _clean_text(frame.select(_as_text(frame, c) for c in frame.columns))


def _as_text(frame: pl.DataFrame, column: str) -> pl.Expr:
    dtype = frame.schema[column]
    col = pl.col(column)
    if dtype == pl.Date:
        return col.dt.strftime("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime):
        # Excel stores dates as midnight datetimes: keep them dates.
        return (
            pl.when(col.dt.time() == pl.time(0))
            .then(col.dt.strftime("%Y-%m-%d"))
            .otherwise(col.dt.strftime("%Y-%m-%dT%H:%M:%S"))
        )
    if dtype == pl.Boolean:
        return col.cast(pl.String).str.to_lowercase()
    if dtype in (pl.Float32, pl.Float64):
        # A spreadsheet number such as 52.28 is shown by its shortest repr, never 52.2799999.
        return col.map_elements(_float_text, return_dtype=pl.String)
    return col.cast(pl.String)


def _float_text(value: float) -> str:
    # The shortest repr is exact for what a person typed (52.28, not 52.2799…); parsing
    # then applies the column's scale, so no float ever reaches money.
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _clean_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Strip cells; an empty or blank cell is null."""
    return frame.with_columns(
        pl.col(c).cast(pl.String).str.strip_chars().replace("", None) for c in frame.columns
    )
