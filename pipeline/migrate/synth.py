"""A synthetic export of the demo city from its previous system (синтетическая выгрузка).

:func:`write_old_export` writes into ``HOME/migration/`` what a settlement centre would
bring from its old program for a city made by :func:`pipeline.synth.generate_city`:
the months before the city's first close, in the old system's shape — Russian column
names, its own service, method, supplier and agent codes, Windows-1251, ``;`` and a
decimal comma — and ``mapping.toml`` that turns them into our columns
(docs/migration.md, "The export: files and the mapping").

The figures are the old system's own (charges need not follow our formulas), but they
are consistent with each other the way ``billing migrate`` checks them: per account,
service and supplier every month's closing is opening + charged + penalty − paid; the
debts by month at the end are the open items of the last month (oldest paid first, as
our ledger pays them: the payments without a split are split by
:func:`pipeline.allocate.ledger.apply_period`, so our allocation finds the same
figures); penalties are accrued on the overdue items by
:func:`pipeline.penalties.scalar.bucket_penalty`. With ``inconsistencies=True`` four
deliberate errors are put in (see :func:`write_old_export`), and returned, so a test
can check that the reconciliation finds exactly them. Money is integer kopecks
throughout; the same arguments give byte-identical files.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path

import polars as pl

from pipeline.dates import Period
from schemas.history import PENALTY_SERVICE

#: The old system's name, printed on the reconciliation report.
SOURCE_SYSTEM = "Квартплата 24 (синтетическая выгрузка)"

#: Our service id -> the old system's code.
OLD_SERVICE: dict[str, str] = {
    "cold_water": "ХВС", "hot_water": "ГВС", "sewerage": "Водоотведение", "electricity": "Электроэнергия",
    "heating": "Отопление", "maintenance": "Содержание", "waste": "ТКО", "intercom": "Домофон",
    "capital_repair": "Капремонт", "cold_water_soi": "ХВС СОИ", "hot_water_soi": "ГВС СОИ",
    "sewerage_soi": "Водоотведение СОИ", "electricity_soi": "Электроэнергия СОИ", PENALTY_SERVICE: "Пени",
}
#: Our method -> the old system's code.
OLD_METHOD: dict[str, str] = {
    "meter": "ИПУ", "average": "Среднее", "norm": "Норматив", "area": "Площадь", "per_person": "На человека",
    "fixed": "Фикс", "heating": "Норматив отопления", "common_property": "СОИ",
}
#: Our payment agent -> the old system's code.
OLD_AGENT: dict[str, str] = {"sber": "Сбербанк", "post": "Почта России", "lk": "Личный кабинет"}

#: Our register -> file columns: (our column, the old system's column), in file order.
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "history_charges": (("account_id", "ЛС"), ("period", "Месяц"), ("service_id", "Услуга"),
                        ("supplier_id", "Поставщик"), ("method", "Способ расчёта"), ("volume", "Объём"),
                        ("tariff", "Тариф"), ("amount", "Начислено")),
    "history_payments": (("payment_id", "Номер платежа"), ("agent", "Агент"), ("account_id", "ЛС"),
                         ("paid_on", "Дата оплаты"), ("period", "Месяц учёта"), ("amount", "Сумма"),
                         ("service_id", "Услуга"), ("supplier_id", "Поставщик"),
                         ("charge_period", "За месяц")),
    "history_balances": (("account_id", "ЛС"), ("period", "Месяц"), ("service_id", "Услуга"),
                         ("supplier_id", "Поставщик"), ("opening", "Сальдо на начало"),
                         ("closing", "Сальдо на конец")),
    "history_debts": (("account_id", "ЛС"), ("service_id", "Услуга"), ("supplier_id", "Поставщик"),
                      ("charge_period", "Месяц долга"), ("amount", "Сумма долга"),
                      ("due_date", "Срок оплаты")),
    "history_penalties": (("account_id", "ЛС"), ("supplier_id", "Поставщик"),
                          ("charge_period", "Месяц долга"), ("accrued", "Пени начислено")),
    "history_readings": (("meter_id", "Прибор учёта"), ("read_on", "Дата показания"), ("value", "Показание")),
    "history_meter_volumes": (("meter_id", "Прибор учёта"), ("period", "Месяц"), ("method", "Способ расчёта"),
                              ("volume", "Объём")),
}
#: The export's encoding, separator and line end (an old Windows program).
ENCODING, SEPARATOR, LINE_END = "cp1251", ";", "\r\n"

#: An account number the registers do not have (inconsistency «unknown_account»).
UNKNOWN_ACCOUNT = "1099999999"

_AREA, _PERSON, _FIXED = ("maintenance", "capital_repair"), ("waste",), ("intercom",)
_METERED = ("cold_water", "hot_water", "electricity")
_SOI = {"cold_water_soi", "hot_water_soi", "sewerage_soi", "electricity_soi"}
_FALLBACK_MEAN_MILLI = {"cold_water": 3000, "hot_water": 2000, "electricity": 80_000}
_KOP = Decimal("0.01")
_MICRO = Decimal("0.000001")


@dataclass(frozen=True)
class Inconsistency:
    """A deliberate error of the synthetic export, in our codes.

    ``kind``: ``closing`` (a closing balance off from ``period`` on), ``debts`` (the
    debts by month at the end differ from the last closing), ``unknown_account`` (a
    charge row of an account the registers do not have: a reject at load),
    ``payment_twice`` (a payment the old system's balance counted twice from ``period``
    on). ``difference_kop`` is the old system's figure minus the right one (for
    ``unknown_account``: the amount of the refused row).
    """

    kind: str
    account_id: str
    supplier_id: str
    service_id: str
    period: str
    difference_kop: int
    description: str


# --------------------------------------------------------------------------- formatting


def _rub(kop: int) -> str:
    """Kopecks as rubles with a decimal comma: ``-12345`` -> ``-123,45``."""
    sign = "-" if kop < 0 else ""
    return f"{sign}{abs(kop) // 100},{abs(kop) % 100:02d}"


def _dec(value: Decimal) -> str:
    """A decimal with a comma and no trailing zeros: ``Decimal('1.2500')`` -> ``1,25``."""
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", ",")


def _milli(milli: int) -> str:
    return _dec(Decimal(milli) / 1000)


def _dmy(day: date) -> str:
    return f"{day:%d.%m.%Y}"


def _kop(value: Decimal) -> int:
    return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _write(path: Path, register: str, rows: Sequence[Sequence[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=SEPARATOR, lineterminator=LINE_END, quoting=csv.QUOTE_MINIMAL)
    writer.writerow([theirs for _, theirs in COLUMNS[register]])
    writer.writerows(rows)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue().encode(ENCODING))
    os.replace(tmp, path)


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mapping_toml(suppliers: dict[str, str]) -> str:
    """``mapping.toml`` of the export: the old columns and codes -> ours."""
    out = ["# Выгрузка прежней системы синтетического города -> наши колонки (docs/migration.md)",
           "[source]", f"system = {_toml_str(SOURCE_SYSTEM)}", ""]
    for register, cols in COLUMNS.items():
        out.append(f"[columns.{register}]")
        out += [f"{ours} = {_toml_str(theirs)}" for ours, theirs in cols]
        out.append("")
    for column, codes in (("service_id", OLD_SERVICE), ("supplier_id", suppliers), ("method", OLD_METHOD),
                          ("agent", OLD_AGENT)):
        out.append(f"[codes.{column}]")
        out += [f"{ours} = [{_toml_str(theirs)}]" for ours, theirs in sorted(codes.items())]
        out.append("")
    return "\n".join(out)


def _old_supplier(org_id: str) -> str:
    """The old system's supplier code: its own abbreviations."""
    known = {"vodokanal": "ВК", "teploset": "ТС", "energosbyt": "ЭСБ", "rotko": "РО ТКО", "domofon": "ДС",
             "fkr": "ФКР", "eirc": "ЕИРЦ"}
    if org_id in known:
        return known[org_id]
    if org_id.startswith("uk") and org_id[2:].isdigit():
        return f"УК-{org_id[2:]}"
    return org_id.upper()


