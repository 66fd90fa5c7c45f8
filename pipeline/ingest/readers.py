"""Reading register files into all-text frames: CSV (UTF-8 or cp1251, ``;`` or ``,``), XLSX, Parquet.

Every cell arrives as text (or null when empty) with the file's own row number in
``source_row`` (the header is row 1), so that parsing and every message that names
a row happen in one place, whatever the file format.
"""

from __future__ import annotations

import math
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from xml.etree import ElementTree
from xml.sax.saxutils import unescape

import polars as pl

from pipeline.workspace import BillingError

SUFFIXES = (".csv", ".xlsx", ".parquet")
ROW = "source_row"
#: Hidden column of an XLSX frame: per row, the cells (column, formula) whose formula has no
#: computed value; :func:`pipeline.ingest.parse.parse_table` turns them into reject rows.
FORMULA_CELLS = "_formula_cells"
FORMULA_REASON = ("формула без вычисленного значения: откройте файл в Excel и сохраните его, "
                  "чтобы значения пересчитались")


def decode_text(data: bytes, name: str = "файл") -> tuple[str, str]:
    """Decode register bytes: UTF-8 (with or without BOM), else Windows-1251.

    Returns the text and the encoding used. cp1251 decodes any byte string, so
    UTF-8 is tried first; Cyrillic cp1251 text is practically never valid UTF-8.
    A file that is not UTF-8 as a whole but has UTF-8 lines with Cyrillic (two
    files glued together, a line added by another editor) is refused with
    :class:`BillingError` naming ``name`` and the line where the other encoding
    begins: decoding it as cp1251 throughout would garble the UTF-8 lines.

    >>> decode_text("Дом".encode("cp1251"))
    ('Дом', 'cp1251')
    >>> decode_text("\\ufeffДом".encode())
    ('Дом', 'utf-8')
    >>> decode_text("Дом\\n".encode() + "Дом".encode("cp1251"), "a.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    pipeline.errors.BillingError: a.csv: файл в смешанной кодировке: строка 1 в UTF-8, со строки 2 ...
    """
    bom = data.startswith(b"\xef\xbb\xbf")
    body = data[3:] if bom else data
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        _refuse_mixed_encoding(body, name, bom)
        return body.decode("cp1251"), "cp1251"


_ENCODING_TITLES = {"utf-8": "UTF-8", "cp1251": "Windows-1251"}


def _refuse_mixed_encoding(body: bytes, name: str, bom: bool, start: int = 1) -> None:
    """Raise when some non-ASCII lines are valid UTF-8 and others are not (one pass, stops early);
    ``start``: the number of ``body``'s first line in the file."""
    first: dict[str, int] = {"utf-8": start} if bom else {}
    for number, line in enumerate(body.split(b"\n"), start=start):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            first.setdefault("utf-8", number)
        except UnicodeDecodeError:
            first.setdefault("cp1251", number)
        if len(first) == 2:
            break
    if len(first) < 2:
        return
    (one, _), (other, switch) = sorted(first.items(), key=lambda item: item[1])
    lines = f"строка {start}" if switch == start + 1 else f"строки {start}–{switch - 1}"
    raise BillingError(
        f"{name}: файл в смешанной кодировке: {lines} в {_ENCODING_TITLES[one]}, со строки {switch} — "
        f"{_ENCODING_TITLES[other]}; сохраните файл в одной кодировке"
    )


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
    if ROW in frame.columns:  # XLSX numbers its rows as the sheet does
        return frame
    return frame.with_row_index(ROW, offset=2).with_columns(pl.col(ROW).cast(pl.Int64))


def _read_csv(path: Path) -> pl.DataFrame:
    data = path.read_bytes()
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if not body.isascii():  # ASCII is UTF-8 and cp1251 alike: nothing to decide
        text, encoding = decode_text(data, path.name)
        if encoding != "utf-8":
            body = text.encode()
        del text
    if not body or body.isspace():
        raise BillingError(f"{path.name}: файл пуст (нет даже строки заголовка)")
    end = body.find(b"\n")
    header = (body if end < 0 else body[:end]).decode()
    # The UTF-8 bytes, not a text buffer: Polars parses bytes about 4× faster than a StringIO
    # (which it encodes back to bytes first), with the same result.
    frame = pl.read_csv(
        body,
        separator=sniff_separator(header),
        infer_schema=False,
        quote_char='"',
        truncate_ragged_lines=False,
    )
    return _clean_text(frame)


