"""Reconciliation of a migration: the old system's figures against what the import adds up to.

:func:`differences` (pure) compares, per account, supplier and service:

* ``closing`` — every month's ``history_balances.closing`` with our closing of the sealed
  migrated month (opening + charged + recalculated + penalty − paid); only the *first*
  month where a key differs is listed, the later months follow from it (their number is in
  the note);
* ``debts`` — the sum of ``history_debts`` (the debts by the month they arose) with our
  closing of the last migrated month (they become the first close's opening items);
* ``due_date`` — a debt whose due date in the export differs from ours for its charge
  month (``due_dates.csv``, :func:`pipeline.calc.due.due_date`); no money columns.

``difference_kop`` = ``theirs_kop − ours_kop`` (a missing side counts 0); a money
difference of at most ``[migration] tolerance_kop`` is not listed.

:func:`reconcile` reads the history and the sealed migrated periods, writes
``HOME/migration/reports/reconciliation.xlsx`` and ``.pdf`` and stores the differences in
``store/migration/reconciliation.parquet`` with ``reconciliation.json`` (their digest, the
counts and a fingerprint of the inputs). :func:`accept` records an operator's acceptance
of exactly those differences (``accepted.json`` and the audit log); :func:`check_reconciled`
is the first close's guard.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.calc.due import due_date
from pipeline.dates import Period
from pipeline.errors import BillingError
from pipeline.migrate.model import History, load_history, migration_store
from pipeline.money import format_rub, rubles_text, to_decimal
from pipeline.progress import plural
from pipeline.sealed import read_internal
from pipeline.workspace import Workspace, atomic_write_bytes, audit, os_user, write_parquet_atomic

__all__ = [
    "DIFF_SCHEMA",
    "KINDS",
    "Reconciliation",
    "accept",
    "check_reconciled",
    "differences",
    "migrated_periods",
    "reconcile",
]

#: The kinds of difference, in the order they are listed.
KINDS = ("closing", "debts", "due_date")
KIND_TITLES = {"closing": "Сальдо на конец месяца", "debts": "Долги по месяцам возникновения",
               "due_date": "Срок оплаты долга"}
#: The same, short, for the PDF's narrow column.
KIND_SHORT = {"closing": "Сальдо", "debts": "Долги", "due_date": "Срок оплаты"}

DIFF_SCHEMA = pl.Schema({
    "kind": pl.String(), "account_id": pl.String(), "building_id": pl.String(),
    "supplier_id": pl.String(), "service_id": pl.String(), "period": pl.String(),
    "theirs_kop": pl.Int64(), "ours_kop": pl.Int64(), "difference_kop": pl.Int64(), "note": pl.String(),
})
_NO_BUILDING = [c for c in DIFF_SCHEMA if c != "building_id"]

KEY = ["account_id", "supplier_id", "service_id"]
MONEY = ("opening", "charged", "recalculated", "paid", "penalty", "closing")
SORT = ["_order", "account_id", "supplier_id", "service_id", "period"]

#: Differences shown in the PDF (the XLSX has all of them), and rows per PDF table.
PDF_ROWS = 200
_PDF_CHUNK = 10
#: Buildings listed in the PDF's totals (the XLSX has all of them).
PDF_BUILDINGS = 50

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "render" / "templates"
TEMPLATE_NAME = "reconciliation.html.j2"

DIFF_TITLES = ["Вид расхождения", "Лицевой счёт", "Дом (код)", "Поставщик", "Услуга", "Месяц",
               "Прежняя система, ₽", "Наш расчёт, ₽", "Разница (прежняя − наш), ₽", "Пояснение"]
TOTAL_TITLES = ["Расхождений", "Сальдо на конец", "Долги", "Сроки оплаты", "Сумма разниц, ₽",
                "Сумма разниц по модулю, ₽"]
_MONEY_FORMAT = "#,##0.00"


# --------------------------------------------------------------------------- pure part


def _rub(kop: int | None) -> str:
    return "—" if kop is None else format_rub(int(kop))


def _day(day: date | None) -> str:
    return "не определён" if day is None else day.strftime("%d.%m.%Y")


@lru_cache(maxsize=1)
def _default_due_rules() -> pl.DataFrame:
    """``due_dates.csv`` as shipped (when :func:`differences` is given no rule table)."""
    import rules
    from rules import read_rule_table

    return read_rule_table(Path(rules.__file__).resolve().parent / "defaults", "due_dates")


def _ours(service_balances: pl.DataFrame) -> pl.DataFrame:
    """Our balances of a month per key (summed, in case a key comes in several rows)."""
    return service_balances.group_by(["period", *KEY]).agg(
        pl.col(f"{m}_kop").fill_null(0).sum() for m in MONEY)


def _closing_month(balances: pl.DataFrame, ours: pl.DataFrame, tolerance_kop: int) -> pl.DataFrame:
    """One month's keys whose closing differs by more than the tolerance (both sides' figures)."""
    theirs = balances.group_by(["period", *KEY]).agg(
        pl.col("closing_kop").fill_null(0).sum().alias("theirs_kop"),
        pl.when(pl.col("opening_kop").is_not_null().any()).then(pl.col("opening_kop").sum())
        .alias("their_opening_kop"),
        pl.lit(True).alias("has_theirs"))
    both = theirs.join(ours.with_columns(pl.lit(True).alias("has_ours")), on=["period", *KEY],
                       how="full", coalesce=True)
    both = both.with_columns(
        pl.col("has_theirs").fill_null(False), pl.col("has_ours").fill_null(False),
        pl.col("theirs_kop").fill_null(0), *[pl.col(f"{m}_kop").fill_null(0) for m in MONEY],
    ).with_columns(pl.col("closing_kop").alias("ours_kop")).with_columns(
        (pl.col("theirs_kop") - pl.col("ours_kop")).alias("difference_kop"))
    return both.filter(pl.col("difference_kop").abs() > tolerance_kop)


def closing_month(balances: pl.DataFrame, service_balances: pl.DataFrame, tolerance_kop: int) -> pl.DataFrame:
    """One month's closing comparison: the old system's ``history_balances`` of the month against
    our ``service_balances`` of it (with ``period``, in integers), the keys that differ by more
    than the tolerance. :func:`differences` takes a list of them (``closing``) as made by the
    migration while it sealed the months.

    The keys are first narrowed to those whose closing differs, in one lazy sum (most keys
    agree): a key's row depends on that key's rows only. A key with an empty part (no
    supplier) is always looked at closely, as the comparison does not match such keys
    between the two sides."""
    have = [*KEY, "period"]
    any_null = pl.any_horizontal(pl.col(k).is_null() for k in have)
    suspects = pl.concat([
        balances.lazy().select(*have, pl.col("closing_kop").fill_null(0).alias("_off")),
        service_balances.lazy().select(*have, -pl.col("closing_kop").fill_null(0).alias("_off")),
    ]).group_by(have).agg(pl.col("_off").sum()).filter(
        (pl.col("_off").abs() > tolerance_kop) | any_null).select(have).collect()
    on = {"on": have, "how": "semi", "nulls_equal": True}
    return _closing_month(balances.join(suspects, **on),  # type: ignore[arg-type]
                          _ours(service_balances.join(suspects, **on)), tolerance_kop)  # type: ignore[arg-type]


def _closing(broken: pl.DataFrame) -> pl.DataFrame:
    """Per key the first month whose closing differs, and how many later months differ too."""
    broken = broken.sort([*KEY, "period"])
    if not broken.height:
        return pl.DataFrame(schema={c: DIFF_SCHEMA[c] for c in _NO_BUILDING})
    first = broken.group_by(KEY, maintain_order=True).agg(
        pl.all().first(), (pl.len() - 1).alias("later"), pl.col("period").last().alias("last_period"),
        pl.col("difference_kop").last().alias("last_difference_kop"))
    notes = [_closing_note(r) for r in first.iter_rows(named=True)]
    return first.with_columns(pl.lit("closing").alias("kind"), pl.Series("note", notes, pl.String)
                              ).select(_NO_BUILDING)


def _closing_note(r: dict[str, Any]) -> str:
    sum_text = (f"{_rub(r['opening_kop'])} + {_rub(r['charged_kop'])} + {_rub(r['recalculated_kop'])} + "
                f"{_rub(r['penalty_kop'])} − {_rub(r['paid_kop'])} = {_rub(r['ours_kop'])} ₽")
    if not r["has_theirs"]:
        text = (f"В сальдо прежней системы нет строки за {r['period']} (считается 0,00 ₽), а по "
                f"импорту входящее + начислено + перерасчёт + пени − оплачено: {sum_text}.")
    elif not r["has_ours"]:
        text = (f"Сальдо на конец месяца прежней системы {_rub(r['theirs_kop'])} ₽, а в импорте за "
                f"{r['period']} по этой услуге нет ни сальдо, ни начислений, ни оплат (считается 0,00 ₽).")
    else:
        text = ("Сальдо на конец месяца прежней системы не равно входящему + начислено + перерасчёт + "
                f"пени − оплачено по импорту: у прежней системы {_rub(r['theirs_kop'])} ₽, по импорту "
                f"{sum_text}.")
    if r["has_theirs"] and r["their_opening_kop"] is not None and r["their_opening_kop"] != r["opening_kop"]:
        text += (f" Входящее сальдо прежней системы за этот месяц {_rub(r['their_opening_kop'])} ₽, "
                 f"наше {_rub(r['opening_kop'])} ₽.")
    if r["later"]:
        later = plural(r["later"], "месяц", "месяца", "месяцев")
        text += (f" Расхождение есть и в следующих месяцах ({later}, по {r['last_period']}): "
                 "они следуют из этого месяца.")
        if r["last_difference_kop"] != r["difference_kop"]:
            text += f" В {r['last_period']} разница уже {_rub(r['last_difference_kop'])} ₽."
    return text


def _debts(debts: pl.DataFrame, balances: pl.DataFrame, ours: pl.DataFrame, last: str, tolerance_kop: int
           ) -> pl.DataFrame:
    if not debts.height:
        return pl.DataFrame(schema={c: DIFF_SCHEMA[c] for c in _NO_BUILDING})
    theirs = debts.group_by(KEY).agg(pl.col("amount_kop").fill_null(0).sum().alias("theirs_kop"),
                                     pl.len().alias("rows"))
    mine = ours.filter(pl.col("period") == last).select(*KEY, pl.col("closing_kop").alias("ours_kop"))
    their_closing = balances.filter(pl.col("period") == last).group_by(KEY).agg(
        pl.col("closing_kop").fill_null(0).sum().alias("their_closing_kop"))
    both = theirs.join(mine, on=KEY, how="full", coalesce=True).join(their_closing, on=KEY, how="left")
    both = both.with_columns(pl.col("theirs_kop").fill_null(0), pl.col("ours_kop").fill_null(0),
                             pl.col("rows").fill_null(0)).with_columns(
        (pl.col("theirs_kop") - pl.col("ours_kop")).alias("difference_kop")).filter(
        pl.col("difference_kop").abs() > tolerance_kop).sort(KEY)
    notes = []
    for r in both.iter_rows(named=True):
        if r["rows"]:
            text = (f"Сумма долгов прежней системы по месяцам возникновения "
                    f"({plural(r['rows'], 'строка', 'строки', 'строк')}) {_rub(r['theirs_kop'])} ₽ не равна "
                    f"сальдо на конец {last} по импорту {_rub(r['ours_kop'])} ₽: первое закрытие начнёт "
                    "с этих долгов.")
        else:
            text = (f"В долгах прежней системы нет строк по этой услуге, а сальдо на конец {last} по "
                    f"импорту {_rub(r['ours_kop'])} ₽.")
        if r["their_closing_kop"] is not None and r["their_closing_kop"] == r["theirs_kop"]:
            text += (" С сальдо прежней системы долги сходятся: расхождение следует из сальдо на конец "
                     "месяца (см. расхождение сальдо).")
        notes.append(text)
    return both.with_columns(pl.lit("debts").alias("kind"), pl.lit(last).alias("period"),
                             pl.Series("note", notes, pl.String)).select(_NO_BUILDING)


def _due_dates(debts: pl.DataFrame, due_rules: pl.DataFrame) -> pl.DataFrame:
    dated = debts.filter(pl.col("charge_period").is_not_null() & pl.col("due_date").is_not_null())
    months = dated["charge_period"].unique().sort().to_list()
    ours = pl.DataFrame({"charge_period": months,
                         "_ours": [due_date(due_rules, Period.parse(p)) for p in months]},
                        schema={"charge_period": pl.String, "_ours": pl.Date})
    # Only the debts whose due date is not ours become rows (a million accounts' debts are tens of millions).
    differ = dated.join(ours, on="charge_period", how="left").filter(
        pl.col("_ours").ne_missing(pl.col("due_date"))).sort([*KEY, "charge_period"])
    rows = []
    for r in differ.iter_rows(named=True):
        mine = r["_ours"]
        rows.append({
            "kind": "due_date", "account_id": r["account_id"], "supplier_id": r["supplier_id"],
            "service_id": r["service_id"], "period": r["charge_period"], "theirs_kop": None,
            "ours_kop": None, "difference_kop": None,
            "note": (f"Срок оплаты долга за {r['charge_period']} у прежней системы {_day(r['due_date'])}, "
                     f"по нашим правилам (due_dates.csv) — {_day(mine)}; сумма долга "
                     f"{_rub(r['amount_kop'])} ₽. В перенесённых долгах остаётся срок прежней системы."),
        })
    return pl.DataFrame(rows, schema={c: DIFF_SCHEMA[c] for c in _NO_BUILDING})


def _where(regs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """account_id → building_id (empty when the registers lack accounts or premises)."""
    if "accounts" not in regs or "premises" not in regs:
        return pl.DataFrame(schema={"account_id": pl.String, "building_id": pl.String})
    return regs["accounts"].select("account_id", "premise_id").join(
        regs["premises"].select("premise_id", "building_id"), on="premise_id", how="left").select(
        pl.col("account_id").cast(pl.String), pl.col("building_id").cast(pl.String)).unique("account_id")


def differences(history: History, service_balances: pl.DataFrame | Callable[[str], pl.DataFrame],
                regs: dict[str, pl.DataFrame], tolerance_kop: int = 0, due_rules: pl.DataFrame | None = None,
                closing: pl.DataFrame | None = None) -> pl.DataFrame:
    """Every difference between the old system's figures and ours (:data:`DIFF_SCHEMA`, sorted).

    ``service_balances``: our sealed migrated months (period, account_id, service_id,
    supplier_id, ``opening_kop`` … ``closing_kop``), or a function giving one month's
    (the months are compared one at a time). ``due_rules``: the ``due_dates`` rule
    table (from, day); None → the one shipped with the engine. ``closing``: every month's
    :func:`closing_month` with this tolerance, already made (then only the last month of
    ``service_balances`` is read). Sorted by kind (closing, debts, due_date), account,
    supplier, service and month.
    """
    if tolerance_kop < 0:
        raise BillingError(f"Допуск сверки не может быть отрицательным: {tolerance_kop} коп.")
    months = list(history.months)
    if isinstance(service_balances, pl.DataFrame):
        frame = service_balances
        service_balances = lambda month: frame.filter(pl.col("period") == month)  # noqa: E731
    broken = [closing] if closing is not None else [
        closing_month(history.month("history_balances", m), service_balances(m), tolerance_kop)
        for m in months]
    debts = history.frame("history_debts")
    empty = pl.DataFrame(schema={c: DIFF_SCHEMA[c] for c in _NO_BUILDING})
    found = pl.concat([
        _closing(pl.concat(broken)) if broken else empty,
        _debts(debts, history.month("history_balances", history.last),
               _ours(service_balances(history.last)), history.last, tolerance_kop) if months else empty,
        _due_dates(debts, _default_due_rules() if due_rules is None else due_rules),
    ], how="vertical")
    order = {k: i for i, k in enumerate(KINDS)}
    return found.join(_where(regs), on="account_id", how="left").with_columns(
        pl.col("kind").replace_strict(order, return_dtype=pl.Int32).alias("_order"),
    ).sort(SORT, nulls_last=True).select(list(DIFF_SCHEMA)).cast(DIFF_SCHEMA)


def digest(frame: pl.DataFrame) -> str:
    """SHA-256 of the differences' canonical bytes: the column names, then one JSON line a row."""
    h = hashlib.sha256()
    h.update((json.dumps(list(DIFF_SCHEMA), ensure_ascii=False) + "\n").encode())
    for row in frame.select(list(DIFF_SCHEMA)).iter_rows():
        h.update((json.dumps(list(row), ensure_ascii=False, separators=(",", ":")) + "\n").encode())
    return h.hexdigest()