# --------------------------------------------------------------------------- rules


def _rules_csv(home: Path, name: str) -> list[dict[str, str]]:
    path = home / "rules" / f"{name}.csv"
    text = (path.read_text(encoding="utf-8") if path.is_file()
            else resources.files("rules").joinpath(f"defaults/{name}.csv").read_text(encoding="utf-8"))
    return list(csv.DictReader(io.StringIO(text)))


def _defaults_dir() -> Path:
    return Path(str(resources.files("rules").joinpath("defaults")))


class _Tariffs:
    """The old system's tariff of a service and supplier in a month (rubles, Decimal).

    Our rule table's price in force on the month's first day; before the table's first
    row the old system had a lower price (the first one less 8 %, rounded to kopecks).
    """

    def __init__(self, rows: list[dict[str, str]]) -> None:
        self.rows: dict[str, list[tuple[date, str, Decimal]]] = defaultdict(list)
        for r in rows:
            self.rows[r["service_id"]].append(
                (date.fromisoformat(r["from"]), r.get("supplier_id") or "", Decimal(r["price"])))
        for v in self.rows.values():
            v.sort()
        self.cache: dict[tuple[str, str, Period], Decimal | None] = {}

    def price(self, service: str, supplier: str, period: Period) -> Decimal | None:
        key = (service, supplier, period)
        if key not in self.cache:
            self.cache[key] = self._price(service, supplier, period)
        return self.cache[key]

    def _price(self, service: str, supplier: str, period: Period) -> Decimal | None:
        rows = [r for r in self.rows.get(service, []) if r[1] == supplier] or [
            r for r in self.rows.get(service, []) if r[1] == ""]
        if not rows:
            return None
        in_force = [p for d, _, p in rows if d <= period.first]
        if in_force:
            return in_force[-1]
        return (rows[0][2] * Decimal("0.92")).quantize(_KOP, rounding=ROUND_HALF_UP)


