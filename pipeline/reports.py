"""Period reports for suppliers and managers, written at the close into ``reports/``.

* ``turnover.csv`` / ``turnover.xlsx`` — оборотно-сальдовая ведомость by supplier
  and building: opening, charged, recalculated, penalty, paid, closing, accounts.
* ``split/<supplier>.csv`` / ``.xlsx`` — the daily split register (реестр
  расщепления): for each day and agent, how much of the collected money is the
  supplier's; ``split/<supplier>-payments.csv`` has every payment's share (CSV only:
  openpyxl wrote 900 000 detail rows of a 100 000-account town in ≈ 40 s).

On demand, over a range of sealed periods (``billing report``): :func:`osv` — the
оборотно-сальдовая ведомость by account, building or supplier, and
:func:`account_card` — the карточка лицевого счёта (the other reports are SQL files:
:mod:`pipeline.sqlreports`).

Pure functions build the frames; :func:`write_reports` writes them. Money is
kopecks inside and rubles with two decimals in the files (a decimal comma in the CSV,
which Russian Excel reads as a number; numbers in the workbooks).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.allocate.ledger import PAID_KINDS, RECEIVED_KINDS
from pipeline.money import kopecks_to_decimal_expr
from pipeline.sealed import has_table, read_internal, scan_internal
from pipeline.tables import excel_csv_bytes
from pipeline.workspace import BillingError, Workspace, atomic_write_bytes
from pipeline.xlsx import workbook_bytes

MONEY = ["opening", "charged", "recalculated", "penalty", "paid", "closing"]

TURNOVER_TITLES = {
    "supplier_id": "Поставщик (код)", "supplier_name": "Поставщик", "building_id": "Дом (код)",
    "address": "Адрес дома", "accounts": "Лицевых счетов", "opening": "Сальдо на начало",
    "charged": "Начислено", "recalculated": "Перерасчёт", "penalty": "Пени", "paid": "Оплачено",
    "closing": "Сальдо на конец",
}
SPLIT_TITLES = {"paid_on": "Дата платежа", "agent": "Агент", "payments": "Платежей",
                "amount": "Сумма поставщику, ₽"}


def turnover(balances: pl.DataFrame, regs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Оборотно-сальдовая ведомость by supplier and building (kopeck columns ``*_kop``)."""
    where = regs["accounts"].select("account_id", "premise_id").join(
        regs["premises"].select("premise_id", "building_id"), on="premise_id").join(
        regs["buildings"].select("building_id", "address"), on="building_id")
    names = regs["organizations"].select(pl.col("org_id").alias("supplier_id"),
                                         pl.col("name").alias("supplier_name"))
    out = balances.lazy().join(where.lazy().drop("premise_id"), on="account_id", how="left").group_by(
        "supplier_id", "building_id", "address").agg(
        pl.col("account_id").n_unique().alias("accounts"),
        *[pl.col(f"{m}_kop").sum() for m in MONEY],
    ).join(names.lazy(), on="supplier_id", how="left")
    return out.select("supplier_id", "supplier_name", "building_id", "address", "accounts",
                      *[f"{m}_kop" for m in MONEY]).sort("supplier_id", "building_id", nulls_last=True
                                                         ).collect()


def daily_split(allocations: pl.DataFrame) -> pl.DataFrame:
    """Collected money per supplier, day and agent (kopecks)."""
    paid = allocations.filter(pl.col("kind").is_in(PAID_KINDS) & (pl.col("kind") != "advance_transfer"))
    return paid.lazy().group_by("supplier_id", "paid_on", "agent").agg(
        pl.col("payment_id").n_unique().alias("payments"), pl.col("amount_kop").sum(),
    ).sort("supplier_id", "paid_on", "agent", nulls_last=True).collect()