def counts(frame: pl.DataFrame) -> dict[str, int]:
    """Differences per kind (every kind present, 0 when none)."""
    got = dict(frame.group_by("kind").len().iter_rows())
    return {k: int(got.get(k, 0)) for k in KINDS}


def _totals(frame: pl.DataFrame, by: str) -> pl.DataFrame:
    return frame.group_by(by).agg(
        pl.len().cast(pl.Int64).alias("differences"),
        *[(pl.col("kind") == k).sum().cast(pl.Int64).alias(k) for k in KINDS],
        pl.col("difference_kop").sum().alias("difference_kop"),
        pl.col("difference_kop").abs().sum().alias("abs_difference_kop"),
    ).sort(by, nulls_last=True)


def totals_by_building(frame: pl.DataFrame, regs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Differences per building: counts per kind, the sum and the sum of absolute values."""
    out = _totals(frame, "building_id")
    if "buildings" in regs:
        out = out.join(regs["buildings"].select(pl.col("building_id").cast(pl.String), "address"),
                       on="building_id", how="left")
    else:
        out = out.with_columns(pl.lit(None, pl.String).alias("address"))
    return out.select("building_id", "address", "differences", *KINDS, "difference_kop", "abs_difference_kop")


def totals_by_supplier(frame: pl.DataFrame, regs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Differences per supplier: counts per kind, the sum and the sum of absolute values."""
    out = _totals(frame, "supplier_id")
    if "organizations" in regs:
        out = out.join(regs["organizations"].select(pl.col("org_id").cast(pl.String).alias("supplier_id"),
                                                    pl.col("name").alias("supplier_name")),
                       on="supplier_id", how="left")
    else:
        out = out.with_columns(pl.lit(None, pl.String).alias("supplier_name"))
    return out.select("supplier_id", "supplier_name", "differences", *KINDS, "difference_kop",
                      "abs_difference_kop")


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class Reconciliation:
    """The outcome of :func:`reconcile`: the differences, their totals, the reports, the digest."""

    differences: pl.DataFrame
    by_building: pl.DataFrame
    by_supplier: pl.DataFrame
    digest: str
    xlsx_path: Path
    pdf_path: Path
    source: str = ""
    months: tuple[str, ...] = field(default=())

    @property
    def counts(self) -> dict[str, int]:
        return counts(self.differences)

    @property
    def total_abs_kop(self) -> int:
        return int(self.differences["difference_kop"].abs().sum() or 0)


def _money_cell(sheet: Any, kop: int | None) -> Any:
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=None if kop is None else to_decimal(int(kop)))
    cell.number_format = _MONEY_FORMAT
    return cell


