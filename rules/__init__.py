"""Rules as data: the one place that reads rule tables.

``rules/defaults/`` holds the tables a new workspace starts with (``billing
init`` copies them into ``HOME/rules/``). Every table is dated by ``from``; a
change of law is a new row. Each row carries its legal ``source``.

Where the law is unclear the default is chosen, documented next to the row and
switchable by editing the table; see ``docs/rules.md``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path

import polars as pl

from pipeline.ingest.parse import REJECT_SCHEMA, empty_rejects, missing_columns, parse_table
from pipeline.ingest.readers import decode_text, read_table, sniff_separator
from pipeline.workspace import BillingError
from schemas.registers import Col, Register
from schemas.rules import LEGAL_THRESHOLDS, RULE_TABLES

ELECTRICITY_NORMS_EMPTY = pl.DataFrame(schema={
    "service_id": pl.String, "from": pl.Date, "rooms": pl.Int64, "persons": pl.Int64,
    "stove": pl.String, "norm_micro": pl.Int64, "source": pl.String, "source_row": pl.Int64,
})
LEGAL_THRESHOLDS_EMPTY = pl.DataFrame(schema={
    "threshold": pl.String, "from": pl.Date, "value": pl.Int64, "source": pl.String,
    "source_row": pl.Int64,
})


@dataclass(frozen=True)
class Rules:
    """Parsed rule tables (integers with their scale in the name, never floats).

    Attributes:
        services: service_id, name, unit, kind, penalty_scheme, order.
        tariffs: service_id, supplier_id (null = any supplier), from, price_kop.
        norms: service_id, from, norm_micro (units × 10⁻⁶ per person or per m² a month).
        coefficients: service_id, from, coef_milli (1.5 → 1500); a service without
            rows has no increasing coefficient.
        key_rates: from, rate_bp (percent × 100).
        absence_rules: service_id, from, meter_impossible_only — the services whose
            norm charge is reduced for temporary absence (п.86–97; ТКО п.148(44)).
        quality_rules: service_id, from, month_hours, once_hours, percent_per_hour,
            excess_rule — allowed interruptions and the reduction (Прил. 1).
        failed_meter_rules: service_id, from, coefficient_applies — whether the norm
            after a failed meter's 3 averaged periods carries the coefficient (п.60).
        soi_settlement: from, settle_month, parts, carry_over — the yearly КР на СОИ
            settlement against the building meter (Правила 491 п.29(3)).
        electricity_norms: service_id, from, rooms (1–4), persons (1–5), stove
            (gas|electric; ``any`` rows expanded), norm_micro per person a month, source,
            source_row — the rooms × persons matrix (:func:`load_electricity_norms`).
        legal_thresholds: threshold, from, value, source, source_row — the law's numeric
            thresholds (days of absence, periods of averaging, …), read by :func:`threshold`.
    """

    services: pl.DataFrame
    tariffs: pl.DataFrame
    norms: pl.DataFrame
    coefficients: pl.DataFrame
    key_rates: pl.DataFrame
    absence_rules: pl.DataFrame
    quality_rules: pl.DataFrame
    failed_meter_rules: pl.DataFrame
    soi_settlement: pl.DataFrame = field(default_factory=pl.DataFrame)
    electricity_norms: pl.DataFrame = field(default_factory=lambda: ELECTRICITY_NORMS_EMPTY)
    legal_thresholds: pl.DataFrame = field(default_factory=lambda: LEGAL_THRESHOLDS_EMPTY)


def check_rule_table(rules_dir: Path, name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One rule table's good rows and its problems (file, row, column, value, reason).

    A row with more fields than the header (``48,73`` unquoted in a comma-separated
    file) is found before parsing — the CSV reader would only say the file is broken —
    and named with the column and value it probably split. A missing table (when
    required), an unreadable file or a missing column is one problem row.
    """
    spec = RULE_TABLES[name]
    file = f"{name}.csv"
    path = rules_dir / file
    empty = pl.DataFrame(schema={c.name: c.dtype for c in spec.columns})
    if not path.is_file():
        if spec.required_file:
            return empty, _problem(file, None, None, None,
                                   "нет обязательной таблицы правил (образец — в rules/defaults/)")
        return empty, empty_rejects()
    try:
        ragged = ragged_rows(path, spec)
        if ragged.height:
            return empty, ragged
        raw = read_table(path)
    except BillingError as err:
        return empty, _problem(file, None, None, None, str(err).removeprefix(f"{file}: "))
    missing = missing_columns(raw, spec)
    if missing:
        return empty, _problem(file, 1, ", ".join(missing), None, "нет обязательного столбца в заголовке")
    return parse_table(raw, spec, file)