#: Bytes of a CSV file read at a time by :func:`iter_table`.
CHUNK_BYTES = 256 * 1024 * 1024


def iter_table(path: Path, chunk_bytes: int | None = None) -> Iterator[pl.DataFrame]:
    """:func:`read_table` in pieces of about ``chunk_bytes`` of a CSV file, for files larger
    than memory; the rows of every piece are numbered as in the whole file (``source_row``).

    A piece ends at the end of a line outside quotes (a quoted cell may hold a line break).
    The encoding is decided for the whole file as :func:`decode_text` does: UTF-8 when every
    piece is UTF-8, else Windows-1251; a file whose pieces differ (one has UTF-8 Cyrillic,
    another is not UTF-8) is refused naming the line where the other encoding begins. XLSX
    and Parquet come in one piece. ``chunk_bytes``: default :data:`CHUNK_BYTES`.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    if not in_pieces(path, chunk_bytes):
        yield read_table(path)
        return
    with open(path, "rb") as fh:
        yield from _csv_frames(path, _Pieces(fh, chunk_bytes))


def in_pieces(path: Path, chunk_bytes: int | None = None) -> bool:
    """Whether :func:`iter_table` reads ``path`` in more than one piece (a CSV file larger than
    ``chunk_bytes``, default :data:`CHUNK_BYTES`)."""
    if path.suffix.lower() != ".csv":
        return False
    try:
        return path.stat().st_size > (chunk_bytes or CHUNK_BYTES)
    except OSError as exc:
        raise BillingError(f"{path.name}: файл не читается: {exc}") from exc


def _csv_frames(path: Path, pieces: _Pieces) -> Iterator[pl.DataFrame]:
    """:func:`iter_table`'s frames of the CSV file ``path`` read in ``pieces``."""
    separator = ","
    row, line = 2, 1
    seen: dict[str, int] = {}  # encoding -> the first line of a piece in it
    # The first piece is read with its header line; the later ones with the columns it gave
    # (no copy of a piece with the header glued in front of it).
    columns: dict[str, pl.DataType] | None = None
    header: bytes | None = None  # the header line, with its line break
    while (data := pieces.take()) is not None:
        start = 0  # where the piece's rows begin
        if header is None:  # the first piece: the header line and rows
            data = data.removeprefix(b"\xef\xbb\xbf")
            end = data.find(b"\n")
            start = len(data) if end < 0 else end + 1
            if data[:start].isascii():  # an ASCII header: the piece is checked as a whole, same lines
                body = _utf8_piece(data, path.name, line, seen)
                header = (data if end < 0 else data[:end]) + b"\n"
            else:
                head, _, rest = data.partition(b"\n")
                header = _utf8_piece(head, path.name, line, seen) + b"\n"
                body = header + _utf8_piece(rest, path.name, line + 1, seen)
                del rest, head
            separator = sniff_separator(header.decode())
            line += 1
        else:
            body = _utf8_piece(data, path.name, line, seen)
        line += data.count(b"\n", start)
        empty = _BLANK.match(data, start) is not None
        del data
        if empty:
            continue
        with_header = start > 0
        try:
            try:
                if columns is None:
                    frame = pl.read_csv(body if with_header else header + body, separator=separator,
                                        infer_schema=False, quote_char='"', truncate_ragged_lines=False)
                else:
                    frame = pl.read_csv(body, separator=separator, infer_schema=False, quote_char='"',
                                        truncate_ragged_lines=False, has_header=False, schema=columns,
                                        missing_columns="insert")
            except Exception:
                if columns is None:
                    raise
                # A piece that does not fit the first one's columns (a row with more cells):
                # read as the whole file would be, with its header, for the same rows or error.
                frame = pl.read_csv(header + body, separator=separator, infer_schema=False, quote_char='"',
                                    truncate_ragged_lines=False)
        except Exception as exc:
            raise BillingError(f"{path.name}: файл не читается (строки с {row}): {exc}") from exc
        del body  # nothing of the piece's bytes stays while its rows are worked on
        if columns is None:
            columns = dict.fromkeys(frame.columns, pl.String())
        frame = _clean_text(frame).rename({c: c.strip() for c in frame.columns})
        frame = frame.with_row_index(ROW, offset=row).with_columns(pl.col(ROW).cast(pl.Int64))
        row += frame.height
        yield frame