def xlsx_bytes(frame: pl.DataFrame, by_building: pl.DataFrame, by_supplier: pl.DataFrame,
               created: datetime) -> bytes:
    """The reconciliation workbook: «Расхождения», «По домам», «По поставщикам» (rubles, 2 places)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    from pipeline.xlsx import workbook_bytes

    book = Workbook(write_only=True)
    bold = Font(bold=True)

    def header(sheet: Any, titles: list[str], widths: list[int]) -> None:
        for i, width in enumerate(widths):
            sheet.column_dimensions[chr(ord("A") + i)].width = width
        sheet.freeze_panes = "A2"
        cells = []
        for title in titles:
            cell = WriteOnlyCell(sheet, value=title)
            cell.font = bold
            cells.append(cell)
        sheet.append(cells)

    sheet = book.create_sheet("Расхождения")
    header(sheet, DIFF_TITLES, [26, 14, 12, 14, 16, 9, 16, 16, 18, 100])
    for r in frame.iter_rows(named=True):
        sheet.append([KIND_TITLES[r["kind"]], r["account_id"], r["building_id"], r["supplier_id"],
                      r["service_id"], r["period"], _money_cell(sheet, r["theirs_kop"]),
                      _money_cell(sheet, r["ours_kop"]), _money_cell(sheet, r["difference_kop"]), r["note"]])
    for name, totals, titles in (("По домам", by_building, ["Дом (код)", "Адрес дома"]),
                                 ("По поставщикам", by_supplier, ["Поставщик (код)", "Поставщик"])):
        sheet = book.create_sheet(name)
        header(sheet, titles + TOTAL_TITLES, [14, 40, 12, 12, 10, 12, 18, 22])
        for row in totals.iter_rows():
            sheet.append([*row[:6], _money_cell(sheet, row[6]), _money_cell(sheet, row[7])])
    return workbook_bytes(book, created)


def _months_text(months: tuple[str, ...]) -> str:
    if not months:
        return "—"
    span = months[0] if len(months) == 1 else f"{months[0]} — {months[-1]}"
    return f"{span} ({plural(len(months), 'месяц', 'месяца', 'месяцев')})"


def _totals_view(totals: pl.DataFrame, name_col: str, limit: int | None) -> list[dict[str, str]]:
    rows = totals if limit is None else totals.head(limit)
    key = totals.columns[0]
    return [{"id": r[key] or "—", "name": r[name_col] or "", "count": str(r["differences"]),
             **{k: str(r[k]) for k in KINDS}, "sum": _rub(r["difference_kop"]),
             "abs": _rub(r["abs_difference_kop"])} for r in rows.iter_rows(named=True)]


def html_text(frame: pl.DataFrame, by_building: pl.DataFrame, by_supplier: pl.DataFrame, source: str,
              months: tuple[str, ...], tolerance_kop: int) -> str:
    """The reconciliation as an HTML page for the PDF (money as ``1 234,56``)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    by_kind = counts(frame)
    shown = frame.head(PDF_ROWS)
    rows = [{"n": i + 1, "kind": KIND_TITLES[r["kind"]], "kind_short": KIND_SHORT[r["kind"]],
             "account_id": r["account_id"],
             "building_id": r["building_id"] or "—", "supplier_id": r["supplier_id"] or "—",
             "service_id": r["service_id"] or "—", "period": r["period"] or "—",
             "theirs": _rub(r["theirs_kop"]), "ours": _rub(r["ours_kop"]),
             "difference": _rub(r["difference_kop"]),
             "note": r["note"]} for i, r in enumerate(shown.iter_rows(named=True))]
    chunks = [rows[i:i + _PDF_CHUNK] for i in range(0, len(rows), _PDF_CHUNK)]
    v = {
        "source": source or "не указана", "months": _months_text(months),
        "tolerance": format_rub(tolerance_kop), "total": frame.height,
        "total_text": plural(frame.height, "расхождение", "расхождения", "расхождений"),
        "kinds": [{"title": KIND_TITLES[k], "count": by_kind[k]} for k in KINDS],
        "sum": _rub(int(frame["difference_kop"].sum() or 0)),
        "abs": _rub(int(frame["difference_kop"].abs().sum() or 0)),
        "suppliers": _totals_view(by_supplier, "supplier_name", None),
        "buildings": _totals_view(by_building, "address", PDF_BUILDINGS),
        "more_buildings": max(0, by_building.height - PDF_BUILDINGS),
        "chunks": chunks, "shown": len(rows), "more_rows": frame.height - len(rows),
    }
    return env.get_template(TEMPLATE_NAME).render(v=v)