# --------------------------------------------------------------------------- the city


def _read(home: Path, name: str) -> pl.DataFrame:
    path = home / "registers" / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"нет реестра {path}: сначала создайте город (generate_city)")
    return pl.read_csv(path, infer_schema=False)


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def city_start(home: Path) -> Period:
    """The city's first demo month, from its readings (the premises' meters are read from
    ``INDIVIDUAL_HISTORY_MONTHS`` months before it); the demo's start when there are none."""
    from pipeline.synth import DEMO_START, INDIVIDUAL_HISTORY_MONTHS

    meters = _read(home, "meters").filter(pl.col("premise_id").is_not_null())
    readings = _read(home, "readings").join(meters.select("meter_id"), on="meter_id", how="semi")
    if not readings.height:
        return Period.parse(DEMO_START)
    first = date.fromisoformat(str(readings["read_on"].min()))
    return Period.of(first).shift(INDIVIDUAL_HISTORY_MONTHS)


@dataclass
class _Meter:
    meter_id: str
    service: str
    premise: str
    installed: date | None
    removed: date | None
    verified: date | None
    initial: int  # thousandths
    city: dict[Period, tuple[date, int]]  # the city's readings: month -> (read_on, thousandths)

    def working(self, m: Period) -> bool:
        baseline = date(m.shift(-1).year, m.shift(-1).month, 20)
        return ((self.installed is None or self.installed <= baseline)
                and (self.removed is None or self.removed > m.last)
                and (self.verified is None or self.verified >= m.last))