def _problem(file: str, row: int | None, column: str | None, value: str | None,
             reason: str) -> pl.DataFrame:
    return pl.DataFrame([{"file": file, "row": row, "column": column, "value": value, "reason": reason}],
                        schema=REJECT_SCHEMA)


_DIGITS = re.compile(r"^\s*[+-]?\d+\s*$")


def ragged_rows(path: Path, spec: Register) -> pl.DataFrame:
    """Rows of a CSV with more fields than its header, as problem rows.

    When two neighbouring fields are whole numbers and the first is a decimal column,
    the row is an unquoted decimal comma: the problem names that column and ``48,73``.
    """
    if path.suffix.lower() != ".csv":
        return empty_rejects()
    text, _ = decode_text(path.read_bytes(), path.name)
    separator = sniff_separator(text.split("\n", 1)[0])
    records = list(csv.reader(io.StringIO(text), delimiter=separator, quotechar='"'))
    if not records:
        return empty_rejects()
    header = [h.strip() for h in records[0]]
    decimals = {c.name for c in spec.columns if c.kind == "decimal"}
    problems = []
    # Record numbers as the parser counts them: the header is row 1, a blank line is a row.
    for number, fields in enumerate(records[1:], start=2):
        if len(fields) <= len(header):
            continue
        base = f"больше полей, чем в заголовке ({len(fields)} вместо {len(header)})"
        split = [i for i in range(len(header)) if header[i] in decimals
                 and _DIGITS.match(fields[i]) and _DIGITS.match(fields[i + 1])]
        if len(fields) == len(header) + 1 and len(split) == 1:
            i = split[0]
            value = f"{fields[i].strip()},{fields[i + 1].strip()}"
            problems.append(_problem(
                path.name, number, header[i], value,
                f"{base} — возможно, дробная часть через запятую без кавычек: {value}; напишите "
                f"{value.replace(',', '.')} или \"{value}\" в кавычках"))
        else:
            problems.append(_problem(
                path.name, number, None, separator.join(fields),
                f"{base}: лишний разделитель «{separator}» или значение с ним без кавычек"))
    return pl.concat(problems) if problems else empty_rejects()


_SHOWN = 20


def problem_lines(rejects: pl.DataFrame) -> list[str]:
    """Reject rows as Russian lines naming file, row, column and value (the first 20)."""
    lines = []
    for r in rejects.head(_SHOWN).iter_rows(named=True):
        where = r["file"] + (f", строка {r['row']}" if r["row"] is not None else "")
        if r["column"] is not None:
            where += f", столбец {r['column']}" + (f" = «{r['value']}»" if r["value"] is not None else "")
        elif r["value"] is not None:
            where += f" («{r['value']}»)"
        lines.append(f"  {where}: {r['reason']}")
    if rejects.height > _SHOWN:
        lines.append(f"  … и ещё {rejects.height - _SHOWN}")
    return lines


def rule_errors_message(rejects: pl.DataFrame) -> str:
    """The message a bad rule table stops a command with (ingest and close alike)."""
    return ("Ошибки в таблицах правил (rules/):\n" + "\n".join(problem_lines(rejects))
            + "\nИсправьте таблицу и повторите команду.")


def read_rule_table(rules_dir: Path, name: str) -> pl.DataFrame:
    """Read and check one rule table; any bad row stops with a message naming it."""
    good, rejects = check_rule_table(rules_dir, name)
    if rejects.height:
        raise BillingError(rule_errors_message(rejects))
    return good


