"""Text cells to typed columns, with a reject row for every cell that does not parse.

``parse_table(raw, register, file) -> (typed, rejects)`` is the one parser for
registers and rule tables alike. A row with any problem is left out of
``typed``; each problem is one row of ``rejects`` (file, row, column, value,
reason in Russian).
"""

from __future__ import annotations

import pandera.errors
import polars as pl

from pipeline.ingest.readers import ROW
from schemas.registers import BUILTIN_CHECK_MESSAGES, Col, Register, pandera_schema

REJECT_SCHEMA = pl.Schema({
    "file": pl.String,
    "row": pl.Int64,
    "column": pl.String,
    "value": pl.String,
    "reason": pl.String,
})

_TRUE = ["true", "1", "да", "yes", "y", "t", "истина"]
_FALSE = ["false", "0", "нет", "no", "n", "f", "ложь"]

KIND_TEXT = {
    "int": "целое число",
    "decimal": "число",
    "date": "дата ГГГГ-ММ-ДД",
    "datetime": "дата и время ГГГГ-ММ-ДДTЧЧ:ММ",
    "bool": "да/нет (true/false)",
}


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def missing_columns(raw: pl.DataFrame, register: Register) -> list[str]:
    return [c.name for c in register.columns if c.required and c.name not in raw.columns]


def _parse_expr(col: Col) -> pl.Expr:
    raw = pl.col(col.name)
    if col.kind == "int":
        return pl.when(raw.str.contains(r"^[+-]?\d{1,15}$")).then(raw.cast(pl.Int64, strict=False))
    if col.kind == "decimal":
        pattern = r"^[+-]?\d{1,15}$" if col.scale == 0 else rf"^[+-]?\d{{1,15}}([.,]\d{{1,{col.scale}}})?$"
        return pl.when(raw.str.contains(pattern)).then(
            raw.str.replace(",", ".", literal=True).cast(pl.Decimal(18, col.scale), strict=False)
        )
    if col.kind == "date":
        return pl.coalesce(
            raw.str.strptime(pl.Date, "%Y-%m-%d", strict=False, exact=True),
            raw.str.strptime(pl.Date, "%d.%m.%Y", strict=False, exact=True),
        )
    if col.kind == "datetime":
        text = raw.str.replace(" ", "T", literal=True)
        return pl.coalesce(
            text.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M", strict=False, exact=True),
            text.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S", strict=False, exact=True),
        )
    if col.kind == "bool":
        low = raw.str.to_lowercase()
        return pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
    return raw


def parse_table(raw: pl.DataFrame, register: Register, file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse and value-check a text frame against its register.

    Missing optional columns are filled with their default; extra columns are
    kept as text. Returns the good rows (typed, with ``source_row``) and the
    rejects.
    """
    frame = raw
    for col in register.columns:
        if col.name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(col.name))
        if col.default is not None:
            frame = frame.with_columns(pl.col(col.name).fill_null(col.default))
    typed = frame.with_columns(_parse_expr(c).alias(c.name) for c in register.columns)

    problems: list[pl.DataFrame] = []
    for col in register.columns:
        if col.kind in KIND_TEXT:
            bad = frame.filter(pl.col(col.name).is_not_null() & typed[col.name].is_null())
            if bad.height:
                problems.append(
                    _rejects(bad, file, col.name, f"не удалось прочитать как {KIND_TEXT[col.kind]}"
                             + (f" (не больше {col.scale} знаков после запятой)"
                                if col.kind == "decimal" and col.scale else ""))
                )
    problems.append(_pandera_rejects(typed, register, file, frame))
    problems.append(_date_order_rejects(typed, register, file))
    problems.append(_one_of_rejects(typed, register, file))
    problems.append(_duplicate_key_rejects(typed, register, file))
    rejects = pl.concat(problems, how="vertical") if problems else empty_rejects()
    bad_rows = rejects["row"].unique()
    good = typed.filter(~pl.col(ROW).is_in(bad_rows.implode()))
    return good, rejects.sort("row", "column")


def _rejects(rows: pl.DataFrame, file: str, column: str, reason: str | pl.Expr) -> pl.DataFrame:
    value = pl.col(column).cast(pl.String) if column in rows.columns else pl.lit(None, pl.String)
    reason_expr = reason if isinstance(reason, pl.Expr) else pl.lit(reason)
    return rows.select(
        pl.lit(file).alias("file"),
        pl.col(ROW).alias("row"),
        pl.lit(column).alias("column"),
        value.alias("value"),
        reason_expr.cast(pl.String).alias("reason"),
    )


def _pandera_rejects(typed: pl.DataFrame, register: Register, file: str,
                     text: pl.DataFrame) -> pl.DataFrame:
    # Cells that failed to parse were reported above; hide them from the
    # not-null check so each problem is reported once.
    schema = pandera_schema(register)
    try:
        schema.validate(typed, lazy=True)
        return empty_rejects()
    except pandera.errors.SchemaErrors as err:
        cases = err.failure_cases
    rows = typed[ROW]
    cases = cases.filter(pl.col("index").is_not_null()).with_columns(
        pl.col("index").cast(pl.Int64).map_elements(lambda i: rows[i], return_dtype=pl.Int64)
        .alias("row")
    )
    unparsed = {
        (c.name, r)
        for c in register.columns if c.kind in KIND_TEXT
        for r in text.filter(pl.col(c.name).is_not_null() & typed[c.name].is_null())[ROW]
    }
    out = [
        (file, row, column, None if value in (None, "null") else value,
         BUILTIN_CHECK_MESSAGES.get(check, check))
        for row, column, value, check in cases.select("row", "column", "failure_case", "check").rows()
        if (column, row) not in unparsed
    ]
    return pl.DataFrame(out, schema=REJECT_SCHEMA, orient="row")


def _date_order_rejects(typed: pl.DataFrame, register: Register, file: str) -> pl.DataFrame:
    parts = []
    for start, end in register.date_order:
        bad = typed.filter(pl.col(end) < pl.col(start))
        if bad.height:
            parts.append(_rejects(
                bad, file, end,
                f"дата «{register.col(end).title}» раньше даты «{register.col(start).title}»"))
    return pl.concat(parts) if parts else empty_rejects()


def _one_of_rejects(typed: pl.DataFrame, register: Register, file: str) -> pl.DataFrame:
    if not register.one_of:
        return empty_rejects()
    filled = pl.sum_horizontal(pl.col(c).is_not_null().cast(pl.Int8) for c in register.one_of)
    bad = typed.filter(filled != 1)
    names = " или ".join(register.one_of)
    return _rejects(bad, file, register.one_of[0], f"нужно заполнить ровно одно из: {names}")


def _duplicate_key_rejects(typed: pl.DataFrame, register: Register, file: str) -> pl.DataFrame:
    if not register.key:
        return empty_rejects()
    key = list(register.key)
    complete = pl.all_horizontal(pl.col(k).is_not_null() for k in key)
    dup = typed.filter((pl.len().over(key) > 1) & complete)
    if not dup.height:
        return empty_rejects()
    key_text = pl.concat_str(
        [pl.lit(f"{k}=") + pl.col(k).cast(pl.String) for k in key], separator=", "
    )
    rows = pl.col(ROW).cast(pl.String).implode().over(key).list.join(", ")
    reason = pl.lit("повторяющийся ключ (") + key_text + pl.lit("): строки ") + rows
    return _rejects(dup.with_columns(reason.alias("_reason")), file, key[0], pl.col("_reason"))