def pdf_bytes(html: str) -> bytes:
    """The PDF of :func:`html_text` (WeasyPrint; the stack checked as for receipts)."""
    from pipeline.render.receipts import check_pdf_stack

    try:
        check_pdf_stack()
    except RuntimeError as exc:
        raise BillingError(f"Отчёт сверки в PDF не построен: {exc}") from exc
    from weasyprint import HTML

    pdf = HTML(string=html, base_url=str(TEMPLATES_DIR)).write_pdf()
    assert pdf is not None
    return bytes(pdf)


# --------------------------------------------------------------------------- workspace


def reports_dir(ws: Workspace) -> Path:
    return ws.home / "migration" / "reports"


def _json_path(ws: Workspace) -> Path:
    return migration_store(ws) / "reconciliation.json"


def _accepted_path(ws: Workspace) -> Path:
    return migration_store(ws) / "accepted.json"


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True).encode())


def _manifest(ws: Workspace, period: str) -> dict[str, Any]:
    return dict(json.loads((ws.period_dir(period) / "manifest.json").read_text(encoding="utf-8")))


def migrated_periods(ws: Workspace) -> list[str]:
    """The sealed periods whose manifest says ``"migrated": true``, oldest first."""
    return [p for p in ws.sealed_periods() if _manifest(ws, p).get("migrated") is True]