#: Nothing but the whitespace ``bytes.strip`` removes, to the end (matched from a position: no copy).
_BLANK = re.compile(rb"[ \t\n\r\x0b\x0c]*\Z")


def _utf8_piece(data: bytes, name: str, line: int, seen: dict[str, int]) -> bytes:
    """A piece of a CSV file as UTF-8 bytes; ``seen`` keeps the encodings met so far (see
    :func:`iter_table`): a second one refuses the file."""
    if data.isascii():
        return data
    try:
        data.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        _refuse_mixed_encoding(data, name, bom=False, start=line)
        encoding = "cp1251"
    seen.setdefault(encoding, line)
    if len(seen) == 2:
        (one, _), (other, switch) = sorted(seen.items(), key=lambda item: item[1])
        raise BillingError(
            f"{name}: файл в смешанной кодировке: строки до {switch} в {_ENCODING_TITLES[one]}, с части "
            f"файла от строки {switch} — {_ENCODING_TITLES[other]}; сохраните файл в одной кодировке")
    return data if encoding == "utf-8" else data.decode("cp1251").encode()


class _Pieces:
    """The bytes of a file in pieces ending after a line break outside quotes.

    :meth:`take` hands a piece over and keeps no reference to it (a generator would hold
    the piece it yielded while the caller works on its rows: a quarter of a gigabyte more).
    """

    def __init__(self, fh: BinaryIO, chunk_bytes: int) -> None:
        self._fh, self._chunk, self._rest = fh, chunk_bytes, b""

    def take(self) -> bytes | None:
        """The next piece; None at the end of the file."""
        while True:
            block = self._fh.read(self._chunk)
            if not block:
                piece, self._rest = self._rest, b""
                return piece or None
            data = self._rest + block if self._rest else block
            del block
            cut = _last_record_end(data)
            self._rest = data[cut:]
            if cut:
                return data if cut == len(data) else data[:cut]


def _last_record_end(data: bytes) -> int:
    r"""The offset just after the last line break of ``data`` that is outside quotes (0: none).

    An even count of ``"`` before a line break puts it outside quotes (``""`` inside a
    quoted cell counts twice).

    >>> _last_record_end(b'a,b\n1,"x\ny"\n2,'), _last_record_end(b'1,"x\n')
    (12, 0)
    """
    end = data.rfind(b"\n")
    while end >= 0:
        if data.count(b'"', 0, end) % 2 == 0:
            return end + 1
        end = data.rfind(b"\n", 0, end)
    return 0


def _read_xlsx(path: Path) -> pl.DataFrame:
    """The first sheet as text; ``source_row`` is the sheet's row number (blank rows are skipped).

    calamine reads a formula cell's cached value; a formula saved without one (written by
    a script, never opened in Excel) reads as empty, so such cells are found in the sheet
    XML — only when it has formulas at all — and listed in :data:`FORMULA_CELLS`.
    """
    scan = _scan_formulas(path)
    frame = pl.read_excel(path, engine="calamine", infer_schema_length=0,
                          drop_empty_rows=False, drop_empty_cols=False)
    frame = _clean_text(frame.select(_as_text(frame, c) for c in frame.columns))
    columns = frame.columns
    # calamine's range starts at the first row with a value: the header.
    frame = frame.with_row_index(ROW, offset=(scan.header_row if scan else 1) + 1).with_columns(
        pl.col(ROW).cast(pl.Int64))
    keep = ~pl.all_horizontal(pl.col(c).is_null() for c in columns) if columns else pl.lit(True)
    if scan is not None and scan.uncached:
        frame = _mark_formulas(frame, columns, scan, path.name)
        if FORMULA_CELLS in frame.columns:
            keep = keep | pl.col(FORMULA_CELLS).is_not_null()
    frame = frame.filter(keep)
    # As read_excel's drop_empty_cols: a column without a header and without values goes.
    empty = [c for c in columns if _UNNAMED.match(c) and frame[c].null_count() == frame.height]
    return frame.drop(empty)


