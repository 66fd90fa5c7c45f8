"""The monthly register to social welfare (УСЗН, the subsidy centre): ``billing export welfare``.

One row per beneficiary and service of a sealed period (law.md §8.3): who (person, category,
document), where (account, address, total and living area), the household (registered
persons — as the receipt counts them, in force on the period's last day — and the persons
entitled: the account's beneficiaries of the same category), and per service the tariff,
the norm, the volume actual and within the norm, the social norm of area, the charge and
the charge within the norm, recalculations, payments, the overdue debt and whether an
agreement on repaying it is in force; then the category's percent and, for information,
the compensation it gives (the body computes the ЕДК itself from these figures).

Beneficiaries are the rows of ``registers/benefits.csv`` in force in the period (their
account: ``account_id`` when filled, else the person's registration at the period's end;
a beneficiary with neither is left out and counted). Categories and their rules are the
dated table ``rules/welfare_categories.csv`` (:func:`rules.welfare_categories`): per
category and service (``*`` = every service without a row of its own) the percent, whose
share (``person``: the beneficiary's own, charge ÷ registered; ``household``: the family's,
split among its beneficiaries), the social norm of area by household size and whether the
volume is capped at the consumption norm. A service whose row says 0 % is not listed.

Within the norm (integer kopecks, half away from zero):

* metered resources (``kind = metered``) and sewerage: the volume capped at norm × persons
  (persons = registered, else owners). The norm is the charge line's (the close's norm,
  the electricity matrix included) or, for a line charged by meter, ``norms.csv`` in force on
  the last day; sewerage's norm is the sum of the account's resources in the same unit
  (cold and hot water, Правила 354). No norm: the whole volume;
* area services (``area``, ``heating``): the area capped at the social norm (``area_1``
  single, ``area_2`` two, ``area_per_person`` × persons for three and more), the volume and
  charge in proportion;
* other services: the whole charge.

The charge within the norm is counted without an increasing coefficient (the line's
volume × tariff, as the receipt's «в т.ч. повышающий коэффициент» separates it).

Debt is the outstanding of earlier periods at the close (``debts``, charge period before
P); the agreement flag is ``accounts.repayment_agreement_until`` on or after the period's
first day (no agreement register exists: empty = none).

Files: ``welfare/<name>.csv`` and ``welfare/<name>.xlsx`` with a footer row ``ИТОГО``
(rows and the sums of every money column). The regional layouts are UNVERIFIED
(exchange-formats.md §5.3): encoding, separator, decimal comma, file name and a text
length limit are settings ``[export_welfare]`` of settings.toml (:class:`ExportWelfare`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from pipeline.calc.charges import amount_without_coefficient
from pipeline.dates import Period
from pipeline.export import SAME_ROWS_AS, ExportFile, sealed_manifest
from pipeline.ingest.registers import load_store
from pipeline.money import div_half_up
from pipeline.sealed import read_internal
from pipeline.settings import ExportWelfare, load_section
from pipeline.sheet import frame_xlsx_bytes
from pipeline.workspace import BillingError, Workspace
from rules import WELFARE_ANY_SERVICE, read_rule_table, welfare_categories, welfare_categories_on

__all__ = ["MONEY", "TITLES", "beneficiaries_in", "build_files",
           "welfare_csv", "welfare_rows", "welfare_xlsx"]

RECIPIENT = "УСЗН"
#: What a superscript becomes in an encoding without it.
SUPERSCRIPTS = {ord("²"): "2", ord("³"): "3"}
SECTION = "export_welfare"
FOOTER = "ИТОГО"


#: The columns of both files, in order, with their Russian titles.
TITLES = {
    "period": "Период",
    "person_id": "Код гражданина",
    "full_name": "ФИО",
    "birth_date": "Дата рождения",
    "category": "Категория",
    "category_title": "Наименование категории",
    "document": "Документ",
    "account_id": "Лицевой счёт",
    "address": "Адрес",
    "total_area": "Общая площадь, м²",
    "living_area": "Жилая площадь, м²",
    "registered": "Зарегистрировано",
    "entitled": "Имеют право",
    "service_id": "Код услуги",
    "service_name": "Услуга",
    "unit": "Ед. изм.",
    "tariff": "Тариф, руб.",
    "norm": "Норматив",
    "volume": "Объём",
    "volume_in_norm": "Объём в пределах норматива",
    "area_norm": "Социальная норма площади, м²",
    "charged": "Начислено, руб.",
    "charged_in_norm": "Начислено в пределах норматива, руб.",
    "recalculated": "Перерасчёт, руб.",
    "paid": "Оплачено, руб.",
    "debt": "Задолженность, руб.",
    "agreement": "Соглашение о погашении",
    "percent": "Процент",
    "compensation": "Компенсация (справочно), руб.",
}
#: Money columns (kopecks in the rows, ``*_kop``), summed in the footer.
MONEY = ("charged", "charged_in_norm", "recalculated", "paid", "debt", "compensation")
_SCALES = {"tariff": 2, "norm": 6, "volume": 6, "volume_in_norm": 6, "area_norm": 2, "total_area": 2,
           "living_area": 2, "percent": 2, **dict.fromkeys(MONEY, 2)}
_INT_SOURCE = {"tariff": "price_kop", "norm": "norm_micro", "volume": "volume_micro",
               "volume_in_norm": "in_norm_micro", "area_norm": "area_norm_centi",
               "total_area": "total_area_centi", "living_area": "living_area_centi", "percent": "percent_bp",
               **{m: f"{m}_kop" for m in MONEY}}


def beneficiaries_in(period: Period, benefits: pl.DataFrame, residents: pl.DataFrame) -> pl.DataFrame:
    """The beneficiaries of ``period``: person_id, category, document, account_id (own or by
    registration at the period's end, null when neither), full_name, birth_date."""
    current = benefits.filter((pl.col("from") <= period.last)
                              & (pl.col("to").is_null() | (pl.col("to") >= period.first)))
    for col in ("account_id", "document"):
        if col not in current.columns:
            current = current.with_columns(pl.lit(None, pl.String).alias(col))
    # One row per person and category: the latest-starting grant in force.
    current = current.sort("from").group_by("person_id", "category", maintain_order=True).last()
    registered = residents.filter(
        (pl.col("from") <= period.last) & (pl.col("to").is_null() | (pl.col("to") >= period.last))
    ).sort("from").group_by("person_id", maintain_order=True).last().select(
        "person_id", pl.col("account_id").alias("_reg_account"))
    people = residents.sort("from").group_by("person_id", maintain_order=True).last().select(
        "person_id", "full_name",
        (pl.col("birth_date") if "birth_date" in residents.columns
         else pl.lit(None, pl.Date)).alias("birth_date"))
    return (current.join(registered, on="person_id", how="left").join(people, on="person_id", how="left")
            .select("person_id", "category", "document",
                    pl.coalesce("account_id", "_reg_account").alias("account_id"), "full_name", "birth_date")
            .sort("account_id", "person_id", "category", nulls_last=True))


def _registered(period: Period, residents: pl.DataFrame) -> pl.DataFrame:
    return residents.filter(
        (pl.col("from") <= period.last) & (pl.col("to").is_null() | (pl.col("to") >= period.last))
    ).group_by("account_id").agg(pl.col("person_id").n_unique().cast(pl.Int64).alias("registered"))


def _centi(col: str) -> pl.Expr:
    return (pl.col(col) * 100).cast(pl.Int64)


def welfare_rows(period: Period, beneficiaries: pl.DataFrame, categories: pl.DataFrame,
                 regs: dict[str, pl.DataFrame], tables: dict[str, pl.DataFrame],
                 services: pl.DataFrame, norms: pl.DataFrame) -> pl.DataFrame:
    """The register's rows, integers (``*_kop``, ``*_micro``, ``*_centi``) and texts.

    ``beneficiaries``: :func:`beneficiaries_in`; ``categories``: the rows of
    :func:`rules.welfare_categories` in force on the last day; ``regs``: accounts,
    premises, buildings, residents of the period's snapshot; ``tables``: the sealed
    internal charges, recalculations, service_balances, debts; ``services``, ``norms``:
    rule tables as :func:`rules.read_rule_table` reads them.
    """
    placed = beneficiaries.filter(pl.col("account_id").is_not_null())
    known = set(categories["category"])
    unknown = sorted(set(placed["category"]) - known)
    if unknown:
        raise BillingError(
            "Реестр для соцзащиты: категорий льгот " + ", ".join(f"«{c}»" for c in unknown)
            + " нет в rules/welfare_categories.csv (или они не действуют в периоде "
            f"{period}). Добавьте строки категорий (образец — rules/defaults/welfare_categories.csv) "
            "или исправьте категорию в registers/benefits.csv.")
    # Only the beneficiaries' accounts: a register of 1 000 000 accounts has a fraction of them.
    mine = placed.select("account_id").unique()
    charges, recalcs, balances, debts = (
        tables[n].join(mine, on="account_id", how="semi")
        for n in ("charges", "recalculations", "service_balances", "debts"))
    svc = services.select("service_id", pl.col("name").alias("service_name"), "unit",
                          pl.col("kind").alias("service_kind"))
    # --- per account and service: the period's figures
    line_base = amount_without_coefficient()
    lines = charges.sort("account_id", "service_id", "line_to", "line_from").group_by(
        "account_id", "service_id", maintain_order=True).agg(
        pl.col("amount_kop").sum().alias("charged_kop"),
        line_base.sum().alias("base_kop"),
        pl.col("volume_micro").sum().alias("volume_micro"),
        pl.col("volume_micro").is_null().all().alias("_no_volume"),
        pl.col("price_kop").last().alias("price_kop"),
        pl.col("norm_micro").drop_nulls().last().alias("_line_norm"),
        pl.col("area_centi").drop_nulls().last().alias("_line_area"),
    ).with_columns(pl.when(pl.col("_no_volume")).then(None).otherwise(pl.col("volume_micro"))
                   .alias("volume_micro")).drop("_no_volume")
    recalc = recalcs.group_by("account_id", "service_id").agg(
        pl.col("amount_kop").sum().alias("recalculated_kop"))
    paid = balances.group_by("account_id", "service_id").agg(pl.col("paid_kop").sum())
    overdue = debts.filter(pl.col("charge_period") < str(period)).group_by("account_id", "service_id").agg(
        pl.col("outstanding_kop").sum().alias("debt_kop"))
    keys = pl.concat([f.select("account_id", "service_id") for f in (lines, recalc, paid, overdue)]).unique()
    figures = (keys.join(lines, on=["account_id", "service_id"], how="left")
               .join(recalc, on=["account_id", "service_id"], how="left")
               .join(paid, on=["account_id", "service_id"], how="left")
               .join(overdue, on=["account_id", "service_id"], how="left")
               .join(svc, on="service_id", how="left")
               .with_columns(pl.col(c).fill_null(0) for c in ("charged_kop", "base_kop", "recalculated_kop",
                                                               "paid_kop", "debt_kop")))
    rule_norms = norms.filter(pl.col("from") <= period.last).sort("from").group_by(
        "service_id", maintain_order=True).last().select(
        "service_id", (pl.col("value") * 1_000_000).cast(pl.Int64).alias("_rule_norm"))
    figures = figures.join(rule_norms, on="service_id", how="left").with_columns(
        pl.coalesce("_line_norm", "_rule_norm").alias("norm_micro")).drop("_line_norm", "_rule_norm")
    # Sewerage's norm: the account's resources in the same unit (cold + hot water).
    sewer = figures.filter(pl.col("service_kind") == "metered").join(
        svc.filter(pl.col("service_kind") == "sewerage").select("unit", pl.col("service_id").alias("_sewer")),
        on="unit").group_by("account_id", "_sewer").agg(pl.col("norm_micro").sum().alias("_sewer_norm"))
    figures = figures.join(sewer, left_on=["account_id", "service_id"], right_on=["account_id", "_sewer"],
                           how="left").with_columns(
        pl.when(pl.col("service_kind") == "sewerage").then(pl.coalesce("norm_micro", "_sewer_norm"))
        .otherwise(pl.col("norm_micro")).alias("norm_micro")).drop("_sewer_norm")
    # --- the household and its home
    acc = regs["accounts"]
    agreement = (pl.col("repayment_agreement_until") >= period.first).fill_null(False) \
        if "repayment_agreement_until" in acc.columns else pl.lit(False)
    prem = regs["premises"]
    home = (acc.select("account_id", "premise_id", "owners", "share", agreement.alias("agreement"))
            .join(prem.select("premise_id", "building_id", "number", "kind", "total_area",
                              (pl.col("living_area") if "living_area" in prem.columns
                               else pl.lit(None, pl.Decimal(18, 2))).alias("living_area")), on="premise_id")
            .join(regs["buildings"].select("building_id", pl.col("address").alias("b_address")),
                  on="building_id")
            .join(_registered(period, regs["residents"]), on="account_id", how="left")
            .select("account_id", "agreement",
                    (pl.col("b_address") + pl.when(pl.col("kind") == "residential").then(pl.lit(", кв. "))
                     .otherwise(pl.lit(", пом. ")) + pl.col("number")).alias("address"),
                    _centi("total_area").alias("total_area_centi"),
                    _centi("living_area").alias("living_area_centi"),
                    div_half_up(_centi("total_area") * (pl.col("share") * 10_000).cast(pl.Int64), 10_000)
                    .alias("_own_area"),
                    pl.col("registered").fill_null(0),
                    pl.when(pl.col("registered").fill_null(0) > 0).then(pl.col("registered"))
                    .otherwise(pl.max_horizontal(pl.col("owners"), pl.lit(1))).cast(pl.Int64)
                    .alias("_persons")))
    entitled = placed.group_by("account_id", "category").agg(pl.len().cast(pl.Int64).alias("entitled"))
    # --- beneficiary × service × its rule (a service's own row wins over «*»)
    rows = placed.join(home, on="account_id").join(entitled, on=["account_id", "category"]).join(
        figures, on="account_id")
    rule_cols = ["title", "percent_bp", "scope", "area_1_centi", "area_2_centi", "area_per_person_centi",
                 "within_norm"]
    own = categories.filter(pl.col("service_id") != WELFARE_ANY_SERVICE).select(
        "category", "service_id", *rule_cols)
    anyr = categories.filter(pl.col("service_id") == WELFARE_ANY_SERVICE).select(
        "category", *[pl.col(c).alias(f"_any_{c}") for c in rule_cols])
    rows = rows.join(own, on=["category", "service_id"], how="left").join(anyr, on="category", how="left")
    has_own = pl.col("percent_bp").is_not_null()
    rows = rows.with_columns(
        pl.when(has_own).then(pl.col(c)).otherwise(pl.col(f"_any_{c}")).alias(c) for c in rule_cols
    ).drop([f"_any_{c}" for c in rule_cols]).filter(pl.col("percent_bp").fill_null(0) > 0)
    # --- within the norm
    persons = pl.col("_persons")
    area = pl.coalesce("_line_area", "_own_area")
    area_norm = pl.when(persons <= 1).then(pl.col("area_1_centi")) \
        .when(persons == 2).then(pl.col("area_2_centi")) \
        .otherwise(pl.col("area_per_person_centi") * persons)
    by_area = pl.col("service_kind").is_in(["area", "heating"]) & pl.col("_area_norm").is_not_null() \
        & (area > 0)
    capped_area = pl.min_horizontal(area, pl.col("_area_norm"))
    by_volume = pl.col("service_kind").is_in(["metered", "sewerage"]) & pl.col("within_norm") \
        & pl.col("norm_micro").is_not_null() & pl.col("volume_micro").is_not_null()
    norm_volume = pl.col("norm_micro") * persons
    rows = rows.with_columns(area_norm.alias("_area_norm")).with_columns(
        pl.when(by_area).then(pl.col("_area_norm")).otherwise(None).alias("area_norm_centi"),
        pl.when(by_volume).then(pl.min_horizontal(pl.col("volume_micro"), norm_volume))
        .when(by_area & pl.col("volume_micro").is_not_null())
        .then(div_half_up(pl.col("volume_micro") * capped_area, area))
        .otherwise(pl.col("volume_micro")).alias("in_norm_micro"),
    ).with_columns(
        pl.when(by_volume & (pl.col("volume_micro") > 0))
        .then(div_half_up(pl.col("base_kop") * pl.col("in_norm_micro"), pl.col("volume_micro")))
        .when(by_volume).then(pl.lit(0, pl.Int64))
        .when(by_area).then(div_half_up(pl.col("base_kop") * capped_area, area))
        .otherwise(pl.col("base_kop")).alias("charged_in_norm_kop"),
    ).with_columns(
        div_half_up(pl.col("charged_in_norm_kop") * pl.col("percent_bp"),
                    pl.lit(10_000) * pl.when(pl.col("scope") == "household").then(pl.col("entitled"))
                    .otherwise(pl.max_horizontal(pl.col("registered"), pl.lit(1)))).alias("compensation_kop"),
        pl.lit(str(period)).alias("period"),
        pl.col("title").fill_null(pl.col("category")).alias("category_title"),
        pl.coalesce("service_name", "service_id").alias("service_name"),
    )
    return rows.sort("account_id", "person_id", "category", "service_id").select(
        "period", "person_id", "full_name", "birth_date", "category", "category_title", "document",
        "account_id", "address", "total_area_centi", "living_area_centi", "registered", "entitled",
        "service_id", "service_name", "unit", "price_kop", "norm_micro", "volume_micro", "in_norm_micro",
        "area_norm_centi",
        *[f"{m}_kop" for m in MONEY], "agreement", "percent_bp")


def _footer(rows: pl.DataFrame) -> dict[str, int]:
    return {m: int(rows[f"{m}_kop"].sum() or 0) for m in MONEY}


def _decimal_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """Integers to exact Decimals (kopecks → rubles, micro → units), a footer row appended."""
    def dec(col: str) -> pl.Expr:
        scale = _SCALES[col]
        return (pl.col(_INT_SOURCE[col]).cast(pl.Decimal(38, scale)) / 10 ** scale).cast(
            pl.Decimal(18, scale)).alias(col)

    body = rows.with_columns(pl.col("agreement").replace_strict({True: "да", False: "нет"},
                                                                return_dtype=pl.String))
    body = body.with_columns(dec(c) for c in _INT_SOURCE).select(list(TITLES))
    sums = _footer(rows)
    footer = pl.DataFrame({"period": [FOOTER], "person_id": [str(rows.height)],
                           **{f"{m}_kop": [sums[m]] for m in MONEY}},
                          schema={"period": pl.String, "person_id": pl.String,
                                  **{f"{m}_kop": pl.Int64 for m in MONEY}})
    footer = footer.with_columns(dec(m) for m in MONEY).select("period", "person_id", *MONEY)
    return pl.concat([body, footer], how="diagonal_relaxed").select(list(TITLES))


def welfare_csv(rows: pl.DataFrame, settings: ExportWelfare) -> tuple[bytes, int]:
    """The CSV bytes and the count of letters the encoding lacks (written as ``?``)."""
    frame = _decimal_frame(rows)
    texts = [c for c, t in frame.schema.items() if t == pl.String]
    cleaned = frame.with_columns(pl.col(c).str.replace_all(r"[\r\n\t]+", " ") for c in texts)
    if settings.text_limit:
        cleaned = cleaned.with_columns(pl.col(c).str.slice(0, settings.text_limit) for c in texts)
    decimals = [c for c, t in cleaned.schema.items() if isinstance(t, pl.Decimal)]
    out = cleaned.with_columns(pl.col(c).cast(pl.String) for c in decimals)
    if settings.decimal_comma:
        out = out.with_columns(pl.col(c).str.replace(".", ",", literal=True) for c in decimals)
    out = out.with_columns(pl.col("birth_date").dt.strftime("%d.%m.%Y"))
    # cp1251 has no superscripts: «м²», «м³» (titles, units) are written «м2», «м3».
    lacking = {chr(c): v for c, v in SUPERSCRIPTS.items() if not _encodable(chr(c), settings.encoding)}
    titles = dict(TITLES)
    for sup, plain in lacking.items():
        out = out.with_columns(pl.col(c).str.replace_all(sup, plain, literal=True) for c in texts)
        titles = {k: v.replace(sup, plain) for k, v in titles.items()}
    text = out.rename(titles).write_csv(separator=settings.separator, line_terminator="\r\n")
    data = text.encode(settings.encoding, errors="replace")
    # Each letter the encoding lacks became one «?» (the codecs of the settings are single-byte
    # or UTF; a multi-byte replacement would only be counted as more).
    return data, data.count(b"?") - text.count("?")


def _encodable(ch: str, encoding: str) -> bool:
    try:
        ch.encode(encoding)
        return True
    except UnicodeEncodeError:
        return False


def welfare_xlsx(rows: pl.DataFrame, created: datetime) -> bytes:
    """The same rows as a workbook stamped ``created`` (numbers stay numbers)."""
    return frame_xlsx_bytes(_decimal_frame(rows), created, sheet="Реестр", titles=TITLES)


def build_files(ws: Workspace, period: str) -> list[ExportFile]:
    """The welfare register of the sealed ``period``: its CSV and XLSX."""
    folder = ws.period_dir(period)
    manifest = sealed_manifest(ws, period)
    settings = load_section(ws.settings_path, ExportWelfare)
    p = Period.parse(period)
    regs = load_store(ws, manifest["store_version"],
                      names=("accounts", "premises", "buildings", "residents", "benefits"))
    people = beneficiaries_in(p, regs["benefits"], regs["residents"])
    tables = {name: read_internal(folder, name)
              for name in ("charges", "recalculations", "service_balances", "debts")}
    rows = welfare_rows(p, people, welfare_categories_on(welfare_categories(ws.rules), p.last), regs, tables,
                        read_rule_table(ws.rules, "services"), read_rule_table(ws.rules, "norms"))
    csv_bytes, lost = welfare_csv(rows, settings)
    created = datetime(p.last.year, p.last.month, p.last.day)
    sums = _footer(rows)
    stem = settings.name.replace("{period}", period.replace("-", ""))
    extra: dict[str, Any] = {"beneficiaries": int(rows["person_id"].n_unique()), "sums_kop": sums,
                             "unplaced_beneficiaries": int(people["account_id"].null_count())}
    if lost:
        extra["replaced_characters"] = lost
    return [ExportFile(f"{stem}.csv", csv_bytes, rows=rows.height, total_kop=sums["charged"],
                       recipient=settings.recipient, extra=extra),
            ExportFile(f"{stem}.xlsx", welfare_xlsx(rows, created), rows=rows.height,
                       total_kop=sums["charged"], recipient=settings.recipient,
                       extra={**extra, SAME_ROWS_AS: f"{stem}.csv"})]