def inputs_sha256(ws: Workspace, periods: list[str], tolerance_kop: int) -> str:
    """What a reconciliation was made from: ``history.json``, the periods' manifests, the tolerance."""
    meta = migration_store(ws) / "history.json"
    parts = {
        "history": hashlib.sha256(meta.read_bytes()).hexdigest() if meta.is_file() else None,
        "periods": {p: hashlib.sha256((ws.period_dir(p) / "manifest.json").read_bytes()).hexdigest()
                    for p in periods},
        "tolerance_kop": tolerance_kop,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def store_reconciliation(ws: Workspace, frame: pl.DataFrame, *, periods: list[str], tolerance_kop: int,
                         source: str, months: tuple[str, ...], reports: dict[str, str]) -> dict[str, Any]:
    """Write ``store/migration/reconciliation.parquet`` and ``reconciliation.json``; return the json."""
    frame = frame.select(list(DIFF_SCHEMA))
    meta = {
        "digest": digest(frame), "differences": frame.height, "counts": counts(frame),
        "total_abs_kop": int(frame["difference_kop"].abs().sum() or 0),
        "total_kop": int(frame["difference_kop"].sum() or 0),
        "tolerance_kop": tolerance_kop, "source": source, "months": list(months), "periods": periods,
        "inputs_sha256": inputs_sha256(ws, periods, tolerance_kop), "reports": reports,
    }
    write_parquet_atomic(frame, migration_store(ws) / "reconciliation.parquet")
    _write_json(_json_path(ws), meta)
    return meta


def reconcile(ws: Workspace, closing: pl.DataFrame | None = None) -> Reconciliation:
    """Reconcile the loaded history with the sealed migrated periods; write the reports and the store.

    ``closing``: the months' closing comparison made while they were sealed
    (:class:`pipeline.migrate.periods.SealedHistory`), so that ``billing migrate load`` does
    not read every month back; None (``billing migrate report``): read from the periods.
    """
    from pipeline.ingest.registers import load_store
    from rules import read_rule_table

    history = load_history(ws)
    if history is None:
        raise BillingError("Перенос из прежней системы не загружен: "
                           "сначала выполните «billing migrate load».")
    periods = migrated_periods(ws)
    if not periods:
        raise BillingError("Нет запечатанных перенесённых месяцев: выполните «billing migrate load» снова.")
    regs = load_store(ws, names=["accounts", "premises", "buildings", "organizations"])
    tolerance = ws.typed_settings().migration.tolerance_kop

    def ours(month: str) -> pl.DataFrame:
        if month not in periods:
            return pl.DataFrame(schema={"period": pl.String, **{k: pl.String for k in KEY},
                                        **{f"{m}_kop": pl.Int64 for m in MONEY}})
        return read_internal(ws.period_dir(month), "service_balances")

    frame = differences(history, ours, regs, tolerance, read_rule_table(ws.rules, "due_dates"), closing)
    by_building = totals_by_building(frame, regs)
    by_supplier = totals_by_supplier(frame, regs)
    created = datetime.combine(Period.parse(history.last).last, time())
    out = reports_dir(ws)
    xlsx_path, pdf_path = out / "reconciliation.xlsx", out / "reconciliation.pdf"
    atomic_write_bytes(xlsx_path, xlsx_bytes(frame, by_building, by_supplier, created))
    atomic_write_bytes(pdf_path, pdf_bytes(html_text(frame, by_building, by_supplier, history.source,
                                                     history.months, tolerance)))
    meta = store_reconciliation(
        ws, frame, periods=periods, tolerance_kop=tolerance, source=history.source, months=history.months,
        reports={"xlsx": str(xlsx_path.relative_to(ws.home)), "pdf": str(pdf_path.relative_to(ws.home))})
    return Reconciliation(frame, by_building, by_supplier, meta["digest"], xlsx_path, pdf_path,
                          history.source, history.months)


def _current(ws: Workspace, periods: list[str]) -> dict[str, Any]:
    """The stored reconciliation, refused when there is none or it no longer fits its inputs."""
    stored = _read_json(_json_path(ws))
    if stored is None:
        raise BillingError("Сверка перенесённых данных не выполнена: выполните «billing migrate report».")
    tolerance = ws.typed_settings().migration.tolerance_kop
    if stored.get("inputs_sha256") != inputs_sha256(ws, periods, tolerance):
        raise BillingError(
            "Сверка перенесённых данных устарела: после неё история загружена заново или изменён допуск "
            "[migration] tolerance_kop. Выполните «billing migrate report» и посмотрите отчёт снова.")
    return stored


def accept(ws: Workspace, reason: str, user: str | None = None) -> dict[str, Any]:
    """Accept exactly the current differences (their digest) with a reason; audited."""
    if not reason or not reason.strip():
        raise BillingError("Укажите причину, по которой расхождения принимаются: "
                           "billing migrate accept --reason \"…\".")
    periods = migrated_periods(ws)
    if not periods:
        raise BillingError("Нет перенесённых месяцев: принимать нечего.")
    stored = _current(ws, periods)
    if not stored["differences"]:
        raise BillingError("Сверка не нашла расхождений: принимать нечего.")
    record = {
        "digest": stored["digest"], "differences": stored["differences"], "counts": stored["counts"],
        "total_abs_kop": stored["total_abs_kop"], "reason": reason.strip(), "user": user or os_user()[1],
        "at": datetime.now(UTC).isoformat(timespec="seconds"), "months": stored["months"],
        "source": stored["source"],
    }
    _write_json(_accepted_path(ws), record)
    details = {k: record[k] for k in ("digest", "differences", "counts", "total_abs_kop", "reason")}
    if user:
        details["operator"] = user
    audit(ws, "migrate accept", **details)
    return record


def check_reconciled(ws: Workspace) -> None:
    """The first close's guard: refuse while the migration's differences are neither gone nor accepted.

    Nothing to check without migrated periods, or once an ordinary period is sealed (the
    first close has passed this guard).
    """
    periods = migrated_periods(ws)
    if not periods or len(periods) != len(ws.sealed_periods()):
        return
    stored = _current(ws, periods)
    if not stored["differences"]:
        return
    accepted = _read_json(_accepted_path(ws))
    if accepted is not None and accepted.get("digest") == stored["digest"]:
        return
    reports = stored.get("reports") or {}
    where = (" и ".join(str(ws.home / reports[k]) for k in ("xlsx", "pdf") if k in reports)
             or str(reports_dir(ws)))
    text = (f"Закрытие невозможно: сверка переноса из прежней системы нашла "
            f"{plural(int(stored['differences']), 'расхождение', 'расхождения', 'расхождений')} на "
            f"{rubles_text(int(stored['total_abs_kop']))} (сумма по модулю), и они не приняты. "
            f"Отчёт: {where}.")
    if accepted is not None:
        text += (f" Принятые ранее расхождения ({accepted.get('at', '')}, {accepted.get('user', '')}) — "
                 "другие: после приёмки история загружена заново.")
    text += (" Исправьте выгрузку прежней системы и загрузите её снова: «billing migrate load --replace», "
             "или примите расхождения с причиной: «billing migrate accept --reason \"…\"».")
    raise BillingError(text)