@dataclass(frozen=True)
class RuleCheck:
    """Every rule table checked (``billing ingest``): the problems and the warnings.

    Attributes:
        rejects: problem rows (file, row, column, value, reason); any refuses the ingest.
        warnings: Russian lines; services named by rule tables but absent from
            ``services.csv`` (their rows are not used — a utility may narrow services).
    """

    rejects: pl.DataFrame
    warnings: tuple[str, ...]


def check_rules(rules_dir: Path) -> RuleCheck:
    """Parse every rule table of :data:`RULE_TABLES`, collecting problems instead of stopping."""
    tables: dict[str, pl.DataFrame] = {}
    problems: dict[str, pl.DataFrame] = {}
    for name in RULE_TABLES:
        tables[name], problems[name] = check_rule_table(rules_dir, name)
    if not problems["services"].height:  # services.csv read: its own references can be checked
        problems["settled_by"] = settled_by_rejects(tables["services"])
    if not problems["legal_thresholds"].height:
        problems["thresholds_missing"] = missing_thresholds_rejects(tables["legal_thresholds"])
    warning = unknown_services_warning(tables)
    return RuleCheck(pl.concat([empty_rejects(), *problems.values()]), (warning,) if warning else ())


def unknown_services_warning(tables: dict[str, pl.DataFrame]) -> str | None:
    """A warning naming, per rule table, the services that ``services.csv`` lacks."""
    known = set(tables["services"]["service_id"])
    if not known:
        return None
    parts = []
    for name, table in tables.items():
        if name == "services" or "service_id" not in table.columns:
            continue
        unknown = sorted(set(table["service_id"].drop_nulls()) - known)
        if unknown:
            parts.append(f"{name}.csv — {', '.join(unknown)}")
    if not parts:
        return None
    return ("Предупреждение: в таблицах правил есть услуги, которых нет в services.csv; их строки не "
            "используются: " + "; ".join(parts))


def settled_by_rejects(services: pl.DataFrame) -> pl.DataFrame:
    """``settled_by`` must name a metered service of ``services.csv`` (the resource of a КР на СОИ)."""
    metered = services.filter(pl.col("kind") == "metered")["service_id"]
    wrong = services.filter(pl.col("settled_by").is_not_null()
                            & ~pl.col("settled_by").is_in(metered.implode()))
    return wrong.select(
        pl.lit("services.csv").alias("file"), pl.col("source_row").alias("row"),
        pl.lit("settled_by").alias("column"), pl.col("settled_by").alias("value"),
        pl.lit("нужен код услуги-ресурса с прибором учёта (kind = metered) из services.csv")
        .alias("reason")).cast(REJECT_SCHEMA)


def missing_thresholds_rejects(table: pl.DataFrame) -> pl.DataFrame:
    """A problem row per threshold of :data:`LEGAL_THRESHOLDS` without any row in ``table``."""
    missing = [name for name in LEGAL_THRESHOLDS if name not in set(table["threshold"])]
    return pl.concat([empty_rejects(), *(
        _problem("legal_thresholds.csv", None, "threshold", name,
                 "нет ни одной строки этого порога (образец — в rules/defaults/legal_thresholds.csv)")
        for name in missing)])


def threshold(table: pl.DataFrame, name: str, on: date) -> int:
    """The value of the legal threshold ``name`` in force on ``on`` (``legal_thresholds.csv``).

    The row of ``name`` with the latest ``from`` not after ``on``; none in force is a
    :class:`BillingError` naming the threshold and the day (a law is never guessed).
    """
    if name not in LEGAL_THRESHOLDS:  # a typo in the code, not in the table
        raise ValueError(f"unknown legal threshold {name!r}: add it to schemas.rules.LEGAL_THRESHOLDS")
    if not {"threshold", "from", "value"} <= set(table.columns):
        table = LEGAL_THRESHOLDS_EMPTY
    rows = table.filter((pl.col("threshold") == name) & (pl.col("from") <= on))
    if not rows.height:
        first = table.filter(pl.col("threshold") == name)["from"].min()
        since = f" (первая строка — с {first:%d.%m.%Y})" if isinstance(first, date) else ""
        raise BillingError(
            f"legal_thresholds.csv: нет строки порога «{name}», действующей на {on:%d.%m.%Y}{since}. "
            "Добавьте строку с датой from не позже этого дня и основанием (образец — в "
            "rules/defaults/legal_thresholds.csv).")
    return int(rows.sort("from")["value"][-1])


