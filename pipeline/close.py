"""Month close (закрытие периода): inputs → pure stages → sealed period directory.

``load_inputs`` reads everything a close needs (I/O), ``compute`` runs the pure
stages, ``to_outputs`` converts kopecks to the contract's DECIMAL(18,2)
tables, and ``seal`` writes them with the receipts into
``periods/YYYY-MM/`` through one atomic directory rename, with a manifest of
row counts and checksums. A sealed period is never rewritten.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.allocate import balances
from pipeline.allocate.ledger import ITEM_SCHEMA, apply_period
from pipeline.calc.charges import HeatingPolicy, charge_lines, heating_volumes
from pipeline.calc.due import due_date
from pipeline.calc.quality import quality_reductions
from pipeline.calc.readings import consumption, norm_months
from pipeline.dates import Period
from pipeline.ingest.payments import load_bank_readings, load_payments, payments_path, read_payments
from pipeline.ingest.registers import current_version, load_store
from pipeline.money import kopecks_to_decimal_expr
from pipeline.penalties.monthly import PENALTY_SERVICE
from pipeline.verify import check_sealed, manifest_bytes
from pipeline.workspace import (
    BillingError,
    Workspace,
    atomic_write_bytes,
    sha256_file,
    staging_dir,
    write_parquet_atomic,
)
from rules import Rules, load_rules, read_rule_table

OUTPUT_TABLES = ("charges", "recalculations", "allocations", "penalties", "balances",
                 "service_balances", "debts", "meter_volumes", "reading_issues", "settlements")


#: What later closes need of a settlement to post its parts.
SETTLED_COLUMNS = ["account_id", "service_id", "supplier_id", "year", "amount_kop", "parts", "first_period",
                   "carry_over"]


@dataclass
class SettleInputs:
    """What the yearly КР на СОИ settlement made at this close reads."""

    year: int
    months: list[str]
    lines: pl.DataFrame  # account_id, service_id, volume_micro of the year's sealed months


@dataclass
class CloseInputs:
    """Everything one close reads, loaded once."""

    period: Period
    regs: dict[str, pl.DataFrame]
    rules: Rules
    window_end_day: int
    payments: pl.DataFrame
    earlier_allocations: pl.DataFrame | None
    opening: pl.DataFrame
    open_items: pl.DataFrame
    averaged_before: pl.DataFrame
    due_date: date | None
    store_version: str | None
    payments_sha256: str | None
    spike_multiple: int  # settings.toml [readings]; 0 — no check
    heating: HeatingPolicy = field(default_factory=HeatingPolicy)
    rules_sha256: str | None = None
    charge_rules_sha256: str | None = None
    rejected_readings: pl.DataFrame | None = None
    past_periods: list[Any] = field(default_factory=list)
    penalty_policy: Any = None
    penalty_charges: pl.DataFrame | None = None
    penalty_allocations: pl.DataFrame | None = None
    penalty_previous: pl.DataFrame | None = None
    settlements: pl.DataFrame | None = None
    settlement_posted: pl.DataFrame | None = None
    settle: SettleInputs | None = None


@dataclass
class CloseResult:
    """Internal frames of a close (kopecks, micro-units) and their totals."""

    period: Period
    lines: pl.DataFrame
    meter_volumes: pl.DataFrame
    reading_issues: pl.DataFrame
    allocations: pl.DataFrame
    balances: pl.DataFrame
    service_balances: pl.DataFrame
    debts: pl.DataFrame
    due_date: date | None
    totals: dict[str, int] = field(default_factory=dict)
    penalties: pl.DataFrame | None = None
    recalculations: pl.DataFrame | None = None
    settlements: pl.DataFrame | None = None


def check_can_close(ws: Workspace, period: Period) -> None:
    """Refuse a sealed period, a period before a sealed one, or a gap after the last."""
    sealed = ws.sealed_periods()
    if str(period) in sealed:
        raise BillingError(
            f"Период {period} уже закрыт и не может быть пересчитан: исправления попадут "
            f"в следующий период как перерасчёт."
        )
    if sealed:
        last = Period.parse(sealed[-1])
        if period < last:
            raise BillingError(
                f"Период {period} раньше последнего закрытого ({last}): закрытые периоды "
                "не переписываются."
            )
        if period != last.shift(1):
            raise BillingError(f"Сначала закройте период {last.shift(1)} (последний закрытый — {last}).")


def _with_bank_readings(regs: dict[str, pl.DataFrame], bank: pl.DataFrame) -> pl.DataFrame:
    """Register readings plus those that came inside bank registers.

    A bank reading names the meter by serial; it is matched to a meter of the
    payer's premise. The register wins on the same meter and day.
    """
    readings = regs["readings"]
    if not bank.height:
        return readings
    meters = regs["meters"].filter(pl.col("premise_id").is_not_null()).select(
        "meter_id", "premise_id", pl.col("serial").alias("meter_serial"))
    accounts = regs["accounts"].select("account_id", "premise_id")
    matched = bank.join(accounts, on="account_id").join(meters, on=["premise_id", "meter_serial"])
    extra = matched.select(
        "meter_id", "read_on", pl.col("value").cast(readings.schema["value"]),
        pl.lit("bank").alias("source"), pl.lit(None, pl.Int64).alias("source_row"),
        pl.lit(False).alias("confirmed"),
    )
    both = pl.concat([readings, extra.select(readings.columns).cast(readings.schema)])
    return both.unique(["meter_id", "read_on"], keep="first", maintain_order=True)


def _read_sealed(ws: Workspace, table: str, columns: list[str] | None) -> pl.DataFrame | None:
    files = [ws.period_dir(p) / f"{table}.parquet" for p in ws.sealed_periods()]
    files = [f for f in files if f.is_file()]
    if not files:
        return None
    return pl.concat([pl.read_parquet(f, columns=columns) for f in files], how="vertical_relaxed")


def _kop(col: str, alias: str | None = None) -> pl.Expr:
    return (pl.col(col) * 100).cast(pl.Int64).alias(alias or f"{col}_kop")


def load_inputs(ws: Workspace, period: Period) -> CloseInputs:
    """Everything the close of ``period`` reads, from one snapshot of each input.

    The registers come from one store version (read once and named in the
    manifest), the rule tables from one copy of ``rules/`` taken at the start
    (parsed and hashed from the same bytes), the payments from one read of the
    store's file. The close holds the workspace lock besides, so no billing
    command changes them meanwhile.
    """
    ws.require()
    check_can_close(ws, period)
    check_sealed(ws)  # every sealed table read below matches its period's manifest
    with _rules_snapshot(ws.rules) as rules_dir:
        return _load_inputs(ws, period, rules_dir)


@contextmanager
def _rules_snapshot(rules_dir: Path) -> Iterator[Path]:
    """A private copy of the rule tables and policy files, gone after the block."""
    with tempfile.TemporaryDirectory(prefix="billing-rules-") as tmp:
        for path in sorted(rules_dir.iterdir()):
            if path.is_file():
                (Path(tmp) / path.name).write_bytes(path.read_bytes())
        yield Path(tmp)


def _load_inputs(ws: Workspace, period: Period, rules_dir: Path) -> CloseInputs:
    version = current_version(ws)
    regs = load_store(ws, version)
    rules = load_rules(rules_dir)
    settings = ws.typed_settings()
    window_end = settings.readings.window_end_day
    spike_multiple = settings.readings.spike_multiple
    settle_norm = settings.readings.settle_norm_months
    heating = HeatingPolicy(settings.heating.payment, settings.heating.season_months,
                            settings.heating.true_up_month)

    sealed = ws.sealed_periods()
    opening = pl.DataFrame(schema={"account_id": pl.String, "supplier_id": pl.String,
                                   "opening_kop": pl.Int64})
    open_items = pl.DataFrame(schema=ITEM_SCHEMA)
    if sealed:
        prev = ws.period_dir(sealed[-1])
        opening = pl.read_parquet(prev / "balances.parquet").select(
            "account_id", "supplier_id", _kop("closing", "opening_kop")
        )
        open_items = pl.read_parquet(prev / "debts.parquet").select(
            "account_id", "service_id", "supplier_id", "charge_period",
            _kop("outstanding", "outstanding_kop"),
        )

    applied = _read_sealed(ws, "allocations", ["payment_id", "agent", "kind"])
    payments, payments_hash = _payments_snapshot(ws)
    payments = payments.filter(pl.col("paid_on") <= pl.lit(period.last))
    earlier_allocations = None
    if applied is not None:
        done = applied.filter(pl.col("kind").is_in(["payment", "advance", "refund"]))
        payments = payments.join(done.select("payment_id", "agent").unique(),
                                 on=["payment_id", "agent"], how="anti")
        refunded = payments.filter(pl.col("refund_of").is_not_null()).select(
            "agent", pl.col("refund_of").alias("payment_id")).unique()
        if refunded.height:
            history = _read_sealed(ws, "allocations", None)
            assert history is not None
            earlier_allocations = history.join(refunded, on=["agent", "payment_id"], how="semi").select(
                "payment_id", "agent", "account_id", "service_id", "supplier_id", "charge_period",
                "paid_on", "kind", _kop("amount", "amount_kop"))
    payments = payments.select("payment_id", "agent", "account_id", "paid_on", "period", "refund_of",
                               _kop("amount", "amount_kop"))
    store_regs = regs
    regs = {**regs, "readings": _with_bank_readings(regs, load_bank_readings(ws))}

    averaged = _read_sealed(ws, "meter_volumes", ["meter_id", "period", "method", "volume"])
    if averaged is None:
        averaged_before = pl.DataFrame(schema={"meter_id": pl.String, "period_index": pl.Int32,
                                               "method": pl.String, "volume_micro": pl.Int64})
    else:
        # Volumes a reading settles (п.61): averages, norm months when so set, and metered
        # months (their reading ends a span; removed from the register, it no longer does).
        settled = ["meter", "average", "norm"] if settle_norm else ["meter", "average"]
        averaged_before = averaged.filter(pl.col("method").is_in(settled)).select(
            "meter_id",
            (pl.col("period").str.slice(0, 4).cast(pl.Int32) * 12
             + pl.col("period").str.slice(5, 2).cast(pl.Int32) - 1).alias("period_index"),
            "method",
            (pl.col("volume") * 1_000_000).cast(pl.Int64).alias("volume_micro"),
        )
    due_rules = read_rule_table(rules_dir, "due_dates")
    penalty = _penalty_inputs(ws, open_items, rules_dir)
    rules_hash = rules_sha256(rules_dir)
    horizon = settings.recalculation.horizon_months
    charge_rules_hash = rules_sha256(rules_dir, CHARGE_RULES)
    past = _past_periods(ws, period, horizon, version, charge_rules_hash, store_regs, heating,
                         rules.services.filter(pl.col("kind") == "heating")["service_id"].to_list(),
                         _awaiting_reading(regs, averaged_before, period, window_end))
    return CloseInputs(
        period=period, regs=regs, rules=rules, window_end_day=window_end, payments=payments,
        spike_multiple=spike_multiple, heating=heating,
        earlier_allocations=earlier_allocations, opening=opening, open_items=open_items,
        averaged_before=averaged_before,
        rejected_readings=_read_sealed(ws, "reading_issues", ["meter_id", "read_on"]),
        due_date=due_date(due_rules, period),
        store_version=version,
        payments_sha256=payments_hash,
        rules_sha256=rules_hash, charge_rules_sha256=charge_rules_hash, past_periods=past,
        **_settlement_inputs(ws, period, rules),
        **penalty,
    )


#: Rule tables a period's charges depend on; a change to any other (key rates, penalty
#: schemes, due dates, settlements) never makes the past's charges differ.
CHARGE_RULES = ("services.csv", "tariffs.csv", "norms.csv", "increasing_coefficients.csv",
                "absence_rules.csv", "quality_rules.csv", "failed_meter_rules.csv",
                "electricity_norms.csv")


def _payments_snapshot(ws: Workspace) -> tuple[pl.DataFrame, str | None]:
    """The stored payments and the SHA-256 of the very bytes they were read from."""
    import hashlib
    import io

    path = payments_path(ws)
    if not path.is_file():
        return load_payments(ws), None
    data = path.read_bytes()
    return read_payments(io.BytesIO(data)), hashlib.sha256(data).hexdigest()


def rules_sha256(rules_dir: Path, names: tuple[str, ...] | None = None) -> str:
    """One hash over the rule tables and policy files in ``rules_dir`` (or only ``names``)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(rules_dir.iterdir()):
        if path.suffix in (".csv", ".toml") and (names is None or path.name in names):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _internal_lines(charges: pl.DataFrame) -> pl.DataFrame:
    """A sealed charges table back in the stage's integer columns."""
    def scaled(col: str, factor: int, alias: str) -> pl.Expr:
        if col not in charges.columns:
            return pl.lit(None, pl.Int64).alias(alias)
        return (pl.col(col) * factor).cast(pl.Int64).alias(alias)

    return charges.select(
        "account_id", "service_id", "supplier_id", "method",
        scaled("amount", 100, "amount_kop"), scaled("tariff", 100, "price_kop"),
        scaled("volume", 1_000_000, "volume_micro"),
        scaled("coefficient", 1000, "coef_milli"), scaled("norm", 1_000_000, "norm_micro"),
        scaled("area", 100, "area_centi"), scaled("share", 10_000, "share_e4"),
        pl.col("person_days") if "person_days" in charges.columns else pl.lit(None, pl.Int64)
        .alias("person_days"),
        pl.col("absent_days") if "absent_days" in charges.columns else pl.lit(None, pl.Int64)
        .alias("absent_days"),
    )