def _meter_history(meter: _Meter, window: list[Period], rng: random.Random,
                   ) -> tuple[dict[Period, tuple[str, int]], list[tuple[date, int]]]:
    """(month -> (method, volume in thousandths)) and the invented readings before the city's.

    Before the city's first reading the old system's readings are made backwards from it
    (monotonic, never below the initial value); from it on the volumes are the city's
    reading differences, or the meter's average where a month has no usable pair.
    """
    city = meter.city
    months = sorted(city)
    diffs = [city[b][1] - city[a][1] for a, b in itertools.pairwise(months)
             if b == a.shift(1) and city[b][1] >= city[a][1]]
    mean = sorted(diffs)[len(diffs) // 2] if diffs else _FALLBACK_MEAN_MILLI[meter.service]
    if meter.service == "electricity":
        mean = max(1000, mean // 1000 * 1000)
    first_city = months[0] if months else window[-1].shift(1)
    start_value = city[first_city][1] if months else meter.initial + mean * (len(window) + 1)
    # Invented readings: months window[0]-1 .. first_city-1, backwards from the first city value.
    invented: dict[Period, tuple[date, int]] = {}
    value = start_value
    m = first_city.shift(-1)
    while m >= window[0].shift(-1):
        step = mean * rng.randint(80, 120) // 100
        if meter.service == "electricity":
            step = step // 1000 * 1000
        value = max(meter.initial, value - step)
        invented[m] = (date(m.year, m.month, rng.randint(15, 25)), value)
        m = m.shift(-1)
    readings = {**invented, **city}
    volumes: dict[Period, tuple[str, int]] = {}
    for m in window:
        if not meter.working(m):
            continue
        now, before = readings.get(m), readings.get(m.shift(-1))
        if now is not None and before is not None and now[1] >= before[1]:
            volumes[m] = ("meter", now[1] - before[1])
        else:
            volumes[m] = ("average", mean)
    emitted = sorted((d, v) for p, (d, v) in invented.items()
                     if (meter.installed is None or d >= meter.installed)
                     and (meter.working(p) or meter.working(p.shift(1))))
    return volumes, emitted


# --------------------------------------------------------------------------- the export


def write_old_export(home: Path, months: int = 24, last: Period | None = None, seed: int = 7,
                     inconsistencies: bool = True) -> list[Inconsistency]:
    """Write the old system's export of the city in ``home`` into ``home/migration/``.

    ``home/registers`` must hold a city of :func:`pipeline.synth.generate_city`. The
    ``months`` months end at ``last`` (default: the month before the city's first demo
    month, :func:`city_start`). Files: ``history_charges``, ``history_payments``,
    ``history_balances``, ``history_debts``, ``history_penalties``, ``history_readings``,
    ``history_meter_volumes`` (``.csv``, cp1251, ``;``, decimal comma) and ``mapping.toml``.

    Accounts pay by a behaviour drawn from ``seed``: most pay last month's bill in full
    during the next month (half of them in one payment per supplier that the old system
    split by service and month, half unsplit), a few are debtors who stop paying for many
    months (the first one after the 3rd month: with 24 months, debts over 20 months old),
    a few pay part of the bill, a few overpay (an advance). A few accounts start with a
    debt (a non-zero opening of the first month). Penalties («Пени») are accrued on the
    overdue items.

    With ``inconsistencies`` the export has four errors, returned in this order:
    ``closing`` (+123,45 ₽ in one closing, carried on), ``debts`` (the debts by month of
    one account 50,00 ₽ below its last closing), ``unknown_account`` (one charge row of
    an account not in the registers), ``payment_twice`` (one payment subtracted twice in
    the balance from its month on). Without them every account reconciles exactly.
    """
    from pipeline.allocate.ledger import ITEM_SCHEMA, PAID_KINDS, PAYMENT_SCHEMA, apply_period
    from pipeline.penalties.policy import load_policy
    from pipeline.penalties.scalar import bucket_penalty

    if months < (4 if inconsistencies else 1):
        raise ValueError("нужно хотя бы 4 месяца истории (с расхождениями) или 1 (без них)")
    home = Path(home)
    last = last if last is not None else city_start(home).shift(-1)
    window = [last.shift(i - months + 1) for i in range(months)]
    first_of = {m: m.first for m in window}
    last_of = {m: m.last for m in window}
    first = window[0]
    rng = random.Random(seed)
    policy = load_policy(_defaults_dir())
    due_dates: dict[Period, date] = {}

    def due_date(period: Period) -> date:
        if period not in due_dates:
            due_dates[period] = policy.due_date(period)
        return due_dates[period]

    accounts = _read(home, "accounts")
    premises = {r["premise_id"]: r for r in _read(home, "premises").iter_rows(named=True)}
    buildings = {r["building_id"]: r for r in _read(home, "buildings").iter_rows(named=True)}
    services_by_building: dict[str, list[tuple[str, str, date | None, date | None]]] = defaultdict(list)
    for r in _read(home, "building_services").iter_rows(named=True):
        services_by_building[r["building_id"]].append(
            (r["service_id"], r["supplier_id"], _day(r["from"]), _day(r["to"])))
    residents: dict[str, list[tuple[date | None, date | None]]] = defaultdict(list)
    for r in _read(home, "residents").iter_rows(named=True):
        residents[r["account_id"]].append((_day(r["from"]), _day(r["to"])))
    tariffs = _Tariffs(_rules_csv(home, "tariffs"))
    norms = {r["service_id"]: Decimal(r["value"]) for r in _rules_csv(home, "norms")}
    schemes = {r["service_id"]: r["penalty_scheme"] for r in _rules_csv(home, "services")}
    orgs = sorted(_read(home, "organizations")["org_id"].to_list())

    # Meters of the premises and their monthly volumes.
    city_readings: dict[str, dict[Period, tuple[date, int]]] = defaultdict(dict)
    for meter_id, read_on, value in _read(home, "readings").select("meter_id", "read_on", "value").sort(
            "meter_id", "read_on").iter_rows():
        day = date.fromisoformat(read_on)
        city_readings[meter_id][Period.of(day)] = (day, int(Decimal(value) * 1000))
    meter_volumes: dict[tuple[str, str], dict[Period, tuple[str, int]]] = {}  # (premise, service)
    volume_rows: list[tuple[str, ...]] = []
    reading_rows: list[tuple[str, ...]] = []
    for r in _read(home, "meters").filter(pl.col("premise_id").is_not_null()).sort("meter_id").iter_rows(
            named=True):
        if r["service_id"] not in _METERED:
            continue
        meter = _Meter(r["meter_id"], r["service_id"], r["premise_id"], _day(r["installed_on"]),
                       _day(r["removed_on"]), _day(r["verified_until"]),
                       int(Decimal(r["initial_value"]) * 1000), city_readings.get(r["meter_id"], {}))
        volumes, emitted = _meter_history(meter, window, rng)
        meter_volumes.setdefault((meter.premise, meter.service), {}).update(volumes)
        volume_rows += [(meter.meter_id, str(m), OLD_METHOD[method], _milli(v)) for m, (method, v) in
                        sorted(volumes.items())]
        reading_rows += [(meter.meter_id, _dmy(d), _milli(v)) for d, v in emitted]

    # Charges: per account and building service, month by month (the old system's figures).
    charges: dict[tuple[str, str, str, str], tuple[str, Decimal | None, Decimal | None, int]] = {}
    active: dict[str, list[Period]] = {}
    for a in accounts.sort("account_id").iter_rows(named=True):
        account, premise = a["account_id"], premises[a["premise_id"]]
        building = buildings[premise["building_id"]]
        opened, closed = _day(a["opened_on"]), _day(a["closed_on"])
        share = Decimal(a["share"] or "1")
        area = Decimal(premise["total_area"]) * share
        months_on = [m for m in window if (opened is None or opened <= last_of[m])
                     and (closed is None or closed >= first_of[m])]
        if not months_on:
            continue
        active[account] = months_on
        for m in months_on:
            m_first, m_last, month = first_of[m], last_of[m], str(m)
            persons = sum(1 for f, t in residents[account]
                          if (f is None or f <= m_last) and (t is None or t >= m_first))
            vols: dict[str, tuple[str, Decimal]] = {}
            for service in ("cold_water", "hot_water", "electricity"):
                metered = meter_volumes.get((premise["premise_id"], service), {}).get(m)
                if metered is not None:
                    vols[service] = (metered[0], (Decimal(metered[1]) / 1000 * share).quantize(_MICRO))
                elif persons and service in norms:
                    vols[service] = ("norm", norms[service] * persons)
            for service, supplier, s_from, s_to in services_by_building[premise["building_id"]]:
                if (s_from and s_from > m_last) or (s_to and s_to < m_first) or service not in OLD_SERVICE:
                    continue
                price = tariffs.price(service, supplier, m)
                if price is None:
                    continue
                if service in _AREA:
                    method, volume = "area", area
                elif service == "heating":
                    heat_norm = norms.get("heating", Decimal("0.0198"))
                    method, volume = "heating", (area * heat_norm).quantize(_MICRO)
                elif service in _PERSON:
                    method, volume = "per_person", Decimal(persons)
                elif service in _FIXED:
                    method, volume = "fixed", share
                elif service in _METERED:
                    if service not in vols:
                        continue
                    method, volume = vols[service]
                elif service == "sewerage":
                    parts = [vols[s] for s in ("cold_water", "hot_water") if s in vols]
                    if not parts:
                        continue
                    method = "meter" if all(p[0] == "meter" for p in parts) and len(parts) == 2 else "norm"
                    volume = sum((p[1] for p in parts), Decimal(0))
                elif service in _SOI:
                    norm = norms.get(service, Decimal(0))
                    total = Decimal(building["total_area"])
                    common = Decimal(building["common_area"])
                    method = "common_property"
                    volume = (norm * common * area / total).quantize(_MICRO) if total else Decimal(0)
                else:
                    continue
                amount = _kop(volume * price)
                if amount <= 0:
                    continue
                charges[(account, month, service, supplier)] = (method, volume, price, amount)
    if len(active) < 8:
        raise ValueError("нужен город хотя бы из 8 лицевых счетов с историей")

    # Behaviours (fixed per account by the seed).
    ids = sorted(active)
    shuffled = ids[:]
    rng.shuffle(shuffled)
    n = len(ids)
    n_debtors, n_over, n_partial = max(2, n // 12), max(2, n // 15), max(1, n // 15)
    debtors = shuffled[:n_debtors]
    overpayers = shuffled[n_debtors:n_debtors + n_over]
    partial = shuffled[n_debtors + n_over:n_debtors + n_over + n_partial]
    regular = sorted(shuffled[n_debtors + n_over + n_partial:])
    split_accounts = set(regular[0::3])
    stop_at = {a: (3 if i == 0 else rng.randint(6, max(6, months - 4))) for i, a in enumerate(debtors)}
    with_opening = [debtors[0], *partial, *[a for a in regular if a not in split_accounts][:2]]

    bill: dict[tuple[str, str], int] = defaultdict(int)  # (account, month) -> charges
    by_supplier: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)  # (acc, month, supplier)
    suppliers_of: dict[tuple[str, str], set[str]] = defaultdict(set)  # (acc, month) -> suppliers
    by_month: dict[str, list[tuple[str, str, str, int]]] = defaultdict(list)
    for (account, month, service, supplier), (_, _, _, amount) in sorted(charges.items()):
        bill[(account, month)] += amount
        by_supplier[(account, month, supplier)][service] = amount
        suppliers_of[(account, month)].add(supplier)
        by_month[month].append((account, service, supplier, amount))

    # Openings: a debt of one or two of the account's services, as an item of the month before.
    opening: dict[tuple[str, str, str], int] = {}
    before_first = str(first.shift(-1))
    for account in with_opening:
        if active[account][0] != first:
            continue
        keys = sorted({(s, sup) for (a, s, sup, _) in by_month[str(first)] if a == account})
        for service, supplier in rng.sample(keys, min(len(keys), rng.randint(1, 2))):
            opening[(account, service, supplier)] = rng.randint(500, 8000) * 100 + rng.randint(0, 99)

    # Payments.
    # (payment_id, agent, account, paid_on, month booked, amount, service, supplier, charge period)
    pay_rows: list[tuple[str, str, str, date, str, int, str, str, str]] = []
    counter = 0

    def payment_id() -> str:
        nonlocal counter
        counter += 1
        return f"П-{counter:06d}"

    agents = sorted(OLD_AGENT)
    for account in ids:
        agent = agents[rng.randrange(len(agents))]
        opening_total = sum(v for (a, _, _), v in opening.items() if a == account)
        for i, m in enumerate(window):
            if i == 0:
                continue
            prev = str(m.shift(-1))
            owed = bill.get((account, prev), 0)
            day = date(m.year, m.month, rng.randint(1, 25))
            if account in split_accounts:
                for supplier in sorted(suppliers_of.get((account, prev), ())):
                    pid = payment_id()
                    for service, amount in sorted(by_supplier[(account, prev, supplier)].items()):
                        pay_rows.append((pid, agent, account, day, str(m), amount, service, supplier, prev))
                continue
            if account in debtors:
                amount = owed if i < stop_at[account] else 0
                if account == debtors[-1] and i == months - 2 and len(debtors) > 1:
                    amount = 150_000  # one small payment after a long silence
            elif account in overpayers:
                amount = (owed // 100_000 + 1) * 100_000 + rng.randint(0, 20) * 10_000 if owed else 0
            elif account in partial:
                amount = owed * rng.randint(50, 90) // 100
            else:
                amount = owed + (opening_total // 4 if 1 <= i <= 4 else 0)
                if i == 4:
                    amount += opening_total - 4 * (opening_total // 4)
            if amount > 0:
                pay_rows.append((payment_id(), agent, account, day, str(m), amount, "", "", ""))

    # The ledger month by month: how the unsplit payments were applied, what stays open.
    unsplit = [a for a in ids if a not in split_accounts]
    items = pl.DataFrame([
        {"account_id": a, "service_id": s, "supplier_id": sup, "charge_period": before_first,
         "outstanding_kop": v} for (a, s, sup), v in sorted(opening.items())], schema=ITEM_SCHEMA)
    paid: dict[tuple[str, str, str, str], int] = defaultdict(int)  # (acc, month, svc, sup)
    bucket_pay: dict[tuple[str, str, str], list[tuple[date, int]]] = defaultdict(list)  # (acc, sup, cp)
    unsplit_set = set(unsplit)
    pays_by_month: dict[str, list[tuple[str, str, str, date, str, int, str, str, str]]] = defaultdict(list)
    for p in pay_rows:
        pays_by_month[p[4]].append(p)
    for m in window:
        month = str(m)
        ch = pl.DataFrame([{"account_id": a, "service_id": s, "supplier_id": sup, "amount_kop": v}
                           for a, s, sup, v in by_month[month] if a in unsplit_set],
                          schema={"account_id": pl.String, "service_id": pl.String, "supplier_id": pl.String,
                                  "amount_kop": pl.Int64})
        pays = pl.DataFrame([{"payment_id": p[0], "agent": p[1], "account_id": p[2], "paid_on": p[3],
                              "period": None, "amount_kop": p[5]}
                             for p in pays_by_month[month] if p[2] in unsplit_set], schema=PAYMENT_SCHEMA)
        alloc, items = apply_period(items, ch, pays, month)
        for r in alloc.iter_rows(named=True):
            if r["service_id"] is None:
                raise AssertionError(f"an unallocated advance of {r['account_id']} in {month}")
            if r["kind"] in PAID_KINDS:
                paid[(r["account_id"], month, r["service_id"], r["supplier_id"])] += r["amount_kop"]
            if r["charge_period"] is not None and r["amount_kop"] > 0:
                bucket_pay[(r["account_id"], r["supplier_id"], r["charge_period"])].append(
                    (r["paid_on"], r["amount_kop"]))
    for _, _, account, _, month, amount, service, supplier, _ in pay_rows:
        if account in split_accounts:
            paid[(account, month, service, supplier)] += amount

    # Penalties on the overdue items of the unsplit accounts (the split ones pay in time).
    buckets: dict[tuple[str, str, str], int] = defaultdict(int)
    bucket_scheme: dict[tuple[str, str, str], str] = {}
    for (account, month, service, supplier), line in charges.items():
        if account in unsplit_set:
            buckets[(account, supplier, month)] += line[3]
            bucket_scheme[(account, supplier, month)] = schemes.get(service, "standard")
    for (account, service, supplier), debt in opening.items():
        buckets[(account, supplier, before_first)] += debt
        bucket_scheme[(account, supplier, before_first)] = schemes.get(service, "standard")
    penalty: dict[tuple[str, str, str], int] = defaultdict(int)  # (acc, month, supplier)
    accrued: dict[tuple[str, str, str], int] = {}
    for key in sorted(buckets):
        account, supplier, cp = key
        period = Period.parse(cp)
        due = due_date(period)
        payments = sorted(bucket_pay.get(key, []))
        grace_end = due + timedelta(days=30)
        if sum(kop for day, kop in payments if day <= grace_end) >= buckets[key]:
            continue  # paid before any penalty is due
        before = 0
        for m in window:
            if m <= period or last_of[m] <= grace_end:
                continue
            cumulative = bucket_penalty(buckets[key], period, due, last_of[m], payments, policy,
                                        bucket_scheme[key]).penalty_kop
            if cumulative != before:
                penalty[(account, str(m), supplier)] += cumulative - before
                before = cumulative
            if sum(kop for day, kop in payments if day <= last_of[m]) >= buckets[key]:
                break  # paid off: nothing more accrues
        if before:
            accrued[key] = before

    # Balances per account, service and supplier, month by month.
    key_sets: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for account, _, service, supplier in charges:
        key_sets[account].add((service, supplier))
    for account, service, supplier in opening:
        key_sets[account].add((service, supplier))
    for account, _, supplier in penalty:
        key_sets[account].add((PENALTY_SERVICE, supplier))
    balances: dict[tuple[str, str, str, str], list[int]] = {}  # (acc, month, svc, sup) -> [opening, closing]
    for account in ids:
        for service, supplier in sorted(key_sets[account]):
            value = opening.get((account, service, supplier), 0)
            started = False
            for m in window:
                month = str(m)
                flow = (charges.get((account, month, service, supplier), (0, 0, 0, 0))[3]
                        - paid.get((account, month, service, supplier), 0))
                if service == PENALTY_SERVICE:
                    flow += penalty.get((account, month, supplier), 0)
                if not started and not flow and not value:
                    continue
                balances[(account, month, service, supplier)] = [value if not started else 0, value + flow]
                started = True
                value += flow
            # the first row's opening is kept; the others are left empty on output

    # Debts at the end of the last month: the ledger's open items (unsplit), the last bill (split).
    debts: dict[tuple[str, str, str, str], int] = {}  # (acc, svc, sup, cp or "") -> amount
    for r in items.iter_rows(named=True):
        item = (r["account_id"], r["service_id"], r["supplier_id"], r["charge_period"] or "")
        debts[item] = r["outstanding_kop"]
    for (account, month, service, supplier), line in charges.items():
        if account in split_accounts and month == str(last):
            debts[(account, service, supplier, month)] = line[3]
    for (account, month, supplier), kop in penalty.items():
        debts[(account, PENALTY_SERVICE, supplier, month)] = kop

    found: list[Inconsistency] = []
    extra_charges: list[tuple[str, ...]] = []
    if inconsistencies:
        found = _spoil(window, rng, sorted(split_accounts), debtors, balances, debts, pay_rows, extra_charges,
                       suppliers={o: _old_supplier(o) for o in orgs})

    # Files.
    out = home / "migration"
    out.mkdir(parents=True, exist_ok=True)
    suppliers = {o: _old_supplier(o) for o in orgs}
    charge_rows: list[tuple[str, ...]] = [
        (a, mo, OLD_SERVICE[s], suppliers[sup], OLD_METHOD[line[0]], "" if line[1] is None else _dec(line[1]),
         "" if line[2] is None else _dec(line[2]), _rub(line[3]))
        for (a, mo, s, sup), line in sorted(charges.items())]
    charge_rows += [(a, mo, OLD_SERVICE[PENALTY_SERVICE], suppliers[sup], "", "", "", _rub(kop))
                    for (a, mo, sup), kop in sorted(penalty.items()) if kop]
    charge_rows += extra_charges
    charge_rows.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
    _write(out / "history_charges.csv", "history_charges", charge_rows)
    _write(out / "history_payments.csv", "history_payments", [
        (pid, OLD_AGENT[agent], a, _dmy(day), mo, _rub(amount), OLD_SERVICE[s] if s else "",
         suppliers[sup] if sup else "", cp) for pid, agent, a, day, mo, amount, s, sup, cp in pay_rows])
    first_rows: set[tuple[str, str, str]] = set()
    balance_rows: list[tuple[str, ...]] = []
    for (acc, mo, s, sup), (op, cl) in sorted(balances.items()):
        head = (acc, s, sup) not in first_rows
        first_rows.add((acc, s, sup))
        balance_rows.append((acc, mo, OLD_SERVICE[s], suppliers[sup], _rub(op) if head else "", _rub(cl)))
    _write(out / "history_balances.csv", "history_balances", balance_rows)
    _write(out / "history_debts.csv", "history_debts", [
        (a, OLD_SERVICE[s], suppliers[sup], cp, _rub(v),
         _dmy(due_date(Period.parse(cp))) if cp and s != PENALTY_SERVICE else "")
        for (a, s, sup, cp), v in sorted(debts.items()) if v])
    _write(out / "history_penalties.csv", "history_penalties", [
        (a, suppliers[sup], cp, _rub(v)) for (a, sup, cp), v in sorted(accrued.items())])
    _write(out / "history_readings.csv", "history_readings", reading_rows)
    _write(out / "history_meter_volumes.csv", "history_meter_volumes", volume_rows)
    (out / "mapping.toml").write_text(mapping_toml(suppliers), encoding="utf-8")
    return found


def _spoil(window: list[Period], rng: random.Random, split_accounts: list[str], debtors: list[str],
           balances: dict[tuple[str, str, str, str], list[int]], debts: dict[tuple[str, str, str, str], int],
           pay_rows: list[tuple[str, str, str, date, str, int, str, str, str]],
           extra_charges: list[tuple[str, ...]], suppliers: dict[str, str]) -> list[Inconsistency]:
    """Put the four deliberate errors into the figures; return them."""
    found: list[Inconsistency] = []

    def shift_closing(account: str, service: str, supplier: str, since: str, by: int) -> None:
        for (a, mo, s, sup), row in balances.items():
            if (a, s, sup) == (account, service, supplier) and mo >= since:
                if mo > since:
                    row[0] += by if row[0] else 0
                row[1] += by

    # 1. A closing balance off by +123.45 from one month on.
    account = split_accounts[0]
    month = str(window[len(window) // 2])
    service, supplier = sorted((s, sup) for (a, mo, s, sup) in balances if a == account and mo == month)[0]
    shift_closing(account, service, supplier, month, 12345)
    found.append(Inconsistency("closing", account, supplier, service, month, 12345,
                               "сальдо на конец месяца больше на 123,45 ₽; "
                               "дальше прежняя система несла ошибку"))

    # 2. The debts by month of one account 50.00 below its last closing.
    last = str(window[-1])
    debtor = debtors[0]
    key = min(k for k, v in debts.items() if k[0] == debtor and k[1] != "penalty" and v >= 5000)
    debts[key] -= 5000
    found.append(Inconsistency("debts", debtor, key[2], key[1], last, -5000,
                               f"долги по месяцам на 50,00 ₽ меньше сальдо на конец (долг за {key[3]})"))

    # 3. A charge row of an account the registers do not have.
    month = str(window[rng.randrange(len(window))])
    extra_charges.append((UNKNOWN_ACCOUNT, month, OLD_SERVICE["cold_water"], suppliers.get("vodokanal", "ВК"),
                          OLD_METHOD["norm"], "4,745", "52,28", "248,07"))
    found.append(Inconsistency("unknown_account", UNKNOWN_ACCOUNT, "vodokanal", "cold_water", month, 24807,
                               "начисление по лицевому счёту, которого нет в реестрах"))

    # 4. One payment (one supplier's part of a split account) subtracted twice from its month on.
    account = split_accounts[1]
    month = str(window[len(window) // 3])
    parts = sorted((p for p in pay_rows if p[2] == account and p[4] == month), key=lambda p: (p[7], p[6]))
    by_payment: dict[str, list[tuple[str, str, str, date, str, int, str, str, str]]] = defaultdict(list)
    for p in parts:
        by_payment[p[0]].append(p)
    single = [ps for ps in by_payment.values() if len(ps) == 1]
    chosen = (single or list(by_payment.values()))[0][0]
    shift_closing(account, chosen[6], chosen[7], month, -chosen[5])
    found.append(Inconsistency("payment_twice", account, chosen[7], chosen[6], month, -chosen[5],
                               f"платёж {chosen[0]} от {_dmy(chosen[3])} на {_rub(chosen[5])} ₽ учтён "
                               "в сальдо дважды"))
    return found


# --------------------------------------------------------------------------- the sample in data/

#: The sample's city: ``generate_city(home, SAMPLE_ACCOUNTS, start=DEMO_START, months=3, seed=2026)``.
SAMPLE_ACCOUNTS = 20
INCONSISTENCY_COLUMNS = ("kind", "account_id", "supplier_id", "service_id", "period", "difference_kop",
                         "description")


def write_sample(target: Path, accounts: int = SAMPLE_ACCOUNTS, seed: int = 7) -> list[Inconsistency]:
    """Write the sample of ``data/migration-demo/``: a small demo city and its old export.

    ``target/registers/`` and ``target/rules/tariffs.csv`` are the city (as
    :func:`pipeline.synth.generate_city` wrote them), ``target/migration/`` the export and
    its ``mapping.toml``, ``target/inconsistencies.csv`` (UTF-8) the deliberate errors.
    Other files in ``target`` (its README) are left alone.
    """
    import shutil
    import tempfile

    from pipeline.synth import DEMO_START, generate_city

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        generate_city(home, accounts=accounts, start=Period.parse(DEMO_START), months=3, seed=2026)
        found = write_old_export(home, seed=seed)
        for folder in ("registers", "migration"):
            shutil.rmtree(target / folder, ignore_errors=True)
            shutil.copytree(home / folder, target / folder)
        (target / "rules").mkdir(exist_ok=True)
        shutil.copyfile(home / "rules" / "tariffs.csv", target / "rules" / "tariffs.csv")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INCONSISTENCY_COLUMNS)
    writer.writerows([i.kind, i.account_id, i.supplier_id, i.service_id, i.period, i.difference_kop,
                      i.description] for i in found)
    (target / "inconsistencies.csv").write_text(buffer.getvalue(), encoding="utf-8")
    return found


if __name__ == "__main__":  # python -m pipeline.migrate.synth data/migration-demo
    import sys

    for item in write_sample(Path(sys.argv[1] if len(sys.argv) > 1 else "data/migration-demo")):
        print(item)