@cache
def default_thresholds() -> pl.DataFrame:
    """``legal_thresholds.csv`` of ``rules/defaults/`` (tests and tools without a workspace).

    The engine never falls back to it: a close, recalculation or explanation passes the
    workspace's table (``Rules.legal_thresholds``).
    """
    return read_rule_table(Path(__file__).resolve().parent / "defaults", "legal_thresholds")


def load_rules(rules_dir: Path) -> Rules:
    services = read_rule_table(rules_dir, "services")
    tariffs = read_rule_table(rules_dir, "tariffs").select(
        "service_id", "supplier_id", "from",
        (pl.col("price") * 100).cast(pl.Int64).alias("price_kop"), "source", "source_row",
    )
    norms = read_rule_table(rules_dir, "norms").select(
        "service_id", "from", (pl.col("value") * 1_000_000).cast(pl.Int64).alias("norm_micro"),
        "source", "source_row",
    )
    coefficients = read_rule_table(rules_dir, "increasing_coefficients").select(
        "service_id", "from", (pl.col("value") * 1000).cast(pl.Int64).alias("coef_milli"),
        "source", "source_row",
    )
    key_rates = read_rule_table(rules_dir, "key_rates").select(
        "from", (pl.col("rate") * 100).cast(pl.Int64).alias("rate_bp"), "confidence",
    )
    absence_rules = read_rule_table(rules_dir, "absence_rules").select(
        "service_id", "from", "meter_impossible_only")
    # Rows of services absent from services.csv are not used (billing ingest warns of them):
    # a water utility keeps the default tables and narrows services.csv.
    known = set(services["service_id"])
    wrong = settled_by_rejects(services)
    if wrong.height:
        raise BillingError(rule_errors_message(wrong))
    quality_rules = read_rule_table(rules_dir, "quality_rules")
    failed_meter_rules = read_rule_table(rules_dir, "failed_meter_rules").select(
        "service_id", "from", "coefficient_applies")
    soi_settlement = read_rule_table(rules_dir, "soi_settlement").drop("source_row", strict=False)
    electricity_norms = load_electricity_norms(rules_dir, known, norms)
    legal_thresholds = read_rule_table(rules_dir, "legal_thresholds")
    missing = missing_thresholds_rejects(legal_thresholds)
    if missing.height:
        raise BillingError(rule_errors_message(missing))
    return Rules(services, tariffs, norms, coefficients, key_rates, absence_rules, quality_rules,
                 failed_meter_rules, soi_settlement, electricity_norms, legal_thresholds)


#: Every cell a dated electricity norm matrix must fill (rooms 4 = «4 и более», persons 5 = «5 и более»).
MATRIX_ROOMS, MATRIX_PERSONS, MATRIX_STOVES = range(1, 5), range(1, 6), ("gas", "electric")