def _past_periods(ws: Workspace, period: Period, horizon: int, store_version: str | None,
                  rules_hash: str, regs: dict[str, pl.DataFrame], heating: HeatingPolicy,
                  heating_services: list[str] | None = None,
                  awaiting: pl.DataFrame | None = None) -> list[Any]:
    """Sealed periods to recompute, each with the accounts to recompute in it.

    When the registers changed since the last close, the accounts whose inputs
    changed (:func:`pipeline.calc.recalc.changed_accounts` against the last
    close's snapshot); when a rule table of :data:`CHARGE_RULES` changed, every account. In the month of
    the yearly heating correction, also every account charged for heating in a
    month of the year being settled in a house with a building heat meter.
    ``awaiting`` (account_id, period) adds the months a reading of this period may
    settle (:func:`_awaiting_reading`; a bank register's reading changes no register).
    Only the lines of the accounts to recompute are read.
    """
    from pipeline.calc.recalc import PastPeriod, changed_accounts
    from pipeline.ingest.registers import load_store

    sealed = ws.sealed_periods()
    if not sealed:
        return []
    last = json.loads((ws.period_dir(sealed[-1]) / "manifest.json").read_text())
    changed: pl.DataFrame | None = pl.DataFrame(schema={"account_id": pl.String})
    if last.get("charge_rules_sha256") != rules_hash:
        changed = None
    elif last.get("store_version") != store_version:
        before = last.get("store_version")
        if before and (ws.store / "registers" / before).is_dir():
            changed = changed_accounts(load_store(ws, before), regs)
        else:
            changed = None
    true_up_year = period.year - 1 if (heating.payment == "even"
                                       and period.month == heating.true_up_month) else None
    if awaiting is None:
        awaiting = pl.DataFrame(schema={"account_id": pl.String, "period": pl.String})
    if changed is not None and not changed.height and true_up_year is None and not awaiting.height:
        return []
    first = period.shift(-horizon)
    recalcs = _read_sealed(ws, "recalculations", None)
    if recalcs is not None and "kind" in recalcs.columns:
        # Spread yearly settlements are current charges, not corrections of their origin.
        recalcs = recalcs.filter(pl.col("kind") != "settlement")
    heat_metered = regs["accounts"].select("account_id", "premise_id").join(
        regs["premises"].select("premise_id", "building_id"), on="premise_id").join(
        regs["meters"].filter(pl.col("building_id").is_not_null()
                              & pl.col("service_id").is_in(heating_services or ["heating"]))
        .select("building_id").unique(), on="building_id", how="semi").select("account_id")
    past = []
    for q in sealed:
        origin = Period.parse(q)
        if origin < first:
            continue
        folder = ws.period_dir(q)
        charges = pl.scan_parquet(folder / "charges.parquet")
        # (accounts, services) to recompute: what changed, in full; the heating
        # correction, heating only (a twelfth of the work for the other services).
        jobs: list[tuple[pl.DataFrame | None, list[str] | None]] = []
        whole = changed
        settling = awaiting.filter(pl.col("period") == q).select("account_id")
        if whole is not None and settling.height:
            whole = pl.concat([whole, settling]).unique().sort("account_id")
        if whole is None or whole.height:
            jobs.append((whole, None))
        if origin.year == true_up_year and whole is not None:
            heated = charges.filter(pl.col("method").is_in(["heating", "heating_average"])).select(
                "account_id").unique().join(heat_metered.lazy(), on="account_id", how="semi").join(
                whole.lazy(), on="account_id", how="anti").collect()
            if heated.height:
                jobs.append((heated, heating_services or ["heating"]))
        if not jobs:
            continue
        # The volumes the period charged by meter or average; its norm rows are a record,
        # used only where a reading settles that month (recalc._period_volumes).
        volumes = pl.read_parquet(folder / "meter_volumes.parquet").select(
            "meter_id", "premise_id", "service_id", "method",
            (pl.col("volume") * 1_000_000).cast(pl.Int64).alias("volume_micro"))
        for accounts, services in jobs:
            mine = charges if accounts is None else charges.join(accounts.lazy(), on="account_id", how="semi")
            lines = _internal_lines(mine.collect())
            done = (recalcs.filter(pl.col("origin_period") == q).select(
                "account_id", "service_id", "supplier_id", _kop("amount", "amount_kop"))
                if recalcs is not None and recalcs.height else
                pl.DataFrame(schema={"account_id": pl.String, "service_id": pl.String,
                                     "supplier_id": pl.String, "amount_kop": pl.Int64}))
            past.append(PastPeriod(origin, lines, done, volumes, accounts, services))
    return past