#: Names read_excel gives columns without a header (and drops when they are empty too).
_UNNAMED = re.compile(r"^(__UNNAMED__\d+|_duplicated_\d+|)$")
_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s>/]")
# Cells of the sheet XML, matched by polars (Rust regex, vectorised) rather than an XML parser.
_NS = r"(?:[A-Za-z_][\w.-]*:)?"
_CELL_XML = r"(?s)<" + _NS + r"c\b[^>]*?(?:/>|>.*?</" + _NS + r"c>)"
_OPEN_TAG = r"^<" + _NS + r"c\b[^>]*?"


@dataclass
class _SheetScan:
    """Where a sheet's values are (calamine's range) and its formulas without a cached value."""

    header_row: int = 0
    last_row: int = 0
    first_col: int = 0
    last_col: int = 0
    uncached: list[tuple[int, int, str]] = field(default_factory=list)  # row, column (1-based), formula


def _scan_formulas(path: Path) -> _SheetScan | None:
    """Scan the first sheet's XML; ``None`` (without parsing it) when it has no formula at all."""
    with zipfile.ZipFile(path) as book:
        try:
            data = book.read(_first_sheet(book))
        except KeyError:  # an unusual layout: calamine reads it, formulas are not looked for
            return None
    if not _FORMULA_TAG.search(data):
        return None
    text = data.decode("utf-8", errors="replace")
    body = text[text.find("<sheetData"):] if "<sheetData" in text else text
    cells = pl.DataFrame({"cell": pl.Series([body]).str.extract_all(_CELL_XML).explode()}).drop_nulls()
    cell = pl.col("cell").str
    cells = cells.select(
        cell.extract(_OPEN_TAG + r'\br="([A-Z]+)\d+"').alias("letters"),
        cell.extract(_OPEN_TAG + r'\br="[A-Z]+(\d+)"').cast(pl.Int64).alias("row"),
        cell.contains(r"<" + _NS + r"[vt](?:\s[^>]*)?>[^<]").alias("value"),  # <v>1</v>, <is><t>x</t>
        cell.contains(r"<" + _NS + r"f\b").alias("formula"),
        cell.extract(r"<" + _NS + r"f\b[^>/]*>([^<]*)<").alias("text"),
        # An empty <v> of a "str" cell is a computed empty text; otherwise nothing was computed.
        (cell.contains(_OPEN_TAG + r'\bt="str"') & cell.contains(r"<" + _NS + r"v(?:\s[^>]*)?(?:/>|></)"))
        .alias("empty_text"),
    )
    no_value = pl.col("formula") & ~pl.col("value") & ~pl.col("empty_text")
    if cells["letters"].null_count() or cells["row"].null_count():
        # A writer that leaves out cell addresses: formulas without a value cannot be placed.
        count = cells.filter(no_value).height
        if count:
            raise BillingError(f"{path.name}: формул без вычисленного значения: {count}; "
                               f"{FORMULA_REASON.split(': ', 1)[1]}")
        return None
    numbers = {letters: _column_number(letters) for letters in cells["letters"].unique()}
    cells = cells.with_columns(pl.col("letters").replace_strict(numbers, return_dtype=pl.Int64).alias("col"))
    scan = _SheetScan()
    values = cells.filter("value")
    if values.height:
        scan.header_row, scan.last_row, scan.first_col, scan.last_col = values.select(
            pl.col("row").min().alias("header_row"), pl.col("row").max().alias("last_row"),
            pl.col("col").min().alias("first_col"), pl.col("col").max().alias("last_col")).row(0)
    scan.uncached = [
        (row, col, unescape(formula or "", {"&quot;": '"', "&apos;": "'"}))
        for row, col, formula in cells.filter(no_value).select("row", "col", "text").iter_rows()
    ]
    return scan