def load_electricity_norms(rules_dir: Path, known: set[str], norms: pl.DataFrame) -> pl.DataFrame:
    """``electricity_norms.csv``: the norm per person by rooms × persons × stove, checked whole.

    A ``stove = any`` row stands for both stoves unless a ``gas``/``electric`` row of the
    same cell and date is given (that one wins). From each date a service's rows start
    on, every cell must resolve (to its own row or an earlier one): a flat never falls
    into a hole of the matrix. The service must also have a per-person norm in
    ``norms.csv``: premises whose number of rooms is not known are charged by it.
    """
    # Rows of services absent from services.csv are not used (billing ingest warns of them).
    table = read_rule_table(rules_dir, "electricity_norms").filter(
        pl.col("service_id").is_in(sorted(known)))
    if not table.height:
        return ELECTRICITY_NORMS_EMPTY
    no_norm = sorted(set(table["service_id"]) - set(norms["service_id"]))
    if no_norm:
        raise BillingError(f"electricity_norms.csv: для услуг {', '.join(no_norm)} нет норматива на "
                           "человека в norms.csv — он нужен для помещений без числа комнат")
    stoves = pl.DataFrame({"stove": list(MATRIX_STOVES), "_any": [False, False]})
    rows = pl.concat([
        table.filter(pl.col("stove") != "any").with_columns(pl.lit(False).alias("_any")),
        table.filter(pl.col("stove") == "any").drop("stove").join(stoves.drop("_any"), how="cross")
        .with_columns(pl.lit(True).alias("_any")),
    ], how="diagonal_relaxed").sort("_any").unique(
        ["service_id", "from", "rooms", "persons", "stove"], keep="first", maintain_order=True)
    cells = pl.DataFrame({"rooms": list(MATRIX_ROOMS)}).join(
        pl.DataFrame({"persons": list(MATRIX_PERSONS)}), how="cross").join(stoves.drop("_any"),
                                                                            how="cross")
    versions = rows.select("service_id", pl.col("from").alias("version")).unique()
    filled = versions.join(cells, how="cross").join(
        rows.select("service_id", "from", "rooms", "persons", "stove"),
        on=["service_id", "rooms", "persons", "stove"]).filter(pl.col("from") <= pl.col("version"))
    holes = versions.join(cells, how="cross").join(
        filled, on=["service_id", "version", "rooms", "persons", "stove"], how="anti").sort(
        "service_id", "version", "rooms", "persons", "stove")
    if holes.height:
        lines = [f"  услуга {h['service_id']} с {h['version']}: {h['rooms']} комн., {h['persons']} чел., "
                 f"плита {h['stove']}" for h in holes.head(10).iter_rows(named=True)]
        more = f"\n  … и ещё {holes.height - 10}" if holes.height > 10 else ""
        raise BillingError(
            "electricity_norms.csv: не заполнены ячейки норматива (нужны комнат 1–4, человек 1–5, "
            "плита gas и electric или any):\n" + "\n".join(lines) + more)
    return rows.select(
        "service_id", "from", "rooms", "persons", "stove",
        (pl.col("value") * 1_000_000).cast(pl.Int64).alias("norm_micro"), "source", "source_row",
    ).sort("service_id", "from", "rooms", "persons", "stove")


# --------------------------------------------------------------------------- social welfare

#: How a category's share of a charge is counted: the beneficiaries' own share of the
#: household (charge × entitled / registered) or the whole household's charge.
WELFARE_SCOPES = ("person", "household")
#: ``service_id`` of a row that stands for every service without a row of its own.
WELFARE_ANY_SERVICE = "*"
WELFARE_FILE = "welfare_categories.csv"

#: ``rules/welfare_categories.csv``: the social support categories and their rules, dated
#: (law.md §8.1). Optional: without the file no category is known. Not in ``RULE_TABLES``
#: (read by its own loader, like ``vat_rates.csv``), so ``billing ingest`` does not check it;
#: the welfare export and import do, all or nothing.
WELFARE_CATEGORIES = Register(
    "welfare_categories",
    "Категории мер социальной поддержки",
    (
        Col("category", "id", "код категории (как в benefits.category)"),
        Col("service_id", "id", "услуга (* — все услуги без своей строки)"),
        Col("from", "date", "действует с"),
        Col("to", "date", "действует по", required=False, nullable=True),
        Col("title", "text", "наименование категории", required=False, nullable=True),
        Col("percent", "decimal", "размер компенсации, %", scale=2, ge=0, le=100),
        Col("scope", "enum", "на кого (person — доля льготника, household — вся семья)",
            choices=WELFARE_SCOPES, required=False, default="person"),
        Col("area_1", "decimal", "норма площади одиноко проживающему, м²", scale=2, ge=0, le=10_000,
            required=False, nullable=True),
        Col("area_2", "decimal", "норма площади на семью из двух, м²", scale=2, ge=0, le=10_000,
            required=False, nullable=True),
        Col("area_per_person", "decimal", "норма площади на человека при 3 и более, м²", scale=2,
            ge=0, le=10_000, required=False, nullable=True),
        Col("within_norm", "bool", "объём — не выше норматива потребления", required=False,
            default="true"),
        Col("source", "text", "основание", required=False, nullable=True),
        Col("confidence", "text", "достоверность", required=False, nullable=True),
    ),
    key=("category", "service_id", "from"),
    date_order=(("from", "to"),),
)

