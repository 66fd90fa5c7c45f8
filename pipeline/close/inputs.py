"""What a close reads: one snapshot of registers, rules, payments and the sealed past.

``load_inputs`` is the only I/O of a close before its seal: it checks that the period
may be closed and that every sealed table it reads matches its manifest, then reads the
registers of one store version, the rule tables from one private copy of ``rules/``, the
payments from one read of their file, the typed settings, and from the sealed periods
(through :mod:`pipeline.sealed`, in the engine's integers) the opening balances, open
items, meter history, settlements, recalculations and penalty history. The result,
:class:`CloseInputs`, is plain frames; :mod:`pipeline.close.partition` cuts it into
partitions of whole buildings.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.allocate.ledger import ITEM_SCHEMA, RECEIVED_KINDS
from pipeline.calc.charges import HeatingPolicy
from pipeline.calc.due import due_date
from pipeline.dates import Period
from pipeline.ids import Codes, dictionary, frames_of, map_frames
from pipeline.ingest.gis import load_gis_readings, with_gis_readings
from pipeline.ingest.payments import load_bank_readings, load_payments, payments_path, read_payments
from pipeline.ingest.registers import current_version, load_store
from pipeline.sealed import read_internal, read_periods, scan_table, table_files
from pipeline.verify import check_sealed
from pipeline.workspace import BillingError, Workspace
from rules import Rules, load_rules, read_rule_table
from schemas.outputs import internal_expr, to_internal


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
    codes: Codes | None = None  # identifiers are codes (pipeline.ids); None: strings

    def registers(self) -> dict[str, pl.DataFrame]:
        """The registers with their identifiers as strings (for receipts and reports)."""
        if self.codes is None:
            return self.regs
        return {name: self.codes.decode(frame) for name, frame in self.regs.items()}


#: Fields that hold no identifiers to code.
_UNCODED = ("rules", "penalty_policy", "codes")

#: The register that defines each identifier: ingest refuses a row of any other register whose
#: reference to it is unknown (schemas/registers.py ``refs``), so the registers' identifiers are
#: these registers' (the readings' 60 M meter ids at 4.4 M accounts need not be scanned).
_DEFINED_BY = {"account_id": "accounts", "premise_id": "premises", "building_id": "buildings",
               "meter_id": "meters", "person_id": "residents"}


def coded_inputs(inputs: CloseInputs) -> CloseInputs:
    """``inputs`` with every identifier as its code (:mod:`pipeline.ids`), the dictionary in ``codes``.

    The dictionary is of the whole region's inputs, made before any partition is cut, so
    a code means the same in every partition: the defining registers' identifiers and every
    identifier of the past (payments, open items, sealed history), which may name an account
    or meter the registers no longer hold. Should a register still name another (a store
    written before a reference was checked), the dictionary is made from every frame instead.
    """
    if inputs.codes is not None:
        return inputs
    values = {f.name: getattr(inputs, f.name) for f in fields(inputs) if f.name not in _UNCODED}
    defining = [inputs.regs[name].select(column) for column, name in _DEFINED_BY.items()
                if name in inputs.regs]
    past = {name: value for name, value in values.items() if name != "regs"}
    codes = dictionary([*defining, *frames_of(past)])
    try:
        changed = {name: map_frames(value, codes.encode) for name, value in values.items()
                   if next(frames_of(value), None) is not None}
    except ValueError:  # an identifier outside the defining registers: scan them all
        codes = dictionary(frames_of(values))
        changed = {name: map_frames(value, codes.encode) for name, value in values.items()
                   if next(frames_of(value), None) is not None}
    return replace(inputs, **changed, codes=codes)



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
    from pipeline.migrate.reconcile import check_reconciled

    check_reconciled(ws)  # the first close after a migration: its differences gone or accepted


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


def _with_history_readings(ws: Workspace, readings: pl.DataFrame, meters: pl.DataFrame) -> pl.DataFrame:
    """Register readings plus the previous system's (``billing migrate``) before them.

    The first close after a move measures a meter from its last reading in the old system. The
    register is the record from a meter's first reading in it on: the old system's readings of
    that meter count only before that day (two series of one meter never mix); a meter no
    longer in the register has nothing to measure.
    """
    from decimal import Decimal

    from pipeline.migrate.model import migration_store

    path = migration_store(ws) / "history_readings.parquet"
    if not path.is_file():
        return readings
    old = pl.read_parquet(path)
    if not old.height:
        return readings
    micro = pl.lit(Decimal(1).scaleb(-6), pl.Decimal(38, 6))  # exact: digits kept, point moved
    extra = old.select(
        "meter_id", "read_on",
        (pl.col("value_micro").cast(pl.Decimal(38, 0)) * micro).cast(readings.schema["value"]).alias("value"),
        pl.lit("migration").alias("source"), pl.lit(None, pl.Int64).alias("source_row"),
        pl.lit(True).alias("confirmed"),
    )
    first = readings.group_by("meter_id").agg(pl.col("read_on").min().alias("_first"))
    extra = extra.join(meters.select("meter_id"), on="meter_id", how="semi").join(
        first, on="meter_id", how="left").filter(
        pl.col("_first").is_null() | (pl.col("read_on") < pl.col("_first"))).drop("_first")
    return pl.concat([readings, extra.select(readings.columns).cast(readings.schema)])


def _read_sealed(ws: Workspace, table: str, columns: list[str] | None) -> pl.DataFrame | None:
    """``table`` of every sealed period, as sealed (None when no period has it)."""
    return read_periods([ws.period_dir(p) for p in ws.sealed_periods()], table, columns)


def load_inputs(ws: Workspace, period: Period, *, coded: bool = True) -> CloseInputs:
    """Everything the close of ``period`` reads, from one snapshot of each input.

    The registers come from one store version (read once and named in the
    manifest), the rule tables from one copy of ``rules/`` taken at the start
    (parsed and hashed from the same bytes), the payments from one read of the
    store's file. The close holds the workspace lock besides, so no billing
    command changes them meanwhile. The identifiers are codes (:func:`coded_inputs`)
    unless ``coded`` is false (a test that changes the inputs before computing them).
    """
    ws.require()
    check_can_close(ws, period)
    check_sealed(ws)  # every sealed table read below matches its period's manifest
    with _rules_snapshot(ws.rules) as rules_dir:
        inputs = _load_inputs(ws, period, rules_dir)
    return coded_inputs(inputs) if coded else inputs


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
        opening = read_internal(prev, "balances", ["account_id", "supplier_id", "closing"]).rename(
            {"closing_kop": "opening_kop"})
        open_items = read_internal(prev, "debts", ["account_id", "service_id", "supplier_id",
                                                   "charge_period", "outstanding"])

    applied = _read_sealed(ws, "allocations", ["payment_id", "agent", "kind"])
    payments, payments_hash = _payments_snapshot(ws)
    payments = payments.filter(pl.col("paid_on") <= pl.lit(period.last))
    earlier_allocations = None
    if applied is not None:
        done = applied.filter(pl.col("kind").is_in(RECEIVED_KINDS))
        payments = payments.join(done.select("payment_id", "agent").unique(),
                                 on=["payment_id", "agent"], how="anti")
        refunded = payments.filter(pl.col("refund_of").is_not_null()).select(
            "agent", pl.col("refund_of").alias("payment_id")).unique()
        if refunded.height:
            history = _read_sealed(ws, "allocations", None)
            assert history is not None
            earlier_allocations = to_internal(
                history.join(refunded, on=["agent", "payment_id"], how="semi"), "allocations",
                ["payment_id", "agent", "account_id", "service_id", "supplier_id", "charge_period",
                 "paid_on", "kind", "amount"])
    payments = payments.select("payment_id", "agent", "account_id", "paid_on", "period", "refund_of",
                               (pl.col("amount") * 100).cast(pl.Int64).alias("amount_kop"))
    store_regs = regs
    # Register, migrated history, bank registers and ГИС ЖКХ (billing import gis-readings):
    # the register wins on the same meter and day, then the bank, then ГИС.
    regs = {**regs, "readings": with_gis_readings(_with_bank_readings(
        {**regs, "readings": _with_history_readings(ws, regs["readings"], regs["meters"])},
        load_bank_readings(ws)), load_gis_readings(ws))}

    averaged = _read_sealed(ws, "meter_volumes", ["meter_id", "period", "method", "volume"])
    if averaged is None:
        averaged_before = pl.DataFrame(schema={"meter_id": pl.String, "period_index": pl.Int32,
                                               "method": pl.String, "volume_micro": pl.Int64})
    else:
        # Volumes a reading settles (п.61): averages, norm months when so set, and metered
        # months (their reading ends a span; removed from the register, it no longer does).
        settled = ["meter", "average", "norm"] if settle_norm else ["meter", "average"]
        averaged_before = to_internal(averaged.filter(pl.col("method").is_in(settled)), "meter_volumes",
                                    ["meter_id", "period", "method", "volume"]).select(
            "meter_id",
            (pl.col("period").str.slice(0, 4).cast(pl.Int32) * 12
             + pl.col("period").str.slice(5, 2).cast(pl.Int32) - 1).alias("period_index"),
            "method", "volume_micro",
        )
    due_rules = read_rule_table(rules_dir, "due_dates")
    penalty = _penalty_inputs(ws, open_items, rules_dir)
    rules_hash = rules_sha256(rules_dir)
    horizon = settings.recalculation.horizon_months
    charge_rules_hash = rules_sha256(rules_dir, CHARGE_RULES)
    partial_years = settings.migration.partial_years
    heating_services = rules.services.filter(pl.col("kind") == "heating")["service_id"].to_list()
    heating = replace(heating, uncorrected_years=_uncorrected_years(
        ws.sealed_periods(), period, _service_start(store_regs, heating_services or ["heating"]),
        partial_years))
    past = _past_periods(ws, period, horizon, version, charge_rules_hash, store_regs, heating,
                         heating_services,
                         _awaiting_reading(regs, averaged_before, period, window_end),
                         partial_years=partial_years, metered_services=rules.services.filter(
                             pl.col("kind").is_in(["metered", "sewerage"]))["service_id"].to_list())
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
        **_settlement_inputs(ws, period, rules, store_regs, partial_years),
        **penalty,
    )


#: Rule tables a period's charges depend on; a change to any other (key rates, penalty
#: schemes, due dates, settlements) never makes the past's charges differ.
CHARGE_RULES = ("services.csv", "tariffs.csv", "norms.csv", "increasing_coefficients.csv",
                "absence_rules.csv", "quality_rules.csv", "failed_meter_rules.csv",
                "electricity_norms.csv", "legal_thresholds.csv")


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
    return to_internal(charges, "charges", ["account_id", "service_id", "supplier_id", "method", "amount",
                                          "tariff", "volume", "coefficient", "norm", "area", "share",
                                          "person_days", "absent_days"])


def _service_start(regs: dict[str, pl.DataFrame], services: list[str]) -> date | None:
    """The first day any house of the workspace has one of ``services`` (``building_services``)."""
    rows = regs["building_services"].filter(pl.col("service_id").is_in(services))
    start: date | None = rows["from"].min() if rows.height else None  # type: ignore[assignment]
    return start


def _whole_year(sealed: list[str], year: int, start: date | None, partial_years: str) -> bool:
    """Whether a yearly correction of ``year`` is made: every month of the year it concerns is sealed.

    Правила 354 п.42(1) corrects evenly paid heating once a year «по итогам года» (ПП 603/2016:
    the year's actual building-meter volume against the twelve monthly averages charged), and
    ЖК 156 ч.9.2 with Правила 491 п.29(3) settle КР на СОИ over the year: both figures are the
    year's. A workspace that sealed only some months of the year (it started in December, the
    months before were billed by another system and are neither closed nor migrated here)
    does not know what the rest of the year charged; correcting the sealed months alone would
    set a winter month's actual against a twelfth of the year. So with ``partial_years`` =
    ``"skip"`` (the default) such a year is not corrected at all; ``"covered"`` corrects the
    sealed months alone (the behaviour before the setting). A sealed period counts whether
    closed here or migrated.

    The months the correction concerns are the calendar months of ``year`` from the month of
    ``start`` on: the first day the workspace has the service in any house
    (``building_services.from``; for КР на СОИ the later of that and the settlement rule's
    first ``from``). A service that began inside the year (a new house, a new executor's
    contract, the settlement rule's start) had no earlier months to charge, so its year is
    the months from its start — the Минстрой reading that each executor corrects for its own
    months of the year (law-charges-checked.md §7) — corrected once they are all sealed. The
    start is the workspace's earliest, not each house's: in a workspace that began mid-year
    with older services elsewhere, a house whose service began with it is not corrected either
    (per-house years are not modelled). ``start`` None (no house has the service) or after
    the year: nothing to miss.
    """
    if partial_years == "covered":
        return True
    if start is not None and start.year > year:
        return True
    first = start.month if start is not None and start.year == year else 1
    have = set(sealed)
    return all(str(Period(year, month)) in have for month in range(first, 13))


def _uncorrected_years(sealed: list[str], period: Period, start: date | None,
                       partial_years: str) -> tuple[int, ...]:
    """The years before ``period`` with a sealed month that are not corrected (:func:`_whole_year`).

    Their evenly paid heating months keep what they were charged when recomputed later
    (``HeatingPolicy.uncorrected_years``), so a later change to such a month never posts
    the correction the year did not get.
    """
    years = sorted({Period.parse(q).year for q in sealed if Period.parse(q).year < period.year})
    return tuple(y for y in years if not _whole_year(sealed, y, start, partial_years))


def _past_periods(ws: Workspace, period: Period, horizon: int, store_version: str | None,
                  rules_hash: str, regs: dict[str, pl.DataFrame], heating: HeatingPolicy,
                  heating_services: list[str] | None = None,
                  awaiting: pl.DataFrame | None = None, *, partial_years: str = "skip",
                  metered_services: list[str] | None = None) -> list[Any]:
    """Sealed periods to recompute, each with the accounts to recompute in it.

    When the registers changed since the last close, the accounts whose inputs
    changed (:func:`pipeline.calc.recalc.changed_accounts` against the last
    close's snapshot); when a rule table of :data:`CHARGE_RULES` changed, every account. In the month of
    the yearly heating correction, also every account charged for heating in a
    month of the year being settled in a house with a building heat meter — when that
    year is a whole year here (:func:`_whole_year`; ``partial_years`` is settings.toml
    ``[migration] partial_years``). ``awaiting`` (account_id, period) adds the months a
    reading of this period may settle (:func:`_awaiting_reading`; a bank register's
    reading changes no register). Only the lines of the accounts to recompute are read.

    A month migrated from the previous system (its manifest says ``migrated``) was charged
    from that system's registers, which we do not have: a change of our registers or rules
    does not recompute it (the difference would be the two systems' methods, not the
    change). The settlements against actual volumes still reach it — a reading settling
    its average (п.61, its ``metered_services`` only) and the yearly heating correction —
    and post the difference as usual (docs/migration.md).
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
    if true_up_year is not None and not _whole_year(
            sealed, true_up_year, _service_start(regs, heating_services or ["heating"]), partial_years):
        true_up_year = None  # п.42(1) corrects the year «по итогам года», not a part of it
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
        charges = scan_table(folder, "charges")
        # (accounts, services) to recompute: what changed, in full; the heating
        # correction, heating only (a twelfth of the work for the other services).
        jobs: list[tuple[pl.DataFrame | None, list[str] | None]] = []
        migrated = bool(json.loads((folder / "manifest.json").read_text()).get("migrated"))
        whole = pl.DataFrame(schema={"account_id": pl.String}) if migrated else changed
        settling = awaiting.filter(pl.col("period") == q).select("account_id")
        if whole is not None and settling.height:
            whole = pl.concat([whole, settling]).unique().sort("account_id")
        if whole is None or whole.height:
            jobs.append((whole, metered_services if migrated else None))
        if origin.year == true_up_year and whole is not None:
            # A job over all services already recomputes heating; a migrated month's does not.
            covered = whole.clear() if migrated else whole
            heated = charges.filter(pl.col("method").is_in(["heating", "heating_average"])).select(
                "account_id").unique().join(heat_metered.lazy(), on="account_id", how="semi").join(
                covered.lazy(), on="account_id", how="anti").collect()
            if heated.height:
                jobs.append((heated, heating_services or ["heating"]))
        if not jobs:
            continue
        # The volumes the period charged by meter or average; its norm rows are a record,
        # used only where a reading settles that month (recalc._period_volumes).
        volumes = read_internal(folder, "meter_volumes",
                                ["meter_id", "premise_id", "service_id", "method", "volume"])
        for accounts, services in jobs:
            mine = charges if accounts is None else charges.join(accounts.lazy(), on="account_id", how="semi")
            lines = _internal_lines(mine.collect())
            done = (to_internal(recalcs.filter(pl.col("origin_period") == q), "recalculations",
                              ["account_id", "service_id", "supplier_id", "amount"])
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


def _settlement_inputs(ws: Workspace, period: Period, rules: Rules,
                       regs: dict[str, pl.DataFrame] | None = None,
                       partial_years: str = "skip") -> dict[str, Any]:
    """Settlements made so far, their parts posted, and the year to settle now (if any).

    The year is settled only when every month of it from the settlement rule's and the
    СОИ services' start is sealed (:func:`_whole_year`), unless ``partial_years`` is
    ``"covered"``: then over the sealed months alone. ``regs`` (the store's registers)
    give the services' start; None: the whole calendar year is needed.
    """
    from pipeline.calc.common_property import SETTLEMENT_SCHEMA, settlement_rule, settles_now

    made = _read_sealed(ws, "settlements", None)
    settlements = pl.DataFrame(schema=SETTLEMENT_SCHEMA) if made is None else to_internal(
        made, "settlements", ["account_id", "service_id", "supplier_id", "building_id", "year", "amount",
                              "parts", "first_period", "carry_over"])
    recalcs = _read_sealed(ws, "recalculations", None)
    posted = None
    if recalcs is not None and "kind" in recalcs.columns:
        posted = recalcs.filter(pl.col("kind") == "settlement").group_by(
            "account_id", "service_id", "supplier_id", pl.col("settles_year").cast(pl.Int32).alias("year")
        ).agg(internal_expr("recalculations", "amount").sum())
    year = settles_now(rules, period)
    settle = None
    if year is not None and not settlements.filter(pl.col("year") == year).height:
        rule_from: date = rules.soi_settlement["from"].min()  # type: ignore[assignment]
        months = [q for q in ws.sealed_periods() if Period.parse(q).year == year
                  and Period.parse(q).last >= rule_from]
        resources = rules.services.filter(pl.col("settled_by").is_not_null())
        wanted = [*resources["service_id"], *resources["settled_by"]]
        began = _service_start(regs, resources["service_id"].to_list()) if regs is not None else None
        start = rule_from if began is None else max(rule_from, began)
        if (months and settlement_rule(rules, year) is not None
                and _whole_year(ws.sealed_periods(), year, start, partial_years)):
            lines = pl.concat([
                to_internal(scan_table(ws.period_dir(q), "charges").filter(
                    pl.col("service_id").is_in(wanted)), "charges", ["account_id", "service_id", "volume"]
                ).collect()
                for q in months])
            settle = SettleInputs(year, months, lines)
    return {"settlements": settlements, "settlement_posted": posted, "settle": settle}


def _penalty_inputs(ws: Workspace, open_items: pl.DataFrame, rules_dir: Path) -> dict[str, Any]:
    """History of the buckets still open: their charges, payments and last penalty."""
    from pipeline.calc.recalc import ledger_period
    from pipeline.penalties import load_policy
    from pipeline.penalties.monthly import PENALTY_SERVICE

    open_periods = open_items.filter(
        (pl.col("outstanding_kop") > 0) & pl.col("charge_period").is_not_null()
        & (pl.col("service_id") != PENALTY_SERVICE)
    ).select("account_id", "supplier_id", "charge_period").unique()
    charges, allocations = [], []
    for q in sorted(open_periods["charge_period"].unique().to_list()):
        folder = ws.period_dir(q)
        if not table_files(folder, "charges"):
            continue
        charges.append(scan_table(folder, "charges").select(
            "account_id", "service_id", "supplier_id", "amount").collect().with_columns(
            pl.lit(q).alias("charge_period")))
    sealed = ws.sealed_periods()
    if sealed and open_periods.height:
        allocations = [pl.concat([scan_table(ws.period_dir(p), "allocations") for p in sealed],
                                 how="vertical_relaxed")
                       .filter(pl.col("charge_period").is_in(open_periods["charge_period"].unique().implode()))
                       .select("account_id", "supplier_id", "charge_period", "paid_on", "kind", "amount")
                       .collect()]
    recalcs = _read_sealed(ws, "recalculations", None)
    if recalcs is not None and recalcs.height:
        # A bucket's amount is its charge plus the recalculations that came back to it.
        charges.append(recalcs.select("account_id", "service_id", "supplier_id", "amount",
                                      ledger_period(pl.col("period"), "amount").alias("charge_period")))
    hist_charges = (pl.concat(charges, how="vertical_relaxed").join(
        open_periods, on=["account_id", "supplier_id", "charge_period"], how="semi").select(
        "account_id", "service_id", "supplier_id", "charge_period", internal_expr("charges", "amount"))
        if charges else None)
    hist_alloc = (pl.concat(allocations).join(open_periods, on=["account_id", "supplier_id", "charge_period"],
                                             how="semi").select(
        "account_id", "supplier_id", "charge_period", "paid_on", "kind",
        internal_expr("allocations", "amount"))
        if allocations else None)
    previous = None
    if sealed and table_files(ws.period_dir(sealed[-1]), "penalties"):
        prev = read_periods([ws.period_dir(sealed[-1])], "penalties")
        if prev is not None and "cumulative" in prev.columns:
            previous = to_internal(prev, "penalties", ["account_id", "supplier_id", "charge_period",
                                                     "cumulative", "due_date"])
    # The debts of migrated months keep the old system's due dates (checked by the
    # reconciliation); every later month's fall due by our rule.
    migrated = _migrated_span(ws, sealed)
    if previous is not None:
        previous = previous.with_columns(
            pl.when(pl.col("charge_period") <= (migrated[1] if migrated else "")).then(pl.col("due_date"))
            .otherwise(pl.lit(None, pl.Date)).alias("due_date"))
    if migrated is not None:
        first, last = migrated
        after_move = sealed[-1] == last  # the first close after the move
        if after_move:  # every migrated debt's due date, also of one without accrued penalty
            previous = _with_history_due_dates(ws, previous)
        hist_charges, previous = _older_than_history(open_items, hist_charges, hist_alloc, previous, first,
                                                     last, restart=after_move)
    return {"penalty_policy": load_policy(rules_dir), "penalty_charges": hist_charges,
            "penalty_allocations": hist_alloc, "penalty_previous": previous}


#: The previous close's penalties as the next one reads them (``_penalty_inputs``).
_PREVIOUS = {"account_id": pl.String, "supplier_id": pl.String, "charge_period": pl.String,
             "cumulative_kop": pl.Int64, "due_date": pl.Date}


def _with_history_due_dates(ws: Workspace, previous: pl.DataFrame | None) -> pl.DataFrame | None:
    """``previous`` with the due date of every debt of ``history_debts`` (per account, supplier
    and month, the earliest of its services), also of a debt that has no accrued penalty yet
    and so no row of its own; a row's own due date wins. Later closes carry them on."""
    from pipeline.migrate.model import load_history
    from pipeline.penalties.monthly import PENALTY_SERVICE

    history = load_history(ws)
    if history is None:
        return previous
    key = ["account_id", "supplier_id", "charge_period"]
    theirs = history.frame("history_debts").filter(
        pl.col("charge_period").is_not_null() & pl.col("due_date").is_not_null()
        & (pl.col("service_id") != PENALTY_SERVICE)).group_by(key).agg(
        pl.col("due_date").min().alias("_theirs"))
    if not theirs.height:
        return previous
    previous = previous if previous is not None else pl.DataFrame(schema=_PREVIOUS)
    both = previous.join(theirs, on=key, how="full", coalesce=True)
    return both.with_columns(pl.coalesce("due_date", "_theirs").alias("due_date")).drop("_theirs").select(
        previous.columns)


def _migrated_span(ws: Workspace, sealed: list[str]) -> tuple[str, str] | None:
    """The first and last migrated months (None without a migration)."""
    from pipeline.migrate.reconcile import migrated_periods

    months = migrated_periods(ws) if sealed else []
    return (months[0], months[-1]) if months else None


def _older_than_history(open_items: pl.DataFrame, charges: pl.DataFrame | None,
                        allocations: pl.DataFrame | None, previous: pl.DataFrame | None, first: str,
                        last: str, restart: bool) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """Penalty inputs of the debts older than the migrated history (docs/migration.md, "Debts
    older than the history"): no month of theirs is sealed, so their charge is what is still
    open plus what the sealed months paid of it. In the first close after the move
    (``restart``) their previous cumulative is ours as of the last migrated month's end
    (``baseline_on``): the penalty runs on from there; later closes continue their own."""
    from pipeline.penalties.monthly import PAYING_KINDS, PENALTY_SERVICE

    key = ["account_id", "supplier_id", "charge_period"]
    older = open_items.filter((pl.col("outstanding_kop") > 0) & pl.col("charge_period").is_not_null()
                              & (pl.col("charge_period") < first) & (pl.col("service_id") != PENALTY_SERVICE))
    if not older.height:
        return charges, previous
    owed = older.group_by("account_id", "service_id", "supplier_id", "charge_period").agg(
        pl.col("outstanding_kop").sum().alias("amount_kop"))
    if allocations is not None and allocations.height:
        paid = allocations.filter(pl.col("kind").is_in(PAYING_KINDS)).join(older.select(key).unique(), on=key,
                                                                           how="semi")
        # What the sealed months paid of a bucket, under one of its own services (the scheme is the bucket's).
        first_service = owed.group_by(key).agg(pl.col("service_id").min())
        owed = pl.concat([owed, paid.group_by(key).agg(pl.col("amount_kop").sum()).join(
            first_service, on=key).select(owed.columns)])
    extra = owed.select("account_id", "service_id", "supplier_id", "charge_period", "amount_kop")
    charges = pl.concat([charges.select(extra.columns), extra], how="vertical_relaxed") \
        if charges is not None else extra
    if not restart:
        return charges, previous
    day = Period.parse(last).last
    marks = older.select(key).unique().with_columns(pl.lit(day).alias("baseline_on"))
    previous = previous if previous is not None else pl.DataFrame(schema=_PREVIOUS)
    kept = previous.join(marks, on=key, how="anti").with_columns(pl.lit(None, pl.Date).alias("baseline_on"))
    restarted = marks.join(previous.select(*key, "due_date"), on=key, how="left").with_columns(
        pl.lit(None, pl.Int64).alias("cumulative_kop"))
    return charges, pl.concat([kept, restarted.select(kept.columns)], how="vertical_relaxed")