def _mark_formulas(frame: pl.DataFrame, columns: list[str], scan: _SheetScan, name: str) -> pl.DataFrame:
    """Add :data:`FORMULA_CELLS` to the rows of ``frame`` (read without dropping anything)."""
    width = scan.last_col - scan.first_col + 1 if scan.header_row else 0
    placed = frame.height == scan.last_row - scan.header_row and len(columns) == width
    marks: list[tuple[int, str, str | None]] = []
    stray: list[str] = []
    for row, col, formula in scan.uncached:
        position = col - scan.first_col
        if placed and scan.header_row < row <= scan.last_row and 0 <= position < width:
            if not _UNNAMED.match(columns[position]):
                marks.append((row, columns[position].strip(), f"={formula}" if formula else None))
        elif row != scan.header_row:
            stray.append(f"{_column_letters(col)}{row}")
    if stray:
        # Cells outside the read range (a row of formulas only) cannot become a reject row.
        shown = ", ".join(stray[:10]) + (f" и ещё {len(stray) - 10}" if len(stray) > 10 else "")
        raise BillingError(f"{name}: ячейки {shown}: {FORMULA_REASON}")
    if not marks:
        return frame
    issues = pl.DataFrame(marks, schema={ROW: pl.Int64, "column": pl.String, "value": pl.String},
                          orient="row").group_by(ROW).agg(pl.struct("column", "value").alias(FORMULA_CELLS))
    return frame.join(issues, on=ROW, how="left", maintain_order="left")


def _first_sheet(book: zipfile.ZipFile) -> str:
    """The XML part of the workbook's first sheet (the one calamine reads by default)."""
    try:
        workbook = ElementTree.fromstring(book.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(book.read("xl/_rels/workbook.xml.rels"))
        sheet = next(e for e in workbook.iter() if _local(e.tag) == "sheet")
        rel_id = next(v for k, v in sheet.attrib.items() if _local(k) == "id")
        target = next(str(e.get("Target")) for e in rels.iter()
                      if _local(e.tag) == "Relationship" and e.get("Id") == rel_id)
    except (KeyError, StopIteration, ElementTree.ParseError):
        return "xl/worksheets/sheet1.xml"
    return target.lstrip("/") if target.startswith("/") else posixpath.normpath(f"xl/{target}")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _column_number(letters: str) -> int:
    """A column's number from its letters.

    >>> _column_number("A"), _column_number("AB")
    (1, 28)
    """
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def _column_letters(number: int) -> str:
    """A column's letters from its number.

    >>> _column_letters(1), _column_letters(28)
    ('A', 'AB')
    """
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


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


# --------------------------------------------------------------------------- side files' store


def read_store_table(path: Path, schema: pl.Schema) -> pl.DataFrame:
    """A store table in ``schema``: empty when the file is not there yet; a column an older
    file lacks is null (the side-file imports: fiscal receipts, welfare answers)."""
    if not path.is_file():
        return pl.DataFrame(schema=schema)
    frame = pl.read_parquet(path)
    missing = [c for c in schema if c not in frame.columns]
    return frame.with_columns(pl.lit(None, schema[c]).alias(c) for c in missing).select(
        list(schema)).cast(schema)


def header_key(name: str) -> str:
    """A column header as its aliases are looked up: lower case, ё → е, single spaces."""
    return " ".join(name.lower().replace("ё", "е").split())


def match_headers(raw: pl.DataFrame, aliases: dict[str, str], names: dict[str, str],
                  file: str) -> dict[str, str]:
    """Column → the header of ``raw`` naming it, by ``aliases`` (:func:`header_key` of a header →
    column); headers of no alias are left out. Refuses (naming both headers and the column's
    Russian name from ``names``) a file where two headers name one column."""
    found: dict[str, str] = {}
    for name in raw.columns:
        if name in (ROW, FORMULA_CELLS):
            continue
        target = aliases.get(header_key(name))
        if target is None:
            continue
        if target in found:
            raise BillingError(f"{file}: столбцы «{found[target]}» и «{name}» оба означают "
                               f"{names[target]} ({target}) — оставьте один из них")
        found[target] = name
    return found


def file_stamp(path: Path) -> tuple[int, int]:
    """Size and modification time: an import compares them before and after reading a file
    (a file still being written is refused, not half imported)."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns
