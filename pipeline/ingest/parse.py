"""Text cells to typed columns, with a reject row for every cell that does not parse.

``parse_table(raw, register, file) -> (typed, rejects)`` is the one parser for
registers and rule tables alike. A row with any problem is left out of
``typed``; each problem is one row of ``rejects`` (file, row, column, value,
reason in Russian).
"""

from __future__ import annotations

import pandera.errors
import polars as pl

from pipeline.ingest import requisites
from pipeline.ingest.readers import FORMULA_CELLS, FORMULA_REASON, ROW
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
    formulas = empty_rejects()
    if FORMULA_CELLS in frame.columns:  # XLSX cells whose formula has no computed value
        formulas = frame.select(ROW, FORMULA_CELLS).drop_nulls(FORMULA_CELLS).explode(FORMULA_CELLS).unnest(
            FORMULA_CELLS).select(pl.lit(file).alias("file"), pl.col(ROW).alias("row"), "column", "value",
                                  pl.lit(FORMULA_REASON).alias("reason"))
        frame = frame.drop(FORMULA_CELLS)
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
    problems.append(_requisite_rejects(typed, register, file))
    problems.append(_needs_rejects(typed, register, file))
    problems.append(duplicate_key_rejects(typed, register, file))
    rejects = pl.concat(problems, how="vertical")
    # A formula cell reads as empty: report the formula, not a second "not filled" for the cell.
    rejects = pl.concat([formulas, rejects.join(formulas, on=["row", "column"], how="anti")])
    bad_rows = rejects["row"].unique()
    good = typed.filter(~pl.col(ROW).is_in(bad_rows.implode()))
    return good, rejects.sort("row", "column")


def parse_keys(raw: pl.DataFrame, register: Register) -> pl.DataFrame:
    """``source_row`` and the register's key columns of a text frame, typed (null where a cell
    does not parse): the key of a row, also of a rejected one."""
    cols = [register.col(k) for k in register.key]
    frame = raw.select(ROW, *[
        (pl.col(c.name) if c.name in raw.columns else pl.lit(None, pl.String)).alias(c.name) for c in cols])
    frame = frame.with_columns(pl.col(c.name).fill_null(c.default) for c in cols if c.default is not None)
    return frame.with_columns(_parse_expr(c).alias(c.name) for c in cols)


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
    # Vectorised (a Python call per failure case made 20 000 bad rows slow).
    cases = cases.filter(pl.col("index").is_not_null())
    cases = cases.with_columns(typed[ROW].gather(cases["index"].cast(pl.Int64)).alias("row"))
    unparsed = pl.concat([
        text.filter(pl.col(c.name).is_not_null() & typed[c.name].is_null()).select(
            pl.col(ROW).alias("row"), pl.lit(c.name).alias("column"))
        for c in register.columns if c.kind in KIND_TEXT
    ] + [pl.DataFrame(schema={"row": pl.Int64, "column": pl.String})])
    value = pl.col("failure_case").cast(pl.String)
    return cases.join(unparsed, on=["row", "column"], how="anti", maintain_order="left").select(
        pl.lit(file).alias("file"),
        pl.col("row").cast(pl.Int64),
        pl.col("column").cast(pl.String),
        pl.when(value != "null").then(value).alias("value"),
        pl.col("check").cast(pl.String).replace(BUILTIN_CHECK_MESSAGES).alias("reason"),
    )


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


def _needs_rejects(typed: pl.DataFrame, register: Register, file: str) -> pl.DataFrame:
    parts = []
    for column, values, needed in register.needs:
        bad = typed.filter(pl.col(column).is_in(list(values)) & pl.col(needed).is_null())
        if bad.height:
            parts.append(_rejects(bad, file, needed, f"не заполнено, а «{register.col(column).title}» — "
                                  + pl.col(column).cast(pl.String)))
    return pl.concat(parts) if parts else empty_rejects()


def _requisite_rejects(typed: pl.DataFrame, register: Register, file: str) -> pl.DataFrame:
    """Rows whose ИНН, КПП, БИК or accounts fail their checks (:mod:`pipeline.ingest.requisites`).

    Per row in Python: only the organizations register has such columns, a few hundred rows.
    """
    checked = [c for c in register.columns if c.check]
    if not checked or not typed.height:
        return empty_rejects()
    rows: list[tuple[int, str, str, str]] = []
    bik = ["bik"] if "bik" in typed.columns else []
    names = list(dict.fromkeys([ROW, *(c.name for c in checked), *bik]))
    for row in typed.select(names).iter_rows(named=True):
        for col in checked:
            value = row[col.name]
            if value is None or not value.strip():
                continue
            if col.check in ("account", "corr_account"):
                reason = requisites.account_problem(value, row.get("bik"), corr=col.check == "corr_account")
            else:
                reason = requisites.CHECKS[col.check](value)  # type: ignore[index]
            if reason:
                rows.append((row[ROW], col.name, value, reason))
    if not rows:
        return empty_rejects()
    return pl.DataFrame(rows, schema={"row": pl.Int64, "column": pl.String, "value": pl.String,
                                      "reason": pl.String}, orient="row").select(
        pl.lit(file).alias("file"), "row", "column", "value", "reason")


def duplicate_key_rejects(typed: pl.DataFrame, register: Register, file: str) -> pl.DataFrame:
    """Every row of ``typed`` (with ``source_row``) whose complete key another row has too."""
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
    # Each reason names the first row only (and the first row a few more), so the report
    # grows linearly: naming every other row made 20 000 equal keys a 2.6 GB report.
    shown = 5
    groups = dup.group_by(key).agg(
        pl.col(ROW).min().alias("_first"),
        pl.col(ROW).sort().head(shown).cast(pl.String).str.join(", ").alias("_rows"),
        pl.len().alias("_count"),
    )
    more = pl.when(pl.col("_count") > shown).then(
        pl.lit(" и ещё ") + (pl.col("_count") - shown).cast(pl.String)).otherwise(pl.lit(""))
    reason = pl.lit("повторяющийся ключ (") + key_text + pl.when(pl.col(ROW) == pl.col("_first")).then(
        pl.lit("): строки ") + pl.col("_rows") + more
    ).otherwise(pl.lit("): такой же ключ в строке ") + pl.col("_first").cast(pl.String))
    marked = dup.join(groups, on=key, how="left", maintain_order="left")
    return _rejects(marked.with_columns(reason.alias("_reason")), file, key[0], pl.col("_reason"))