WELFARE_CATEGORIES_EMPTY = pl.DataFrame(schema={
    "category": pl.String, "service_id": pl.String, "from": pl.Date, "to": pl.Date,
    "title": pl.String, "percent_bp": pl.Int64, "scope": pl.String, "area_1_centi": pl.Int64,
    "area_2_centi": pl.Int64, "area_per_person_centi": pl.Int64, "within_norm": pl.Boolean,
    "source": pl.String, "confidence": pl.String, "source_row": pl.Int64,
})


def welfare_categories(rules_dir: Path) -> pl.DataFrame:
    """``welfare_categories.csv`` of ``rules_dir``, checked whole (one bad row stops).

    Columns: category, service_id (``*`` = any service without its own row), from, to,
    title, percent_bp (percent × 100), scope (person|household), area_1_centi,
    area_2_centi, area_per_person_centi (the social norm of area by household size, m² ×
    100; null = no area norm), within_norm (volume capped at the consumption norm), source,
    confidence, source_row. A missing file is an empty table (no category known).
    """
    path = rules_dir / WELFARE_FILE
    if not path.is_file():
        return WELFARE_CATEGORIES_EMPTY
    spec = WELFARE_CATEGORIES
    try:
        ragged = ragged_rows(path, spec)
        raw = read_table(path) if not ragged.height else None
    except BillingError as err:
        raise BillingError(rule_errors_message(
            _problem(WELFARE_FILE, None, None, None, str(err).removeprefix(f"{WELFARE_FILE}: ")))) from None
    if raw is None:
        raise BillingError(rule_errors_message(ragged))
    missing = missing_columns(raw, spec)
    if missing:
        raise BillingError(rule_errors_message(_problem(
            WELFARE_FILE, 1, ", ".join(missing), None, "нет обязательного столбца в заголовке")))
    good, rejects = parse_table(raw, spec, WELFARE_FILE)
    wrong = good.filter(pl.col("to").is_not_null() & (pl.col("to") < pl.col("from")))
    rejects = pl.concat([rejects, wrong.select(
        pl.lit(WELFARE_FILE).alias("file"), pl.col("source_row").alias("row"), pl.lit("to").alias("column"),
        pl.col("to").cast(pl.String).alias("value"),
        pl.lit("дата окончания раньше даты начала").alias("reason")).cast(REJECT_SCHEMA)])
    if rejects.height:
        raise BillingError(rule_errors_message(rejects))
    centi = {c: (pl.col(c) * 100).cast(pl.Int64).alias(f"{c}_centi") for c in ("area_1", "area_2",
                                                                            "area_per_person")}
    return good.select(
        "category", "service_id", "from", "to", "title",
        (pl.col("percent") * 100).cast(pl.Int64).alias("percent_bp"), "scope", *centi.values(),
        "within_norm", "source", "confidence", "source_row",
    ).sort("category", "service_id", "from")


def welfare_categories_on(table: pl.DataFrame, on: date) -> pl.DataFrame:
    """The rows of :func:`welfare_categories` in force on ``on``: per (category, service_id)
    the row with the latest ``from`` not after ``on``, unless its ``to`` is before ``on``."""
    return (table.filter(pl.col("from") <= on).sort("from")
            .group_by("category", "service_id", maintain_order=True).last()
            .filter(pl.col("to").is_null() | (pl.col("to") >= on))
            .sort("category", "service_id"))
