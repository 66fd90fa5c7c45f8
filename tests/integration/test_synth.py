"""The synthetic city (pipeline.synth) and the hand-written sample town (data/sample)."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pipeline.dates import Period
from pipeline.synth import (
    BUILDING_HISTORY_MONTHS,
    INDIVIDUAL_HISTORY_MONTHS,
    OPTIONAL_REGISTER_COLUMNS,
    PAYMENT_COLUMNS,
    REGISTER_COLUMNS,
    CitySummary,
    generate_city,
    generate_payments,
    payment_behaviour,
    write_payments_csv,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"

# Written out from CONTRACT.md on purpose, so that REGISTER_COLUMNS cannot drift silently.
CONTRACT_COLUMNS = {
    "organizations": ["org_id", "name", "inn", "kpp", "role", "bank_name", "bik", "account",
                      "corr_account", "address", "phone"],
    "buildings": ["building_id", "address", "manager_id", "total_area", "common_area"],
    "premises": ["premise_id", "building_id", "number", "kind", "total_area", "rooms",
                 "meter_possible"],
    "accounts": ["account_id", "premise_id", "payer_kind", "payer_name", "share", "owners",
                 "opened_on", "closed_on", "email"],
    "building_services": ["building_id", "service_id", "supplier_id", "from", "to"],
    "residents": ["person_id", "account_id", "full_name", "birth_date", "kind", "from", "to"],
    "absences": ["person_id", "from", "to"],
    "meters": ["meter_id", "service_id", "premise_id", "serial", "installed_on", "removed_on",
               "verified_until", "digits"],
    "readings": ["meter_id", "read_on", "value", "source"],
    "benefits": ["person_id", "category", "from", "to"],
    "outages": ["building_id", "service_id", "started_at", "ended_at"],
}
DATE_COLUMNS = {
    "accounts": ["opened_on", "closed_on"],
    "building_services": ["from", "to"],
    "residents": ["birth_date", "from", "to"],
    "absences": ["from", "to"],
    "meters": ["installed_on", "removed_on", "verified_until"],
    "readings": ["read_on"],
    "benefits": ["from", "to"],
}
START = Period(2026, 12)


def _services() -> set[str]:
    with open(ROOT / "rules" / "defaults" / "services.csv", encoding="utf-8") as f:
        return {row["service_id"] for row in csv.DictReader(f)}


def _read(home: Path, name: str) -> pl.DataFrame:
    return pl.read_csv(home / "registers" / f"{name}.csv", infer_schema=False)


def _inn_ok(inn: str) -> bool:
    weights = (2, 4, 10, 3, 5, 9, 4, 6, 8)
    if len(inn) != 10 or not inn.isdigit():
        return False
    return sum(int(d) * w for d, w in zip(inn, weights, strict=False)) % 11 % 10 == int(inn[9])


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CitySummary]:
    home = tmp_path_factory.mktemp("city")
    return home, generate_city(home, accounts=1000, start=START, months=3, seed=2026)


@pytest.fixture(scope="module", params=["city", "sample"])
def town(request: pytest.FixtureRequest, city: tuple[Path, CitySummary]) -> Path:
    return city[0] if request.param == "city" else SAMPLE


# --------------------------------------------------------------------------- generate_city


def test_same_seed_gives_identical_files(city: tuple[Path, CitySummary], tmp_path: Path) -> None:
    home, summary = city
    again = generate_city(tmp_path, accounts=1000, start=START, months=3, seed=2026)
    assert again == summary
    for name in [*REGISTER_COLUMNS, *OPTIONAL_REGISTER_COLUMNS, "../rules/tariffs"]:
        first = (home / "registers" / f"{name}.csv").read_bytes()
        assert first == (tmp_path / "registers" / f"{name}.csv").read_bytes(), name


def test_other_seed_gives_another_city(city: tuple[Path, CitySummary], tmp_path: Path) -> None:
    generate_city(tmp_path, accounts=1000, start=START, months=3, seed=7)
    ours = (city[0] / "registers" / "accounts.csv").read_bytes()
    assert ours != (tmp_path / "registers" / "accounts.csv").read_bytes()


def test_summary_counts_and_text(city: tuple[Path, CitySummary]) -> None:
    home, summary = city
    assert summary.accounts == _read(home, "accounts").height == 1000
    assert summary.readings == _read(home, "readings").height
    assert 8 <= summary.buildings <= 20  # "about a dozen"
    assert summary.organizations in (10, 11)  # 3 or 4 management companies
    assert "лицевых счетов 1000" in str(summary)


def test_scales_with_accounts(tmp_path: Path) -> None:
    summary = generate_city(tmp_path, accounts=5000, months=1)
    assert summary.accounts == 5000
    assert 0.93 * 5000 <= summary.premises <= 5000
    assert 40 <= summary.buildings <= 100


def test_city_shape(city: tuple[Path, CitySummary]) -> None:
    home, _ = city
    orgs = _read(home, "organizations")
    roles = orgs["role"].value_counts().rows()
    assert dict(roles)["billing_centre"] == 1 and dict(roles)["capital_repair"] == 1
    assert 3 <= dict(roles)["management"] <= 4
    assert all(_inn_ok(inn) for inn in orgs["inn"])
    assert all(len(k) == 9 for k in orgs["kpp"]) and all(b.startswith("04") for b in orgs["bik"])
    assert all(a.startswith("40702810") and len(a) == 20 for a in orgs["account"])
    assert all(a.startswith("30101810") and len(a) == 20 for a in orgs["corr_account"])

    accounts = _read(home, "accounts")
    assert accounts["account_id"].str.contains(r"^10\d{8}$").all()
    split = accounts.filter(pl.col("share") == "0.5")
    assert 10 <= split.height <= 60 and split.group_by("premise_id").len()["len"].eq(2).all()
    demo_first, demo_last = START.first.isoformat(), START.shift(2).last.isoformat()
    lo, hi = pl.lit(demo_first), pl.lit(demo_last)
    closed = accounts.filter(pl.col("closed_on").is_not_null())
    assert closed.height > 0 and closed["closed_on"].is_between(lo, hi).all()
    assert accounts.filter(pl.col("opened_on") >= demo_first).height == closed.height

    premises = _read(home, "premises")
    assert set(premises["kind"]) == {"residential", "nonresidential"}
    assert set(premises["meter_possible"]) == {"true", "false"}
    area = premises["total_area"].cast(pl.Float64)
    assert area.filter(premises["kind"] == "residential").is_between(25, 120).all()

    services = _read(home, "building_services")
    per_building = services.group_by("building_id").agg(pl.col("service_id"))
    for row in per_building.iter_rows(named=True):
        assert set(row["service_id"]) >= _services() - {"intercom"}
    maintenance = services.filter(pl.col("service_id") == "maintenance").join(
        _read(home, "buildings"), on="building_id")
    assert (maintenance["supplier_id"] == maintenance["manager_id"]).all()

    residents = _read(home, "residents")
    assert set(residents["kind"]) == {"permanent", "temporary"}
    assert (residents["from"] >= residents["birth_date"]).all()
    ended = residents.filter(pl.col("to").is_not_null())
    assert (ended["to"] >= ended["from"]).all()
    assert residents.filter(pl.col("from").is_between(lo, hi)).height > 0

    meters = _read(home, "meters")
    assert (meters["premise_id"].is_null() != meters["building_id"].is_null()).all()
    building = meters.filter(pl.col("building_id").is_not_null())
    assert set(building["service_id"]) == {"heating", "cold_water", "hot_water", "electricity"}
    assert meters.filter(pl.col("verified_until").is_between(lo, hi)).height > 0


def test_readings_are_plausible(city: tuple[Path, CitySummary]) -> None:
    home, _ = city
    meters = _read(home, "meters").select("meter_id", "installed_on", "digits")
    readings = _read(home, "readings").join(meters, on="meter_id")
    assert (readings["read_on"] > readings["installed_on"]).all()
    assert set(readings["source"]) <= {"lk", "gis", "bank", "controller"}
    value = readings["value"].cast(pl.Float64)
    assert (value >= 0).all()
    assert (value < 10 ** readings["digits"].cast(pl.Int64)).all()
    day = readings["read_on"].str.slice(8, 2).cast(pl.Int64)
    assert day.is_between(15, 28).all()
    late = (day > 25).mean()
    assert 0.003 < late < 0.03  # type: ignore[operator]
    months = readings["read_on"].str.slice(0, 7)
    individual = readings.join(_read(home, "meters").filter(pl.col("premise_id").is_not_null()),
                               on="meter_id", how="semi")
    assert individual["read_on"].str.slice(0, 7).n_unique() == INDIVIDUAL_HISTORY_MONTHS + 3
    assert months.n_unique() == BUILDING_HISTORY_MONTHS + 3  # building meters: over two years
    ordered = readings.with_columns(v=value).sort("meter_id", "read_on")
    drops = ordered.with_columns(d=pl.col("v").diff().over("meter_id")).filter(pl.col("d") < 0)
    assert drops.height >= 2  # negative consumption and one rollover
    assert drops["d"].min() < -90_000  # type: ignore[operator]  # the rolled-over meter


def test_maintenance_tariffs_appended_once(city: tuple[Path, CitySummary], tmp_path: Path) -> None:
    home, _ = city
    managers = set(_read(home, "organizations").filter(pl.col("role") == "management")["org_id"])
    tariffs = pl.read_csv(home / "rules" / "tariffs.csv", infer_schema=False)
    assert tariffs.columns[:5] == ["service_id", "supplier_id", "from", "price", "source"]
    demo = tariffs.filter(pl.col("supplier_id").is_in(list(managers)))
    assert set(demo["supplier_id"]) == managers and demo.height == len(managers)
    assert demo["service_id"].eq("maintenance").all() and demo["from"].eq("2025-07-01").all()
    assert demo["price"].cast(pl.Float64).is_between(26, 38).all()
    defaults = (ROOT / "rules" / "defaults" / "tariffs.csv").read_text(encoding="utf-8")
    assert (home / "rules" / "tariffs.csv").read_text(encoding="utf-8").startswith(defaults)

    generate_city(tmp_path, accounts=30, months=1)
    generate_city(tmp_path, accounts=30, months=1)
    again = pl.read_csv(tmp_path / "rules" / "tariffs.csv", infer_schema=False)
    assert again.filter(pl.col("source").str.contains("демо\\)$")).height <= 4


# --------------------------------------------------------------------------- both towns


def test_registers_have_contract_columns(town: Path) -> None:
    for name, contract in CONTRACT_COLUMNS.items():
        with open(town / "registers" / f"{name}.csv", encoding="utf-8") as f:
            header = next(csv.reader(f))
        assert header == list(REGISTER_COLUMNS[name]), name
        positions = [header.index(c) for c in contract]
        assert positions == sorted(positions), name


def test_registers_are_consistent(town: Path) -> None:
    regs = {name: _read(town, name) for name in REGISTER_COLUMNS}
    keys = {
        "organizations": ["org_id"], "buildings": ["building_id"], "premises": ["premise_id"],
        "accounts": ["account_id"], "residents": ["person_id"], "meters": ["meter_id"],
        "readings": ["meter_id", "read_on"], "building_services": ["building_id", "service_id"],
    }
    for name, key in keys.items():
        assert not regs[name].select(key).is_duplicated().any(), name

    def within(name: str, column: str, target: str, target_column: str) -> None:
        values = regs[name][column].drop_nulls()
        assert values.is_in(regs[target][target_column].implode()).all(), (name, column)

    within("buildings", "manager_id", "organizations", "org_id")
    within("premises", "building_id", "buildings", "building_id")
    within("accounts", "premise_id", "premises", "premise_id")
    within("building_services", "building_id", "buildings", "building_id")
    within("building_services", "supplier_id", "organizations", "org_id")
    within("residents", "account_id", "accounts", "account_id")
    within("absences", "person_id", "residents", "person_id")
    within("benefits", "person_id", "residents", "person_id")
    within("meters", "premise_id", "premises", "premise_id")
    within("meters", "building_id", "buildings", "building_id")
    within("readings", "meter_id", "meters", "meter_id")
    within("outages", "building_id", "buildings", "building_id")
    services = _services()
    for name in ("building_services", "meters", "outages"):
        assert set(regs[name]["service_id"]) <= services, name

    for name, columns in DATE_COLUMNS.items():
        for column in columns:
            for value in regs[name][column].drop_nulls():
                date.fromisoformat(value)  # ISO YYYY-MM-DD
    for name in ("absences", "benefits", "building_services"):
        bounded = regs[name].filter(pl.col("to").is_not_null())
        assert (bounded["to"] >= bounded["from"]).all(), name
    outages = regs["outages"]
    assert outages["started_at"].str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d$").all()
    assert (outages["ended_at"] > outages["started_at"]).all()

    # A building's total area is the sum of its premises' areas.
    premises_area = regs["premises"].group_by("building_id").agg(
        pl.col("total_area").cast(pl.Decimal(18, 2)).sum().alias("sum"))
    joined = regs["buildings"].join(premises_area, on="building_id")
    assert (joined["total_area"].cast(pl.Decimal(18, 2)) == joined["sum"]).all()


def test_sample_payments_file() -> None:
    payments = pl.read_csv(SAMPLE / "inbox" / "payments-2026-09.csv", infer_schema=False)
    assert payments.columns == list(PAYMENT_COLUMNS)
    accounts = set(_read(SAMPLE, "accounts")["account_id"])
    unknown = payments.filter(~pl.col("account_id").is_in(list(accounts)))
    assert unknown["account_id"].to_list() == ["9999999999"]
    assert payments["paid_on"].str.starts_with("2026-09-").all()


# --------------------------------------------------------------------------- payments


def _due(n: int = 20_000) -> pl.DataFrame:
    ids = [f"{1_000_000_001 + i}" for i in range(n)]
    to_pay = [((i * 7919) % 900_000) - 50_000 for i in range(n)]  # some ≤ 0 (advances)
    return pl.DataFrame({"account_id": ids, "to_pay": to_pay},
                        schema_overrides={"to_pay": pl.Int64})


def _kopecks(amount: pl.Expr) -> pl.Expr:
    return (amount.str.replace(r"\.", "").cast(pl.Int64)).alias("kop")


def test_payments_follow_each_accounts_behaviour() -> None:
    due = _due()
    payments = generate_payments(due, Period(2026, 8), seed=2026)
    assert payments.columns == list(PAYMENT_COLUMNS)
    assert all(dtype == pl.String for dtype in payments.dtypes)
    assert payments["payment_id"].n_unique() == payments.height
    assert payments["amount"].str.contains(r"^\d+\.\d\d$").all()
    assert payments["paid_on"].str.starts_with("2026-09-").all()
    assert set(payments["agent"]) == {"sber", "vtb", "post", "lk"}
    assert set(payments["period"].drop_nulls()) == {"2026-08"}
    assert 0.6 < payments["period"].is_not_null().mean() < 0.8  # type: ignore[operator]
    assert payments["payment_id"].str.contains(r"^(sber|vtb|post|lk)-202608-\d{8}$").all()

    paid = payments.group_by("account_id").agg(_kopecks(pl.col("amount")).sum(), pl.len())
    table = (
        due.with_columns(behaviour=payment_behaviour(due["account_id"], seed=2026))
        .join(paid, on="account_id", how="left")
        .with_columns(pl.col("kop").fill_null(0), pl.col("len").fill_null(0))
    )
    assert table.filter(pl.col("to_pay") <= 0)["len"].eq(0).all()
    positive = table.filter(pl.col("to_pay") > 0)
    by = {b: positive.filter(pl.col("behaviour") == b) for b in
          ("full", "partial", "none", "overpay", "instalments")}
    assert (by["full"]["kop"] == by["full"]["to_pay"]).all()
    assert by["full"]["len"].eq(1).all()
    assert (by["instalments"]["kop"] == by["instalments"]["to_pay"]).all()
    assert by["instalments"]["len"].eq(2).mean() > 0.9  # type: ignore[operator]
    part = by["partial"]
    assert (part["kop"] >= part["to_pay"] * 3 // 10).all() and (part["kop"] < part["to_pay"]).all()
    assert by["none"]["len"].eq(0).all()
    over = by["overpay"]
    assert (over["kop"] > over["to_pay"]).all() and (over["kop"] % 10_000 == 0).all()
    shares = positive["behaviour"].value_counts(normalize=True)
    full_share = shares.filter(pl.col("behaviour") == "full")["proportion"][0]
    assert 0.75 < full_share < 0.81


def test_payments_are_deterministic_and_debtors_chronic() -> None:
    due = _due(5000)
    first = generate_payments(due, Period(2026, 8), seed=2026)
    assert first.equals(generate_payments(due, Period(2026, 8), seed=2026))
    # Row order of the input does not matter.
    shuffled = generate_payments(due.reverse(), Period(2026, 8), seed=2026)
    assert first.equals(shuffled)
    later = generate_payments(due, Period(2026, 9), seed=2026)
    assert later["paid_on"].str.starts_with("2026-10-").all()
    positive = set(due.filter(pl.col("to_pay") > 0)["account_id"])
    unpaid_aug = positive - set(first["account_id"])
    unpaid_sep = positive - set(later["account_id"])
    assert unpaid_aug and unpaid_aug == unpaid_sep
    assert generate_payments(due.head(0), Period(2026, 8)).columns == list(PAYMENT_COLUMNS)


def test_write_payments_csv(tmp_path: Path) -> None:
    payments = generate_payments(_due(100), Period(2026, 8))
    path = tmp_path / "inbox" / "payments-2026-09.csv"
    write_payments_csv(payments, path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    back = pl.read_csv(path, infer_schema=False)
    assert back.columns == list(PAYMENT_COLUMNS)
    assert back.height == payments.height
    assert path.read_text(encoding="utf-8").startswith(",".join(PAYMENT_COLUMNS) + "\n")


# --------------------------------------------------------------------------- what the demo shows


def _building_meters(home: Path) -> pl.DataFrame:
    return _read(home, "meters").filter(pl.col("building_id").is_not_null())


def test_building_meters_cover_the_previous_year(city: tuple[Path, CitySummary]) -> None:
    home, summary = city
    building = _building_meters(home)
    assert summary.building_meters == building.height
    assert building["premise_id"].is_null().all() and building["digits"].cast(pl.Int64).ge(6).all()
    n_b = summary.buildings
    per_service = dict(building.group_by("service_id").len().iter_rows())
    # Heat in about half of the buildings (others stay on the norm), water and power in 30–50 %.
    assert n_b / 3 <= per_service["heating"] < n_b
    for service in ("cold_water", "hot_water", "electricity"):
        assert n_b / 4 <= per_service[service] <= n_b / 2, service
    # Installed before the year before the start, one reading a month before the 25th, from at
    # least 25 months before the start to the end of the demo: the previous calendar year's
    # volume (heating paid evenly) and its December before are measured.
    assert (building["installed_on"] < "2025-01-01").all()
    assert (building["verified_until"] > START.shift(2).last.isoformat()).all()
    readings = _read(home, "readings").join(building.select("meter_id", "service_id"), on="meter_id")
    per_meter = readings.group_by("meter_id").agg(
        pl.col("read_on").str.slice(0, 7).n_unique().alias("months"), pl.len(),
        pl.col("read_on").min().alias("first"), pl.col("read_on").max().alias("last"),
        (pl.col("read_on").str.slice(8, 2).cast(pl.Int64) <= 25).all().alias("in_window"))
    assert per_meter.height == building.height
    assert (per_meter["months"] == per_meter["len"]).all() and per_meter["in_window"].all()
    assert (per_meter["first"] <= START.shift(-25).last.isoformat()).all()
    assert (per_meter["last"] >= START.shift(2).first.isoformat()).all()
    # Consumption goes up month after month; heat follows the season (nothing in summer).
    monthly = readings.with_columns(pl.col("value").cast(pl.Float64)).sort("meter_id", "read_on") \
        .with_columns(pl.col("value").diff().over("meter_id").alias("used"),
                      pl.col("read_on").str.slice(5, 2).cast(pl.Int64).alias("month")).drop_nulls("used")
    assert (monthly["used"] >= 0).all()
    heat = monthly.filter(pl.col("service_id") == "heating")
    assert heat.filter(pl.col("month").is_in([6, 7, 8]))["used"].max() == 0
    assert heat.filter(pl.col("month") == 1)["used"].min() > 0  # type: ignore[operator]


def test_building_water_meters_measure_premises_and_common_property(
        city: tuple[Path, CitySummary]) -> None:
    home, _ = city
    meters = _read(home, "meters")
    premises = _read(home, "premises").select("premise_id", "building_id")
    readings = _read(home, "readings").with_columns(pl.col("value").cast(pl.Float64)).sort(
        "meter_id", "read_on").with_columns(pl.col("value").diff().over("meter_id").alias("used"),
                                           pl.col("read_on").str.slice(0, 7).alias("month"))
    used = readings.filter(pl.col("month") == str(START.shift(1))).join(meters, on="meter_id")
    building = used.filter(pl.col("building_id").is_not_null() & (pl.col("service_id") != "heating"))
    flats = used.filter(pl.col("premise_id").is_not_null()).drop("building_id").join(
        premises, on="premise_id").group_by("building_id", "service_id").agg(
        pl.col("used").sum().alias("flats"))
    both = building.join(flats, on=["building_id", "service_id"])
    assert both.height == building.height > 0
    # The building meter measures more than the premises' meters (unmetered flats and common
    # property), but not wildly more; a month's missing or late readings blur it a little.
    ratio = both["used"] / both["flats"]
    assert (ratio > 0.95).all() and (ratio < 3).all() and ratio.mean() > 1  # type: ignore[operator]


def test_meters_fail_before_and_during_the_demo(city: tuple[Path, CitySummary]) -> None:
    home, _ = city
    meters = _read(home, "meters").filter(pl.col("premise_id").is_not_null())
    until = meters["verified_until"]
    # Just before the demo (average of readings before failure, then the norm × K), months
    # before it (the norm × K) and during it.
    assert until.is_between(START.shift(-1).first.isoformat(), START.shift(-1).last.isoformat()).any()
    assert until.is_between(START.shift(-12).first.isoformat(), START.shift(-4).last.isoformat()).any()
    assert until.is_between(START.first.isoformat(), START.shift(2).last.isoformat()).any()


def test_access_refusals(city: tuple[Path, CitySummary]) -> None:
    home, summary = city
    refusals = _read(home, "access_refusals")
    assert refusals.columns == list(OPTIONAL_REGISTER_COLUMNS["access_refusals"])
    assert summary.access_refusals == refusals.height
    assert (refusals["refused_on"] < START.first.isoformat()).all()
    assert refusals["resolved_on"].is_null().all()
    assert not refusals.select("premise_id", "service_id", "refused_on").is_duplicated().any()
    # Each act names a meter the premise has; two acts or more → norm × K, one is not enough.
    meters = _read(home, "meters").filter(pl.col("premise_id").is_not_null())
    assert refusals.join(meters, on=["premise_id", "service_id"], how="anti").height == 0
    acts = refusals.group_by("premise_id", "service_id").len()["len"]
    assert (acts >= 2).sum() >= 2 and (acts == 1).sum() >= 1


def test_small_town_has_buildings_with_and_without_meters(tmp_path: Path) -> None:
    summary = generate_city(tmp_path, accounts=60, start=START, months=2)
    assert summary.buildings >= 3
    building = _building_meters(tmp_path)
    heated = set(building.filter(pl.col("service_id") == "heating")["building_id"])
    assert 0 < len(heated) < summary.buildings
    assert building.filter(pl.col("service_id") == "cold_water").height >= 1
    absences = _read(tmp_path, "absences").with_columns(pl.col("from", "to").str.to_date())
    # At least one absence long enough to count (more than 5 full days).
    assert ((absences["to"] - absences["from"]).dt.total_days() >= 7).any()