def _rubles(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    return frame.with_columns(kopecks_to_decimal_expr(f"{c}_kop").alias(c) for c in columns).drop(
        [f"{c}_kop" for c in columns])


def _xlsx(path: Path, sheets: dict[str, pl.DataFrame], titles: dict[str, str], created: datetime) -> None:
    """The workbook twin of a CSV report (openpyxl, streamed: write-only mode)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for name, frame in sheets.items():
        sheet = book.create_sheet(name)
        sheet.append([titles.get(c, c) for c in frame.columns])
        for row in frame.iter_rows():
            sheet.append(list(row))
    atomic_write_bytes(path, workbook_bytes(book, created))


def _csv(path: Path, frame: pl.DataFrame, titles: dict[str, str]) -> None:
    """A report CSV as Russian Excel opens it: ``;``, UTF-8 with BOM, decimal comma."""
    atomic_write_bytes(path, excel_csv_bytes(frame, titles))


def write_reports(out_dir: Path, balances: pl.DataFrame, allocations: pl.DataFrame,
                  regs: dict[str, pl.DataFrame], created: datetime) -> dict[str, int]:
    """Write the turnover sheet and one split register per supplier; returns row counts.

    ``created`` stamps the workbooks (the period's last day), so the same close gives
    the same bytes.
    """
    sheet = _rubles(turnover(balances, regs), MONEY)
    _csv(out_dir / "turnover.csv", sheet, TURNOVER_TITLES)
    _xlsx(out_dir / "turnover.xlsx", {"ОСВ": sheet}, TURNOVER_TITLES, created)
    split = _rubles(daily_split(allocations), ["amount"])
    detail = _rubles(allocations.lazy().filter(pl.col("kind").is_in(RECEIVED_KINDS))
                     .group_by("supplier_id", "paid_on", "agent", "payment_id", "account_id")
                     .agg(pl.col("amount_kop").sum()).collect(), ["amount"]
                     ).lazy().sort("paid_on", "agent", "payment_id").collect()
    suppliers = [s for s in split["supplier_id"].unique().sort().to_list() if s is not None]
    for supplier in suppliers:
        days = split.filter(pl.col("supplier_id") == supplier).drop("supplier_id")
        _csv(out_dir / "split" / f"{supplier}.csv", days, SPLIT_TITLES)
        payments = detail.filter(pl.col("supplier_id") == supplier).drop("supplier_id")
        _xlsx(out_dir / "split" / f"{supplier}.xlsx", {"По дням": days}, SPLIT_TITLES, created)
        _csv(out_dir / "split" / f"{supplier}-payments.csv", payments,
             {**SPLIT_TITLES, "payment_id": "Платёж", "account_id": "Лицевой счёт"})
    return {"turnover_rows": sheet.height, "split_suppliers": len(suppliers)}


# --------------------------------------------------------------------------- reports over sealed periods
# `billing report osv|card`: read from the sealed periods (verified first), built by the pure
# functions below, printed or written by the CLI. Money is kopecks in the frames (`*_kop`).

OSV_KEYS: dict[str, tuple[str, ...]] = {
    "account": ("account_id", "payer_name", "address"),
    "building": ("building_id", "address"),
    "supplier": ("supplier_id", "supplier_name"),
}
OSV_TITLES = {
    **TURNOVER_TITLES, "account_id": "Лицевой счёт", "payer_name": "Плательщик", "address": "Адрес",
    "building_id": "Дом (код)",
}
CARD_TITLES = {"period": "Период", "day": "Дата", "entry": "Операция", "detail": "Содержание",
               "amount": "Сумма, ₽"}
#: The tables the reports read and their money columns (DECIMAL(18,2) rubles on disk, read
#: back as ``*_kop`` by :func:`pipeline.sealed.read_internal`).
REPORT_TABLES: dict[str, tuple[str, ...]] = {
    "balances": tuple(MONEY), "charges": ("amount",), "recalculations": ("amount",),
    "penalties": ("amount",), "allocations": ("amount",),
}


def period_range(first: str, last: str | None) -> list[str]:
    """The periods ``first``…``last`` (inclusive) as ``YYYY-MM``.

    >>> period_range("2026-11", "2027-01")
    ['2026-11', '2026-12', '2027-01']
    """
    from pipeline.dates import Period

    start, end = Period.parse(first), Period.parse(last or first)
    if end < start:
        raise BillingError(f"Конец диапазона {end} раньше начала {start}.")
    out = [start]
    while out[-1] < end:
        out.append(out[-1].shift(1))
    return [str(p) for p in out]


def read_sealed(ws: Workspace, periods: list[str], org: str | None = None,
                account: str | None = None) -> dict[str, pl.DataFrame]:
    """The report tables of ``periods``, verified against their manifests, money in kopecks.

    Every period must be sealed (a report over an open month would change under the
    reader). ``org`` keeps one organization's rows: those of the buildings it manages and
    of its own services, as every view of ``billing sql --org`` (:func:`pipeline.analytics.org_predicate`).
    ``account`` keeps one account's rows, before ``org`` is applied (the card of one account
    of a million does not send the million through the organization's filter).
    """
    from pipeline.verify import check_sealed

    sealed = set(ws.sealed_periods())
    missing = [p for p in periods if p not in sealed]
    if missing:
        raise BillingError(f"Период {missing[0]} не закрыт: отчёты строятся только по закрытым периодам "
                           f"(закрыты: {', '.join(sorted(sealed)) or 'ни одного'}).")
    check_sealed(ws, periods)
    out: dict[str, pl.DataFrame] = {}
    for name in REPORT_TABLES:
        # The declared columns (pipeline.sealed: one file or its parts), money in kopecks (``*_kop``).
        folders = [ws.period_dir(p) for p in periods if has_table(ws.period_dir(p), name)]
        if not folders:
            raise BillingError(f"В закрытом периоде {periods[0]} нет таблицы {name}.")
        if account is None:
            frames = [read_internal(f, name) for f in folders]
        else:  # the filter goes down to the Parquet reader: only the account's row groups are read
            frames = [scan_internal(f, name).filter(pl.col("account_id") == account).collect()
                      for f in folders]
        out[name] = pl.concat(frames, how="diagonal_relaxed")
    if org is not None:
        from pipeline.analytics import limit_frame

        out = limit_frame(ws, org, out)
    return out


def _where(regs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """account_id → payer, building and the address of the flat."""
    premises = regs["premises"].select("premise_id", "building_id", "number", "kind")
    return regs["accounts"].select("account_id", "premise_id", "payer_name").join(
        premises, on="premise_id", how="left").join(
        regs["buildings"].select("building_id", pl.col("address").alias("b_address")),
        on="building_id", how="left").select(
        "account_id", "payer_name", "building_id",
        pl.concat_str([pl.col("b_address"), pl.lit(", "),
                       pl.when(pl.col("kind") == "residential").then(pl.lit("кв. "))
                       .otherwise(pl.lit("пом. ")), pl.col("number")]).alias("address"),
        pl.col("b_address"))


def osv(balances: pl.DataFrame, regs: dict[str, pl.DataFrame], periods: list[str],
        by: str = "account") -> pl.DataFrame:
    """Оборотно-сальдовая ведомость over ``periods`` by account, building or supplier.

    Opening is the first period's, closing the last one's, the turnovers are summed over
    all of them; ``balances`` are the sealed rows of those periods (``period`` and
    ``*_kop`` columns). Each row keeps opening + charged + recalculated + penalty − paid
    = closing, because every period's opening is the previous one's closing
    (:func:`check_osv` says which row breaks it if not).
    """
    if by not in OSV_KEYS:
        raise BillingError(f"Разрез ОСВ: {', '.join(OSV_KEYS)}; получено «{by}».")
    first, last = periods[0], periods[-1]
    where = _where(regs)
    rows = balances.filter(pl.col("period").is_in(periods)).join(
        where.select("account_id", "building_id"), on="account_id", how="left")
    key = {"account": ["account_id"], "building": ["building_id"], "supplier": ["supplier_id"]}[by]
    flows = ["charged", "recalculated", "penalty", "paid"]
    sheet = rows.group_by(key).agg(
        pl.col("account_id").n_unique().alias("accounts"),
        pl.col("opening_kop").filter(pl.col("period") == first).sum(),
        *[pl.col(f"{m}_kop").sum() for m in flows],
        pl.col("closing_kop").filter(pl.col("period") == last).sum(),
    )
    if by == "account":
        sheet = sheet.join(where.select("account_id", "payer_name", "address"), on="account_id", how="left")
    elif by == "building":
        sheet = sheet.join(where.select("building_id", pl.col("b_address").alias("address")).unique(
            "building_id"), on="building_id", how="left")
    else:
        names = regs["organizations"].select(pl.col("org_id").alias("supplier_id"),
                                              pl.col("name").alias("supplier_name"))
        sheet = sheet.join(names, on="supplier_id", how="left").with_columns(
            pl.when(pl.col("supplier_id").is_null()).then(pl.lit("Аванс (не распределён)"))
            .otherwise(pl.col("supplier_name")).alias("supplier_name"))
    counts = [] if by == "account" else ["accounts"]
    return sheet.select(*OSV_KEYS[by], *counts, *[f"{m}_kop" for m in MONEY]).sort(
        key[0], nulls_last=True)


def check_osv(sheet: pl.DataFrame) -> None:
    """Refuse a sheet whose row does not balance: expected, computed and the difference."""
    computed = (pl.col("opening_kop") + pl.col("charged_kop") + pl.col("recalculated_kop")
                + pl.col("penalty_kop") - pl.col("paid_kop"))
    bad = sheet.with_columns(computed.alias("_computed")).filter(pl.col("_computed") != pl.col("closing_kop"))
    if bad.height:
        from pipeline.money import rubles_text

        r = bad.row(0, named=True)
        raise BillingError(
            f"ОСВ не сходится в строке {r[sheet.columns[0]]}: сальдо на конец "
            f"{rubles_text(r['closing_kop'])}, по оборотам {rubles_text(r['_computed'])}, разница "
            f"{rubles_text(r['closing_kop'] - r['_computed'])} (строк с расхождением: {bad.height}).")


def with_total(sheet: pl.DataFrame, label_column: str) -> pl.DataFrame:
    """The sheet with an «Итого» row summing its kopeck and count columns."""
    sums = [c for c in sheet.columns if c.endswith("_kop") or c == "accounts"]
    total = sheet.select(pl.lit("Итого").alias(label_column), *[pl.col(c).sum() for c in sums])
    return pl.concat([sheet, total], how="diagonal_relaxed")


def account_card(account_id: str, tables: dict[str, pl.DataFrame], regs: dict[str, pl.DataFrame],
                 services: dict[str, str], periods: list[str]) -> pl.DataFrame:
    """Карточка лицевого счёта: per period the opening, charges by service, recalculations,
    penalties, payments with their dates and the closing (one row per entry, kopecks).

    ``entry`` is the kind of row (Russian), ``detail`` what it is; a period's opening
    plus its other rows (payments negative) gives its closing.
    """
    from pipeline.dates import Period
    from pipeline.methods import method_name

    names = dict(regs["organizations"].select("org_id", "name").iter_rows())
    mine = {n: f.filter(pl.col("account_id") == account_id) for n, f in tables.items()}
    if not mine["balances"].height and not mine["charges"].height:
        raise BillingError(f"У лицевого счёта {account_id} нет сальдо и начислений за "
                           f"{periods[0]}–{periods[-1]}.")
    schema = {"period": pl.String, "day": pl.Date, "order": pl.Int64, "entry": pl.String,
              "detail": pl.String, "amount_kop": pl.Int64}
    rows: list[dict] = []
    for p in periods:
        period = Period.parse(p)
        bal = mine["balances"].filter(pl.col("period") == p)
        add = rows.append
        add({"period": p, "day": period.first, "order": 0, "entry": "Сальдо на начало", "detail": "",
             "amount_kop": int(bal["opening_kop"].sum())})
        charges = mine["charges"].filter(pl.col("period") == p).group_by(
            "service_id", maintain_order=True).agg(pl.col("method").unique(maintain_order=True),
                                                   pl.col("amount_kop").sum())
        for r in charges.iter_rows(named=True):
            how = ", ".join(method_name(m) for m in r["method"])
            add({"period": p, "day": None, "order": 1, "entry": "Начислено",
                 "detail": f"{services.get(r['service_id'], r['service_id'])} ({how})",
                 "amount_kop": r["amount_kop"]})
        recalcs = mine["recalculations"].filter((pl.col("period") == p) & (pl.col("amount_kop") != 0))
        for r in recalcs.sort("origin_period", "service_id").iter_rows(named=True):
            add({"period": p, "day": None, "order": 2, "entry": "Перерасчёт",
                 "detail": f"за {r['origin_period']}, {services.get(r['service_id'], r['service_id'])}: "
                           f"{r['reason']}", "amount_kop": r["amount_kop"]})
        penalties = mine["penalties"].filter(pl.col("period") == p).group_by("supplier_id").agg(
            pl.col("amount_kop").sum()).filter(pl.col("amount_kop") != 0).sort("supplier_id")
        for r in penalties.iter_rows(named=True):
            add({"period": p, "day": None, "order": 3, "entry": "Пени",
                 "detail": f"ЖК РФ ст.155, {names.get(r['supplier_id'], r['supplier_id'])}",
                 "amount_kop": r["amount_kop"]})
        paid = mine["allocations"].filter((pl.col("period") == p) & pl.col("kind").is_in(RECEIVED_KINDS)
                                          ).group_by("paid_on", "agent", "payment_id").agg(
            pl.col("amount_kop").sum()).sort("paid_on", "agent", "payment_id")
        for r in paid.iter_rows(named=True):
            add({"period": p, "day": r["paid_on"], "order": 4, "entry": "Оплата",
                 "detail": f"платёж {r['payment_id']} ({r['agent']})", "amount_kop": -r["amount_kop"]})
        add({"period": p, "day": period.last, "order": 5, "entry": "Сальдо на конец", "detail": "",
             "amount_kop": int(bal["closing_kop"].sum())})
    return pl.DataFrame(rows, schema=schema).drop("order")


def check_card(card: pl.DataFrame) -> None:
    """Refuse a card whose period does not add up (opening + entries = closing)."""
    for (period,), rows in card.group_by(["period"], maintain_order=True):
        opening = int(rows.filter(pl.col("entry") == "Сальдо на начало")["amount_kop"].sum())
        closing = int(rows.filter(pl.col("entry") == "Сальдо на конец")["amount_kop"].sum())
        moved = int(rows.filter(~pl.col("entry").str.starts_with("Сальдо"))["amount_kop"].sum())
        if opening + moved != closing:
            raise BillingError(f"Карточка за {period} не сходится: на начало {opening} коп. + обороты "
                               f"{moved} коп. ≠ на конец {closing} коп.")


def report_rubles(frame: pl.DataFrame) -> pl.DataFrame:
    """``*_kop`` columns as DECIMAL(18,2) rubles under their names without ``_kop`` (for output)."""
    money = [c[:-4] for c in frame.columns if c.endswith("_kop")]
    return _rubles(frame, money)