def _awaiting_reading(regs: dict[str, pl.DataFrame], averaged_before: pl.DataFrame, period: Period,
                      window_end_day: int) -> pl.DataFrame:
    """Accounts and sealed months a reading of ``period`` may settle (п.61): account_id, period.

    The months charged by average or norm since the meter's last metered month, of
    the meters with a reading counting for ``period`` (register or bank). A reading
    that turns out unusable settles nothing: those months then recompute to zero.
    """
    from pipeline.calc.readings import reading_period_index

    empty = pl.DataFrame(schema={"account_id": pl.String, "period": pl.String})
    if not averaged_before.height:
        return empty
    index = period.year * 12 + period.month - 1
    read_now = regs["readings"].filter(
        reading_period_index(pl.col("read_on"), window_end_day) == index).select("meter_id").unique()
    history = averaged_before.join(read_now, on="meter_id", how="semi")
    if not history.height:
        return empty
    metered = history.filter(pl.col("method") == "meter").group_by("meter_id").agg(
        pl.col("period_index").max().alias("_last"))
    months = history.filter(pl.col("method") != "meter").join(metered, on="meter_id", how="left").filter(
        pl.col("_last").is_null() | (pl.col("period_index") > pl.col("_last")))
    premises = regs["meters"].filter(pl.col("premise_id").is_not_null()).select("meter_id", "premise_id")
    return months.join(premises, on="meter_id").join(
        regs["accounts"].select("account_id", "premise_id"), on="premise_id").select(
        "account_id",
        pl.format("{}-{}", (pl.col("period_index") // 12).cast(pl.String),
                  (pl.col("period_index") % 12 + 1).cast(pl.String).str.zfill(2)).alias("period"),
    ).unique()


def _settlement_inputs(ws: Workspace, period: Period, rules: Rules) -> dict[str, Any]:
    """Settlements made so far, their parts posted, and the year to settle now (if any)."""
    from pipeline.calc.common_property import SETTLEMENT_SCHEMA, settlement_rule, settles_now

    made = _read_sealed(ws, "settlements", None)
    settlements = pl.DataFrame(schema=SETTLEMENT_SCHEMA) if made is None else made.select(
        "account_id", "service_id", "supplier_id", "building_id", pl.col("year").cast(pl.Int32),
        _kop("amount", "amount_kop"), pl.col("parts").cast(pl.Int32), "first_period", "carry_over")
    recalcs = _read_sealed(ws, "recalculations", None)
    posted = None
    if recalcs is not None and "kind" in recalcs.columns:
        posted = recalcs.filter(pl.col("kind") == "settlement").group_by(
            "account_id", "service_id", "supplier_id", pl.col("settles_year").cast(pl.Int32).alias("year")
        ).agg(_kop("amount", "amount_kop").sum())
    year = settles_now(rules, period)
    settle = None
    if year is not None and not settlements.filter(pl.col("year") == year).height:
        rule_from: date = rules.soi_settlement["from"].min()  # type: ignore[assignment]
        months = [q for q in ws.sealed_periods() if Period.parse(q).year == year
                  and Period.parse(q).last >= rule_from]
        resources = rules.services.filter(pl.col("settled_by").is_not_null())
        wanted = [*resources["service_id"], *resources["settled_by"]]
        if months and settlement_rule(rules, year) is not None:
            lines = pl.concat([
                pl.scan_parquet(ws.period_dir(q) / "charges.parquet").filter(
                    pl.col("service_id").is_in(wanted)).select(
                    "account_id", "service_id",
                    (pl.col("volume") * 1_000_000).cast(pl.Int64).alias("volume_micro")).collect()
                for q in months])
            settle = SettleInputs(year, months, lines)
    return {"settlements": settlements, "settlement_posted": posted, "settle": settle}


def _penalty_inputs(ws: Workspace, open_items: pl.DataFrame, rules_dir: Path) -> dict[str, Any]:
    """History of the buckets still open: their charges, payments and last penalty."""
    from pipeline.penalties import load_policy
    from pipeline.penalties.monthly import PENALTY_SERVICE

    open_periods = open_items.filter(
        (pl.col("outstanding_kop") > 0) & pl.col("charge_period").is_not_null()
        & (pl.col("service_id") != PENALTY_SERVICE)
    ).select("account_id", "supplier_id", "charge_period").unique()
    charges, allocations = [], []
    for q in sorted(open_periods["charge_period"].unique().to_list()):
        folder = ws.period_dir(q)
        if not (folder / "charges.parquet").is_file():
            continue
        charges.append(pl.read_parquet(folder / "charges.parquet", columns=[
            "account_id", "service_id", "supplier_id", "amount"]).with_columns(
            pl.lit(q).alias("charge_period")))
    sealed = ws.sealed_periods()
    if sealed and open_periods.height:
        allocations = [pl.scan_parquet([ws.period_dir(p) / "allocations.parquet" for p in sealed])
                       .filter(pl.col("charge_period").is_in(open_periods["charge_period"].unique().implode()))
                       .select("account_id", "supplier_id", "charge_period", "paid_on", "kind", "amount")
                       .collect()]
    recalcs = _read_sealed(ws, "recalculations", None)
    if recalcs is not None and recalcs.height:
        # A bucket's amount is its charge plus the recalculations that came back to it.
        charges.append(recalcs.select("account_id", "service_id", "supplier_id", "amount",
                                      pl.col("origin_period").alias("charge_period")))
    hist_charges = (pl.concat(charges, how="vertical_relaxed").join(
        open_periods, on=["account_id", "supplier_id", "charge_period"], how="semi").select(
        "account_id", "service_id", "supplier_id", "charge_period", _kop("amount", "amount_kop"))
        if charges else None)
    hist_alloc = (pl.concat(allocations).join(open_periods, on=["account_id", "supplier_id", "charge_period"],
                                             how="semi").select(
        "account_id", "supplier_id", "charge_period", "paid_on", "kind", _kop("amount", "amount_kop"))
        if allocations else None)
    previous = None
    if sealed and (ws.period_dir(sealed[-1]) / "penalties.parquet").is_file():
        prev = pl.read_parquet(ws.period_dir(sealed[-1]) / "penalties.parquet")
        if "cumulative" in prev.columns:
            previous = prev.select("account_id", "supplier_id", "charge_period",
                                   _kop("cumulative", "cumulative_kop"))
    return {"penalty_policy": load_policy(rules_dir), "penalty_charges": hist_charges,
            "penalty_allocations": hist_alloc, "penalty_previous": previous}


def compute(inputs: CloseInputs) -> CloseResult:
    """The pure part of a close: readings → charges → allocation → balances."""
    period = inputs.period
    volumes, issues = consumption(
        inputs.regs["meters"], inputs.regs["readings"], period, inputs.window_end_day,
        inputs.averaged_before, inputs.spike_multiple, inputs.rejected_readings,
    )
    meter_info = inputs.regs["meters"].select("meter_id", "service_id", "premise_id")
    meter_volumes = volumes.join(meter_info, on="meter_id", how="left")
    building_volumes = heating_volumes(inputs.regs["meters"], inputs.regs["readings"], period,
                                       inputs.heating, inputs.window_end_day)
    lines = charge_lines(inputs.regs, inputs.rules, period, meter_volumes, inputs.heating,
                         building_volumes)
    unread = norm_months(inputs.regs["meters"], period, volumes, lines, inputs.regs["accounts"])
    meter_volumes = pl.concat([meter_volumes, unread.select(meter_volumes.columns)])
    buildings_of = inputs.regs["accounts"].select("account_id", "premise_id").join(
        inputs.regs["premises"].select("premise_id", "building_id"), on="premise_id").drop("premise_id")
    from pipeline.calc.common_property import settlement_postings
    from pipeline.calc.recalc import RECALC_SCHEMA, recalculate

    settled = _settled_volumes(inputs, volumes)
    settlements = _settle(inputs, lines, buildings_of)
    made = settlements.select(SETTLED_COLUMNS)
    if inputs.settlements is not None:
        made = pl.concat([inputs.settlements.select(SETTLED_COLUMNS), made])
    recalcs = pl.concat([
        quality_reductions(lines, buildings_of, inputs.regs["outages"], inputs.rules.quality_rules,
                           period).cast(RECALC_SCHEMA),
        *[recalculate(past, inputs.regs, inputs.rules, inputs.heating, inputs.window_end_day, period,
                      settled)
          for past in inputs.past_periods],
        settlement_postings(made, inputs.settlement_posted, lines, period).cast(RECALC_SCHEMA),
    ])
    # Recalculations change the open items of their origin period, charges those of this one.
    movements = pl.concat([
        lines.select("account_id", "service_id", "supplier_id", "amount_kop",
                     pl.lit(str(period)).alias("charge_period")),
        recalcs.select("account_id", "service_id", "supplier_id", "amount_kop",
                       pl.col("origin_period").alias("charge_period")),
    ])
    allocations, debts = apply_period(inputs.open_items, movements, inputs.payments, str(period),
                                      inputs.earlier_allocations)
    penalties = _accrue_penalties(inputs, movements, allocations)
    posted = penalties.filter(pl.col("amount_kop") != 0).select(
        "account_id", pl.lit(PENALTY_SERVICE).alias("service_id"), "supplier_id",
        pl.lit(str(period)).alias("charge_period"), "amount_kop")
    # This period's penalty items have this period's key: nothing to merge with.
    debts = pl.concat([debts, posted.rename({"amount_kop": "outstanding_kop"}).select(
        list(ITEM_SCHEMA)).cast(ITEM_SCHEMA)])
    bal = balances(inputs.opening, lines, allocations, penalties=penalties, recalculations=recalcs)
    service_opening = inputs.open_items.lazy().group_by("account_id", "service_id", "supplier_id").agg(
        pl.col("outstanding_kop").sum().alias("opening_kop")).collect()
    service_bal = balances(service_opening, lines, allocations,
                           ("account_id", "service_id", "supplier_id"), penalties=posted,
                           recalculations=recalcs)
    received = allocations.filter(pl.col("kind").is_in(["payment", "advance", "refund"]))
    totals = {
        "charged": int(lines["amount_kop"].sum()),
        "paid": int(inputs.payments["amount_kop"].sum()),
        "allocated": int(received["amount_kop"].sum()),
        "opening": int(bal["opening_kop"].sum()),
        "penalty": int(bal["penalty_kop"].sum()),
        "recalculated": int(bal["recalculated_kop"].sum()),
        "closing": int(bal["closing_kop"].sum()),
    }
    # Money in = money out, checked on every close, not only in tests.
    expected = (totals["opening"] + totals["charged"] + totals["recalculated"] + totals["penalty"]
                - totals["allocated"])
    outstanding = int(debts["outstanding_kop"].sum())
    # Per service, the closing balance is what the open items still hold: one lazy group-by of
    # both (a null key is its own group, as in a join with nulls_equal) instead of a full join.
    svc_keys = ["account_id", "service_id", "supplier_id"]
    off = pl.concat([
        service_bal.lazy().select(*svc_keys, "closing_kop", pl.lit(0, pl.Int64).alias("outstanding_kop")),
        debts.lazy().select(*svc_keys, pl.lit(0, pl.Int64).alias("closing_kop"), "outstanding_kop"),
    ]).group_by(svc_keys).agg(pl.col("closing_kop").sum(), pl.col("outstanding_kop").sum()).filter(
        pl.col("closing_kop") != pl.col("outstanding_kop")).collect()
    if off.height:
        raise BillingError(f"Сальдо по услугам не сходится с задолженностью по периодам: {off.head(3)}")
    if (totals["closing"] != expected or totals["allocated"] != totals["paid"]
            or outstanding != totals["closing"]):
        raise BillingError(
            f"Сальдо не сходится: ожидалось {expected}, получено {totals['closing']} коп. "
            f"(разница {totals['closing'] - expected}); платежи {totals['paid']}, "
            f"распределено {totals['allocated']}; задолженность по периодам {outstanding}"
        )
    return CloseResult(period, lines, meter_volumes, issues, allocations, bal, service_bal, debts,
                       inputs.due_date, totals, penalties, recalcs, settlements)


def _settled_volumes(inputs: CloseInputs, volumes: pl.DataFrame) -> pl.DataFrame | None:
    """Meter volumes of the sealed months recomputed now that readings settle them (п.61).

    Only the meters of the accounts being recomputed; None when no month is.
    """
    from pipeline.calc.readings import settled_volumes

    if not inputs.past_periods:
        return None
    history = inputs.averaged_before
    if all(p.accounts is not None for p in inputs.past_periods):
        accounts = pl.concat([p.accounts for p in inputs.past_periods]).unique()
        premises = inputs.regs["accounts"].join(accounts, on="account_id", how="semi").select("premise_id")
        meters = inputs.regs["meters"].join(premises, on="premise_id", how="semi").select("meter_id")
        history = history.join(meters, on="meter_id", how="semi")
    return settled_volumes(history, inputs.regs["meters"], inputs.regs["readings"], inputs.period,
                           inputs.window_end_day, volumes, inputs.rejected_readings)


def _settle(inputs: CloseInputs, lines: pl.DataFrame, buildings_of: pl.DataFrame) -> pl.DataFrame:
    """The yearly КР на СОИ settlement made at this close (empty in other months)."""
    from pipeline.calc.common_property import SETTLEMENT_SCHEMA, settle_year
    from pipeline.calc.readings import building_span_consumption

    settle = inputs.settle
    if settle is None:
        return pl.DataFrame(schema=SETTLEMENT_SCHEMA)
    first, last = Period.parse(settle.months[0]), Period.parse(settle.months[-1])
    volumes = building_span_consumption(inputs.regs["meters"], inputs.regs["readings"], first, last,
                                        inputs.window_end_day)
    return settle_year(settle.year, inputs.period, settle.lines, volumes, lines, buildings_of,
                       inputs.rules, settle.months)


def _accrue_penalties(inputs: CloseInputs, movements: pl.DataFrame, allocations: pl.DataFrame
                      ) -> pl.DataFrame:
    from pipeline.penalties.monthly import accrue_period

    current = movements.select("account_id", "service_id", "supplier_id", "amount_kop", "charge_period")
    charges = pl.concat([current, inputs.penalty_charges.select(current.columns)]) \
        if inputs.penalty_charges is not None else current
    history = allocations.select("account_id", "supplier_id", "charge_period", "paid_on", "kind",
                                 "amount_kop")
    if inputs.penalty_allocations is not None:
        history = pl.concat([inputs.penalty_allocations.select(history.columns), history])
    previous = inputs.penalty_previous if inputs.penalty_previous is not None else pl.DataFrame(
        schema={"account_id": pl.String, "supplier_id": pl.String, "charge_period": pl.String,
                "cumulative_kop": pl.Int64})
    return accrue_period(inputs.period, charges, history, previous, inputs.rules.services,
                         inputs.penalty_policy)


def to_outputs(result: CloseResult) -> dict[str, pl.DataFrame]:
    """Contract tables (money DECIMAL(18,2) rubles) with a ``period`` column."""
    p = str(result.period)
    period_col = pl.lit(p).alias("period")
    micro = pl.Decimal(18, 6)

    def dec6(col: str, alias: str) -> pl.Expr:
        return (pl.col(col).cast(micro) / 1_000_000).cast(micro).alias(alias)

    charges = result.lines.lazy().with_columns(
        dec6("volume_micro", "volume"),
        (pl.col("price_kop").cast(pl.Decimal(18, 2)) / 100).cast(pl.Decimal(18, 2)).alias("tariff"),
        (pl.col("coef_milli").cast(pl.Decimal(18, 3)) / 1000).cast(pl.Decimal(9, 3))
        .alias("coefficient"),
        *[(pl.col(f"{c}_centi").cast(pl.Decimal(18, 2)) / 100).cast(pl.Decimal(18, 2)).alias(c)
          for c in ("area", "common_area", "building_area")],
        (pl.col("share_e4").cast(pl.Decimal(18, 4)) / 10_000).cast(pl.Decimal(9, 4))
        .alias("share"),
        dec6("norm_micro", "norm"),
        dec6("meter_volume_micro", "meter_volume"),
        kopecks_to_decimal_expr("amount_kop").alias("amount"),
    ).select(
        period_col, "account_id", "service_id", "supplier_id", "method", "volume", "tariff",
        "amount", "coefficient", "line_from", "line_to", "days", "days_in_month",
        "person_days", "absent_days", "persons_basis", "area", "common_area", "building_area", "share",
        "norm", "meter_volume",
        "tariff_row", "norm_row", "coef_row", "norm_table", "norm_rooms", "norm_persons", "norm_stove",
    ).collect()
    allocations = result.allocations.with_columns(
        kopecks_to_decimal_expr("amount_kop").alias("amount")
    ).select(period_col, "payment_id", "agent", "account_id", "service_id", "supplier_id",
             "charge_period", "amount", "paid_on", "kind")
    # Sorted so that the same inputs give byte-identical files (the ledger's group-bys
    # run in parallel and do not keep an order). Lazy: the default (streaming) engine sorts
    # these millions of string-keyed rows with half the CPU of an eager sort.
    debts = result.debts.lazy().sort("account_id", "service_id", "supplier_id", "charge_period",
                                     nulls_last=True).with_columns(
        kopecks_to_decimal_expr("outstanding_kop").alias("outstanding")
    ).select(period_col, "account_id", "service_id", "supplier_id", "charge_period", "outstanding"
             ).collect()
    money = ["opening", "charged", "recalculated", "paid", "penalty", "closing"]
    bal = result.balances.with_columns(
        kopecks_to_decimal_expr(f"{m}_kop").alias(m) for m in money
    ).select(period_col, "account_id", "supplier_id", *money)
    service_bal = result.service_balances.lazy().sort("account_id", "service_id", "supplier_id",
                                                      nulls_last=True).with_columns(
        kopecks_to_decimal_expr(f"{m}_kop").alias(m) for m in money
    ).select(period_col, "account_id", "service_id", "supplier_id", *money).collect()
    mv = result.meter_volumes.with_columns(
        dec6("volume_micro", "volume"), dec6("prev_value_micro", "prev_value"),
        dec6("curr_value_micro", "curr_value"),
    ).select(period_col, "meter_id", "service_id", "premise_id", "method", "volume",
             "prev_read_on", "prev_value", "curr_read_on", "curr_value")
    assert result.recalculations is not None
    recalcs = result.recalculations.sort("account_id", "service_id", "supplier_id", "origin_period",
                                         "amount_kop").with_columns(
        kopecks_to_decimal_expr("amount_kop").alias("amount")
    ).select(period_col, "account_id", "service_id", "supplier_id", "origin_period", "amount", "reason",
             "excess_minutes", "kind", "settles_year")
    assert result.penalties is not None
    penalties = result.penalties.with_columns(
        kopecks_to_decimal_expr("amount_kop").alias("amount"),
        kopecks_to_decimal_expr("cumulative_kop").alias("cumulative"),
        kopecks_to_decimal_expr("debt_kop").alias("debt"),
    ).select(period_col, "account_id", "supplier_id", "charge_period", "amount", "cumulative",
             "debt", "scheme", "due_date")
    return {
        "charges": charges,
        "recalculations": recalcs,
        "allocations": allocations,
        "penalties": penalties,
        "balances": bal,
        "service_balances": service_bal,
        "debts": debts,
        "meter_volumes": mv,
        "reading_issues": result.reading_issues.with_columns(period_col),
        "settlements": _settlements_output(result.settlements, period_col),
    }


def _settlements_output(settlements: pl.DataFrame | None, period_col: pl.Expr) -> pl.DataFrame:
    """КР на СОИ settlements made at this close, in rubles and units (empty in other months)."""
    from pipeline.calc.common_property import SETTLEMENT_SCHEMA

    frame = settlements if settlements is not None else pl.DataFrame(schema=SETTLEMENT_SCHEMA)
    micro = pl.Decimal(18, 6)
    return frame.select(
        period_col, "account_id", "service_id", "supplier_id", "building_id", "year", "months",
        *[(pl.col(f"{c}_micro").cast(micro) / 1_000_000).cast(micro).alias(c)
          for c in ("building_volume", "premises_volume", "charged_volume", "difference")],
        *[(pl.col(f"{c}_centi").cast(pl.Decimal(18, 2)) / 100).cast(pl.Decimal(18, 2)).alias(c)
          for c in ("area", "building_area")],
        (pl.col("share_e4").cast(pl.Decimal(18, 4)) / 10_000).cast(pl.Decimal(9, 4)).alias("share"),
        kopecks_to_decimal_expr("price_kop").alias("tariff"),
        kopecks_to_decimal_expr("amount_kop").alias("amount"),
        "parts", "first_period", "carry_over",
    )


def seal(ws: Workspace, result: CloseResult, inputs: CloseInputs,
         render: Any | None = None) -> Path:
    """Write the period directory atomically; ``render(tmp_dir)`` adds receipts inside it."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.reports import write_reports

    final = ws.period_dir(str(result.period))
    with staging_dir(final) as tmp, ThreadPoolExecutor(max_workers=1) as pool:
        # The reports' workbooks are Python-bound (openpyxl); the tables' conversion and
        # Parquet encoding run in Polars without the GIL — side by side they share the cores.
        reports = pool.submit(write_reports, tmp / "reports", result.balances, result.allocations,
                              inputs.regs, datetime.combine(result.period.last, time()))
        outputs = to_outputs(result)
        for name, frame in outputs.items():
            # A fixed row-group size: the lazily built frames' chunks vary with the engine's
            # morsels, the files must not (byte-identical for the same inputs).
            write_parquet_atomic(frame, tmp / f"{name}.parquet", row_group_size=262_144)
        reports_info = reports.result()
        receipts_info = render(tmp) if render is not None else None
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "period": str(result.period),
            "sealed": True,
            "store_version": inputs.store_version,
            "rules_sha256": inputs.rules_sha256,
            "charge_rules_sha256": inputs.charge_rules_sha256,
            "payments_sha256": inputs.payments_sha256,
            "due_date": str(result.due_date) if result.due_date else None,
            "totals_kop": result.totals,
            "row_counts": {n: f.height for n, f in outputs.items()},
            "receipts": receipts_info,
            "reports": reports_info,
            "files": {str(p.relative_to(tmp)): sha256_file(p) for p in files},
        }
        # Chained to the previous period's manifest and hashed itself (pipeline.verify).
        atomic_write_bytes(tmp / "manifest.json", manifest_bytes(ws, manifest))
    return final


def summary(result: CloseResult) -> dict[str, Any]:
    """Small, printable facts of a close (kopecks)."""
    lines = result.lines
    return {
        "period": str(result.period),
        "accounts": lines["account_id"].n_unique(),
        "charge_lines": lines.height,
        "methods": dict(sorted(lines.group_by("method").len().iter_rows())),
        "reading_issues": result.reading_issues.height,
        "payments": result.allocations.select("agent", "payment_id").n_unique(),
        "due_date": str(result.due_date) if result.due_date else None,
        **{f"{k}_kop": v for k, v in result.totals.items()},
    }

