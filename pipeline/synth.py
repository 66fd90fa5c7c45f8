"""Deterministic synthetic city (синтетический город) behind ``billing demo``.

:func:`generate_city` writes every register of ``CONTRACT.md`` as CSV into
``HOME/registers`` and the managing organisations' maintenance tariffs into
``HOME/rules/tariffs.csv``; :func:`generate_payments` invents the payments of a
month from what the receipts asked. Both are pure functions of their arguments
and the seed: the same call gives byte-identical files.

Everything is vectorised with NumPy and Polars (Python loops run only over
periods, services and short name lists), so a city of a million accounts takes
seconds. Readings are written month by month to keep memory flat.

The city is small-town realistic on purpose: split ownership, successions of
owners, people moving in and out inside the demo months, absences, meters
expiring during and before the demo, missing, late, tenfold, negative and
rolled-over readings, refused access to meters, building meters (ОДПУ) of heat
in about half of the buildings and of water and electricity in about 40 % with
monthly readings over two years, outages, benefits and chronic debtors; the
engine has to cope with all of it.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.dates import Period

#: First demo month: December, so that the default three months show heating charged by the
#: previous year's building-meter average, its yearly correction in January and February
#: (the city moves in with the year before it migrated: pipeline.demo, docs/migration.md).
DEMO_START = "2026-12"

#: Columns of every register file, in order (``CONTRACT.md``; ``meters`` carries
#: both ``premise_id`` and ``building_id`` and the extra ``initial_value``).
REGISTER_COLUMNS: dict[str, tuple[str, ...]] = {
    "organizations": (
        "org_id", "name", "inn", "kpp", "role", "bank_name", "bik", "account",
        "corr_account", "address", "phone",
    ),
    "buildings": ("building_id", "address", "manager_id", "total_area", "common_area"),
    "premises": (
        "premise_id", "building_id", "number", "kind", "total_area", "rooms", "meter_possible",
        "living_area", "entrance", "floor",
    ),
    "accounts": (
        "account_id", "premise_id", "payer_kind", "payer_name", "share", "owners",
        "opened_on", "closed_on", "email",
    ),
    "building_services": ("building_id", "service_id", "supplier_id", "from", "to"),
    "residents": ("person_id", "account_id", "full_name", "birth_date", "kind", "from", "to"),
    "absences": ("person_id", "from", "to"),
    "meters": (
        "meter_id", "service_id", "premise_id", "building_id", "serial", "installed_on",
        "removed_on", "verified_until", "digits", "initial_value",
    ),
    "readings": ("meter_id", "read_on", "value", "source"),
    "benefits": ("person_id", "category", "from", "to"),
    "outages": ("building_id", "service_id", "started_at", "ended_at"),
}
#: Optional registers the city also writes (``schemas/registers.py``; not in ``CONTRACT.md``).
OPTIONAL_REGISTER_COLUMNS: dict[str, tuple[str, ...]] = {
    "access_refusals": ("premise_id", "service_id", "refused_on", "resolved_on"),
}

#: Columns of a payment register (``generate_payments`` output), all strings.
PAYMENT_COLUMNS: tuple[str, ...] = ("payment_id", "paid_on", "account_id", "amount", "period",
                                    "agent")

#: Columns of ``rules/tariffs.csv``.
TARIFF_COLUMNS: tuple[str, ...] = ("service_id", "supplier_id", "from", "price", "source")

#: Date from which the demo maintenance tariffs apply.
MAINTENANCE_TARIFF_FROM = date(2025, 7, 1)
MAINTENANCE_TARIFF_SOURCE = "Решение общего собрания собственников (демо)"

#: Payment behaviour of an account, with its share of accounts (fixed per account by the seed).
PAYMENT_BEHAVIOURS: tuple[tuple[str, float], ...] = (
    ("full", 0.78),
    ("partial", 0.09),
    ("none", 0.07),
    ("overpay", 0.04),
    ("instalments", 0.02),
)
PAYMENT_AGENTS: tuple[tuple[str, float], ...] = (
    ("sber", 0.45), ("vtb", 0.15), ("post", 0.15), ("lk", 0.25),
)

# --------------------------------------------------------------------------- constants

_CITY = "г. Энск"
_EPOCH = date(1970, 1, 1)
_NO_DATE = -(2**31)  # sentinel for an empty date in int-day arrays
_SERVICES_START = date(2015, 1, 1)

# Service ids of rules/defaults/services.csv, in their receipt order.
COLD, HOT, SEWERAGE, ELECTRICITY, HEATING = (
    "cold_water", "hot_water", "sewerage", "electricity", "heating",
)
MAINTENANCE, WASTE, INTERCOM, CAPITAL_REPAIR = "maintenance", "waste", "intercom", "capital_repair"
SERVICE_ORDER: tuple[str, ...] = (
    COLD, HOT, SEWERAGE, ELECTRICITY, HEATING, MAINTENANCE, WASTE, INTERCOM, CAPITAL_REPAIR,
)
#: Resources for common property (КР на СОИ), part of the housing charge: the manager bills them.
COMMON_PROPERTY: tuple[str, ...] = ("cold_water_soi", "hot_water_soi", "sewerage_soi",
                                    "electricity_soi")

# Organisations other than the management companies: (org_id, name, role, address).
_FIXED_ORGS: tuple[tuple[str, str, str, str], ...] = (
    ("eirc", "ЕИРЦ г. Энска (АО «Энский расчётный центр»)", "billing_centre",
     "г. Энск, ул. Ленина, д. 12"),
    ("vodokanal", "МУП «Водоканал г. Энска»", "supplier", "г. Энск, ул. Набережная, д. 3"),
    ("teploset", "АО «Теплосеть Энска»", "supplier", "г. Энск, ул. Энергетиков, д. 8"),
    ("energosbyt", "ПАО «Энскэнергосбыт»", "supplier", "г. Энск, пр-т Мира, д. 45"),
    ("rotko", "ООО «Региональный оператор ТКО»", "supplier", "г. Энск, ул. Заводская, д. 17"),
    ("domofon", "ООО «Домофон-Сервис»", "supplier", "г. Энск, ул. Садовая, д. 21"),
    ("fkr", "НКО «Фонд капитального ремонта многоквартирных домов»", "capital_repair",
     "г. Энск, ул. Советская, д. 2"),
)
_MANAGEMENT_ORGS: tuple[tuple[str, str, str], ...] = (
    ("uk1", "ООО «УК Уютный дом»", "г. Энск, ул. Гагарина, д. 10"),
    ("uk2", "ООО «УК Северная»", "г. Энск, ул. Кирова, д. 31"),
    ("uk3", "ООО «Жилсервис»", "г. Энск, ул. Чкалова, д. 4"),
    ("uk4", "ООО «УК Центральная»", "г. Энск, ул. Октябрьская, д. 15"),
)
# Supplier of each building service except maintenance (the manager) and intercom.
_SUPPLIER_OF = {
    COLD: "vodokanal", HOT: "teploset", SEWERAGE: "vodokanal", ELECTRICITY: "energosbyt",
    HEATING: "teploset", WASTE: "rotko", INTERCOM: "domofon", CAPITAL_REPAIR: "fkr",
}
_BANKS: tuple[tuple[str, str], ...] = (
    ("ПАО Сбербанк", "045004711"),
    ("Банк ВТБ (ПАО)", "045004722"),
    ("АО «Альфа-Банк»", "045004733"),
    ("АО «Россельхозбанк»", "045004744"),
)
_TAX_OFFICE = "5406"

_STREETS: tuple[str, ...] = (
    "ул. Ленина", "ул. Советская", "пр-т Мира", "ул. Гагарина", "ул. Пушкина",
    "ул. Молодёжная", "ул. Школьная", "ул. Садовая", "ул. Лесная", "ул. Заводская",
    "ул. Набережная", "ул. Октябрьская", "ул. Комсомольская", "ул. Строителей",
    "ул. Первомайская", "ул. Кирова", "ул. Чкалова", "ул. Железнодорожная", "ул. Полевая",
    "ул. Луговая", "ул. Зелёная", "ул. Новая", "ул. Центральная", "ул. Мичурина",
    "ул. Некрасова", "ул. Лермонтова", "ул. Горького", "ул. Чехова", "ул. Суворова",
    "б-р Победы", "ул. Энергетиков", "ул. Космонавтов", "ул. Рабочая", "ул. Дружбы",
)

# (male, female) surname forms.
_SURNAME_STEMS: tuple[str, ...] = (
    "Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов",
    "Михайлов", "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев",
    "Семёнов", "Егоров", "Павлов", "Козлов", "Степанов", "Николаев", "Орлов",
    "Андреев", "Макаров", "Никитин", "Захаров", "Зайцев", "Соловьёв", "Борисов",
)
_SURNAMES: tuple[tuple[str, str], ...] = (
    *((s, s + "а") for s in _SURNAME_STEMS),
    ("Успенский", "Успенская"), ("Троицкий", "Троицкая"), ("Белых", "Белых"),
    ("Черных", "Черных"),
)
_MALE_NAMES: tuple[str, ...] = (
    "Александр", "Сергей", "Дмитрий", "Андрей", "Алексей", "Максим", "Иван", "Михаил",
    "Николай", "Владимир", "Евгений", "Артём", "Павел", "Юрий", "Олег", "Виктор", "Игорь",
    "Роман", "Константин", "Денис", "Антон", "Григорий", "Пётр", "Василий", "Фёдор",
    "Кирилл", "Егор", "Илья", "Никита", "Степан",
)
_FEMALE_NAMES: tuple[str, ...] = (
    "Елена", "Ольга", "Татьяна", "Наталья", "Ирина", "Светлана", "Анна", "Мария",
    "Екатерина", "Юлия", "Марина", "Галина", "Людмила", "Валентина", "Надежда", "Вера",
    "Любовь", "Ксения", "Дарья", "Алина", "Полина", "Софья", "Виктория", "Анастасия",
    "Евгения", "Александра", "Оксана", "Лариса", "Нина", "Тамара",
)
# Patronymic stems: stem + "ич" (male) or stem + "на" (female).
_PATRONYMIC_STEMS: tuple[str, ...] = (
    "Александров", "Сергеев", "Дмитриев", "Андреев", "Алексеев", "Иванов", "Михайлов",
    "Николаев", "Владимиров", "Евгеньев", "Павлов", "Юрьев", "Олегов", "Викторов", "Игорев",
    "Романов", "Константинов", "Денисов", "Антонов", "Григорьев", "Петров", "Васильев",
    "Фёдоров", "Кириллов", "Геннадьев", "Анатольев", "Борисов", "Валерьев", "Вячеславов",
    "Леонидов",
)
_COMPANY_PAYERS: tuple[str, ...] = (
    "ООО «Продукты у дома»", "ООО «Аптечный пункт»", "ООО «Парикмахерская Локон»",
    "ООО «Цветочная лавка»", "ООО «Пекарня Колосок»", "ООО «Ремонт обуви»",
    "ООО «Стоматология Улыбка»", "ООО «Химчистка Снежинка»", "ООО «Книжный двор»",
    "АО «Энский банк»", "ООО «Оптика для всех»", "ООО «Зоомагазин Барсик»",
)
_TRANSLIT = dict(zip(
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p",
     "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya"],
    strict=True,
))

# Typical house series: (floors, entrances, flats per floor), with weights.
_HOUSE_TYPES = np.array([
    (5, 4, 4), (5, 6, 4), (9, 4, 4), (9, 2, 4), (5, 2, 3), (3, 2, 4), (12, 1, 4),
    (16, 2, 4), (10, 3, 4), (17, 1, 6), (2, 2, 2),
])
_HOUSE_WEIGHTS = np.array([0.22, 0.08, 0.12, 0.14, 0.08, 0.06, 0.08, 0.06, 0.06, 0.05, 0.05])

_SOURCES = ("lk", "gis", "bank", "controller")
_SOURCE_P = np.array([0.45, 0.20, 0.20, 0.15])
_BENEFIT_CATEGORIES = ("veteran_labour", "disabled", "large_family")

# Heating season profile (share of the yearly heat per calendar month, ×12/sum).
_HEAT_PROFILE = np.array([1.8, 1.6, 1.3, 0.8, 0.2, 0.0, 0.0, 0.0, 0.2, 0.9, 1.4, 1.7])
_HEAT_PROFILE = _HEAT_PROFILE * 12 / _HEAT_PROFILE.sum()
_HEAT_NORM = 0.0198  # Gcal per m² per month, the default heating norm

#: Months of readings of the premises' meters before the first demo month: an average needs
#: at least 3 months of the meter's own history (п.59(1)), also before a meter failed.
INDIVIDUAL_HISTORY_MONTHS = 5
#: Months of building-meter (ОДПУ) readings before the first demo month. Heating paid evenly
#: is charged by the previous calendar year's volume (formula 3(1)), which needs the reading
#: of the December before that year: at most 24 months before the first demo month.
BUILDING_HISTORY_MONTHS = 25
# Norms the building meters' volumes are built around (rules/defaults/norms.csv), in
# thousandths: per person a month, and for common property (СОИ) per m² of common area a month.
_NORM_MILLI = {COLD: 4745, HOT: 3284, ELECTRICITY: 75_000}
_SOI_NORM_MILLI = {COLD: 26, HOT: 24, ELECTRICITY: 600}
#: A small town still has this many buildings (given ≥ 15 premises a building), so that
#: buildings with and without building meters both appear.
_MIN_BUILDINGS = 4


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CitySummary:
    """What :func:`generate_city` wrote: row counts of the main registers."""

    organizations: int
    buildings: int
    premises: int
    accounts: int
    residents: int
    meters: int
    readings: int
    building_meters: int = 0
    access_refusals: int = 0

    def __str__(self) -> str:
        return (
            f"Синтетический город: организаций {self.organizations}, домов {self.buildings}, "
            f"помещений {self.premises}, лицевых счетов {self.accounts}, "
            f"жителей {self.residents}, приборов учёта {self.meters} "
            f"(из них общедомовых {self.building_meters}), показаний {self.readings}, "
            f"актов о недопуске {self.access_refusals}"
        )


# --------------------------------------------------------------------------- small helpers


def _day(d: date) -> int:
    """Days since 1970-01-01."""
    return (d - _EPOCH).days


def _dates(days: np.ndarray, name: str) -> pl.Series:
    """Int days since the epoch as a Date column; ``_NO_DATE`` becomes null."""
    days = np.asarray(days, dtype=np.int64)
    empty = days == _NO_DATE
    s = pl.Series(name, np.where(empty, 0, days).astype(np.int32)).cast(pl.Date)
    if empty.any():
        s = pl.select(pl.when(pl.Series(~empty)).then(s).alias(name)).to_series()
    return s


def _fixed(values: np.ndarray, scale: int, name: str) -> pl.Series:
    """Non-negative integers in units of 10**-scale as decimal text (``12.340``)."""
    s = pl.Series(name, np.asarray(values, dtype=np.int64))
    unit = 10**scale
    return pl.select(
        pl.concat_str(
            [(s // unit).cast(pl.String), pl.lit("."), (s % unit).cast(pl.String).str.zfill(scale)]
        ).alias(name)
    ).to_series()


def _ids(prefix: str, numbers: np.ndarray, width: int, name: str) -> pl.Series:
    """``prefix`` + zero-padded number, e.g. ``P0000001``."""
    s = pl.Series(name, np.asarray(numbers, dtype=np.int64))
    return pl.select(
        pl.concat_str([pl.lit(prefix), s.cast(pl.String).str.zfill(width)]).alias(name)
    ).to_series()


def _building_ids(index: np.ndarray) -> pl.Series:
    return _ids("B", np.asarray(index) + 1, 3, "building_id")


def _premise_ids(index: np.ndarray) -> pl.Series:
    return _ids("P", np.asarray(index) + 1, 7, "premise_id")


def _account_ids(index: np.ndarray) -> pl.Series:
    """Ten-digit account numbers starting with ``10``: 1000000001, 1000000002, ..."""
    return _ids("", np.asarray(index) + 1_000_000_001, 10, "account_id")


def _person_ids(index: np.ndarray) -> pl.Series:
    return _ids("R", np.asarray(index) + 1, 7, "person_id")


def _meter_ids(index: np.ndarray) -> pl.Series:
    return _ids("M", np.asarray(index) + 1, 7, "meter_id")


def _pick(values: tuple[str, ...] | list[str], index: np.ndarray, name: str) -> pl.Series:
    """``values[index]`` as a string column."""
    return pl.Series(name, list(values), dtype=pl.String).gather(
        pl.Series(np.asarray(index, dtype=np.int64))
    ).alias(name)


def _inn(rng: np.random.Generator) -> str:
    """A 10-digit legal-entity INN with a correct check digit (tax office ``5406``)."""
    body = _TAX_OFFICE + "".join(str(d) for d in rng.integers(0, 10, 5))
    weights = (2, 4, 10, 3, 5, 9, 4, 6, 8)
    check = sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11 % 10
    return body + str(check)


def _control_key(bik: str, account: str, corr: bool) -> str:
    """The account with its control key (9th digit) set from the BIK (ЦБ РФ 1997 algorithm)."""
    prefix = "0" + bik[4:6] if corr else bik[6:9]
    digits = prefix + account[:8] + "0" + account[9:]
    total = sum(int(d) * w for d, w in zip(digits, (7, 1, 3) * 8, strict=False))
    return account[:8] + str(total * 3 % 10) + account[9:]


def _translit(text: str) -> str:
    return "".join(_TRANSLIT.get(ch, ch) for ch in text.lower())


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` as UTF-8 CSV with a header, atomically."""
    tmp = path.with_suffix(".tmp")
    frame.write_csv(tmp, include_header=True, separator=",", line_terminator="\n")
    os.replace(tmp, path)


def _choice(rng: np.random.Generator, n: int, p: np.ndarray | list[float]) -> np.ndarray:
    """``n`` indexes drawn with probabilities ``p``."""
    p = np.asarray(p, dtype=float)
    return np.minimum(np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right"),
                      len(p) - 1)


def _uniform_day(rng: np.random.Generator, lo: int | np.ndarray, hi: int | np.ndarray,
                 n: int) -> np.ndarray:
    """Random days in ``[lo, hi]`` inclusive (vectorised over array bounds)."""
    lo_a = np.asarray(lo, dtype=np.int64)
    hi_a = np.maximum(np.asarray(hi, dtype=np.int64), lo_a)
    return lo_a + np.floor(rng.random(n) * (hi_a - lo_a + 1)).astype(np.int64)


# --------------------------------------------------------------------------- the city


@dataclass(frozen=True)
class _Calendar:
    start: Period
    months: int

    @property
    def history(self) -> list[Period]:
        """Reading months of individual meters: a few before ``start`` through the last demo month."""
        return [self.start.shift(i) for i in range(-INDIVIDUAL_HISTORY_MONTHS, self.months)]

    @property
    def building_history(self) -> list[Period]:
        """Reading months of building meters: enough for the previous calendar year's volume."""
        return [self.start.shift(i) for i in range(-BUILDING_HISTORY_MONTHS, self.months)]

    @property
    def demo_first(self) -> int:
        return _day(self.start.first)

    @property
    def demo_last(self) -> int:
        return _day(self.start.shift(self.months - 1).last)

    @property
    def history_first(self) -> int:
        return _day(self.start.shift(-INDIVIDUAL_HISTORY_MONTHS).first)

    @property
    def building_history_first(self) -> int:
        return _day(self.start.shift(-BUILDING_HISTORY_MONTHS).first)


def _organizations(rng: np.random.Generator) -> tuple[pl.DataFrame, list[str]]:
    n_management = int(rng.integers(3, 5))
    specs = [(o, n, "management", a) for o, n, a in _MANAGEMENT_ORGS[:n_management]]
    specs = [_FIXED_ORGS[0], *specs, *_FIXED_ORGS[1:]]
    rows = []
    for org_id, name, role, address in specs:
        inn = _inn(rng)
        bank_name, bik = _BANKS[int(rng.integers(0, len(_BANKS)))]
        account = "40702810" + "0" + "".join(str(d) for d in rng.integers(0, 10, 11))
        corr = "30101810" + "0" + "00000000" + bik[-3:]
        phone_digits = "".join(str(d) for d in rng.integers(0, 10, 6))
        rows.append({
            "org_id": org_id, "name": name, "inn": inn, "kpp": inn[:4] + "01001", "role": role,
            "bank_name": bank_name, "bik": bik,
            "account": _control_key(bik, account, corr=False),
            "corr_account": _control_key(bik, corr, corr=True),
            "address": address,
            "phone": f"+7 (383) 2{phone_digits[:2]}-{phone_digits[2:4]}-{phone_digits[4:]}",
        })
    frame = pl.DataFrame(rows, schema=dict.fromkeys(REGISTER_COLUMNS["organizations"], pl.String))
    return frame, [o for o, _, _ in _MANAGEMENT_ORGS[:n_management]]


@dataclass
class _Premises:
    """Premises as arrays (index = premise number - 1)."""

    building: np.ndarray  # building index
    residential: np.ndarray  # bool
    area: np.ndarray  # hundredths of m²
    meter_possible: np.ndarray  # bool
    building_common: np.ndarray  # per building: common property area, hundredths of m²


def _buildings_and_premises(
    rng: np.random.Generator, accounts: int, managers: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, _Premises]:
    # About 4 % of accounts are a second account of a premise (split or succession).
    target = max(1, round(accounts / 1.04))
    mean_size = float((_HOUSE_TYPES.prod(axis=1) * _HOUSE_WEIGHTS).sum())
    types = np.empty((0, 3), dtype=np.int64)
    nonres = np.empty(0, dtype=np.int64)
    while True:
        batch = int(np.ceil(target / mean_size * 1.3)) + 2
        t = _HOUSE_TYPES[_choice(rng, batch, _HOUSE_WEIGHTS)]
        shops = np.where(t[:, 0] >= 5, _choice(rng, batch, [0.4, 0.3, 0.2, 0.1]), 0)
        types = np.vstack([types, t])
        nonres = np.concatenate([nonres, shops])
        res = types.prod(axis=1)
        if (res + nonres).sum() >= target:
            break
    total = np.cumsum(res + nonres)
    n_b = int(np.searchsorted(total, target) + 1)
    res, nonres = res[:n_b].copy(), nonres[:n_b].copy()
    shape = types[:n_b]  # (floors, entrances, flats a floor) of each building
    before = int(total[n_b - 2]) if n_b > 1 else 0
    remaining = target - before
    if remaining < 20:
        nonres[-1] = 0
    nonres[-1] = min(nonres[-1], remaining - 1) if remaining > 1 else 0
    res[-1] = remaining - nonres[-1]
    # A small town is split into a few equal buildings rather than one big one.
    want = min(_MIN_BUILDINGS, max(1, target // 15))
    if n_b < want:
        n_b = want
        res = np.full(n_b, target // n_b, dtype=np.int64)
        res[: target % n_b] += 1
        nonres = np.zeros(n_b, dtype=np.int64)
        shape = np.tile(np.array([5, 4, 4]), (n_b, 1))
        if target >= 20:
            nonres[0], res[0] = 1, res[0] - 1

    # Premises, residential first, then the ground-floor shops of the building.
    sizes = res + nonres
    n_p = int(sizes.sum())
    b_of = np.repeat(np.arange(n_b), sizes)
    pos = np.arange(n_p) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    is_res = pos < res[b_of]
    rooms = _choice(rng, n_p, [0.30, 0.38, 0.25, 0.07]) + 1
    lo = np.array([0, 2500, 4000, 5600, 7500])[rooms]
    hi = np.array([0, 4200, 6200, 8500, 12000])[rooms]
    area = lo + np.floor(rng.random(n_p) * (hi - lo + 1)).astype(np.int64)
    shop_area = 3000 + np.floor(rng.random(n_p) * 15001).astype(np.int64)
    rooms = np.where(is_res, rooms, 1 + _choice(rng, n_p, [0.6, 0.3, 0.1]))
    area = np.where(is_res, area, shop_area)
    # About half the areas are measured to 0.1 m² only.
    area = np.where(rng.random(n_p) < 0.5, area // 10 * 10, area)
    meter_possible = ~is_res | (rng.random(n_p) < 0.88)
    number_pos = np.where(is_res, pos + 1, pos - res[b_of] + 1)
    # Where the postman goes (print batches run by entrance, floor, flat): flats fill the
    # entrances floor by floor; the shops are on the ground floor with entrances of their own.
    # Living area: 53-62 % of the flat's, more in bigger flats. No random draw is taken here,
    # so the rest of the city stays what it was before these columns existed.
    per_floor = shape[b_of, 2]
    per_entrance = shape[b_of, 0] * per_floor
    entrance = np.where(is_res, pos // per_entrance + 1, 0)
    floor = np.where(is_res, pos % per_entrance // per_floor + 1, 1)
    living = area * (50 + 3 * rooms) // 100

    number = pl.select(
        pl.when(pl.Series(is_res))
        .then(pl.Series(number_pos).cast(pl.String))
        .otherwise(pl.concat_str([pl.lit("Н"), pl.Series(number_pos).cast(pl.String)]))
        .alias("number")
    ).to_series()
    premises = pl.DataFrame([
        _premise_ids(np.arange(n_p)),
        _building_ids(b_of),
        number,
        _pick(("nonresidential", "residential"), is_res, "kind"),
        _fixed(area, 2, "total_area"),
        pl.Series("rooms", rooms, dtype=pl.Int64),
        pl.Series("meter_possible", meter_possible, dtype=pl.Boolean),
        _fixed(living, 2, "living_area"),
        pl.Series("entrance", entrance, dtype=pl.Int64),
        pl.Series("floor", floor, dtype=pl.Int64),
    ]).with_columns(  # a shop has no living area and no entrance of the stairs
        pl.when(pl.Series(is_res)).then(pl.col("living_area", "entrance")),
    )

    # Buildings: total area = all premises; common property 12–22 % on top of it.
    total_area = np.bincount(b_of, weights=area, minlength=n_b).astype(np.int64)
    common = (total_area * (0.12 + 0.10 * rng.random(n_b))).astype(np.int64)
    street = rng.integers(0, len(_STREETS), n_b)
    step = rng.integers(1, 4, n_b)
    house = (
        pl.DataFrame({"street": street, "step": step})
        .select(pl.col("step").cum_sum().over("street"))
        .to_series()
    )
    address = pl.select(
        pl.concat_str([
            pl.lit(f"{_CITY}, "), _pick(_STREETS, street, "s"), pl.lit(", д. "),
            house.cast(pl.String),
        ]).alias("address")
    ).to_series()
    manager = rng.permutation(n_b) % len(managers)
    buildings = pl.DataFrame([
        _building_ids(np.arange(n_b)),
        address,
        _pick(managers, manager, "manager_id"),
        _fixed(total_area, 2, "total_area"),
        _fixed(common, 2, "common_area"),
    ])
    return buildings, premises, _Premises(b_of, is_res, area, meter_possible, common)


@dataclass
class _Accounts:
    premise: np.ndarray
    opened: np.ndarray
    closed: np.ndarray  # _NO_DATE when open
    successor: np.ndarray  # bool: opened during the demo after a predecessor closed
    predecessor: np.ndarray  # bool: closed during the demo
    residential: np.ndarray
    family: np.ndarray  # surname index
    female: np.ndarray
    first: np.ndarray
    patronymic: np.ndarray


def _person_names(family: np.ndarray, female: np.ndarray, first: np.ndarray,
                  patronymic: np.ndarray, name: str) -> pl.Series:
    surname = pl.select(
        pl.when(pl.Series(female))
        .then(_pick([f for _, f in _SURNAMES], family, "x"))
        .otherwise(_pick([m for m, _ in _SURNAMES], family, "x"))
    ).to_series()
    first_name = pl.select(
        pl.when(pl.Series(female))
        .then(_pick(_FEMALE_NAMES, first % len(_FEMALE_NAMES), "x"))
        .otherwise(_pick(_MALE_NAMES, first % len(_MALE_NAMES), "x"))
    ).to_series()
    middle = pl.select(
        pl.concat_str([
            _pick(_PATRONYMIC_STEMS, patronymic, "x"),
            pl.when(pl.Series(female)).then(pl.lit("на")).otherwise(pl.lit("ич")),
        ])
    ).to_series()
    return pl.select(
        pl.concat_str([surname, first_name, middle], separator=" ").alias(name)
    ).to_series()


def _accounts(
    rng: np.random.Generator, accounts: int, prem: _Premises, cal: _Calendar
) -> tuple[pl.DataFrame, _Accounts]:
    n_p = len(prem.building)
    res_idx = np.flatnonzero(prem.residential)
    n_extra = min(max(accounts - n_p, 0), len(res_idx))
    extra = np.sort(rng.choice(res_idx, size=n_extra, replace=False)) if n_extra else res_idx[:0]
    # A quarter of the second accounts are successions (sale of the flat during the demo),
    # the rest split ownership (two accounts with share 0.5).
    succession = rng.random(n_extra) < 0.25
    per_premise = np.ones(n_p, dtype=np.int64)
    per_premise[extra] = 2
    kind = np.zeros(n_p, dtype=np.int8)  # 0 single, 1 split, 2 succession
    kind[extra] = np.where(succession, 2, 1)

    n_a = int(per_premise.sum())
    premise = np.repeat(np.arange(n_p), per_premise)
    ordinal = np.arange(n_a) - np.repeat(np.cumsum(per_premise) - per_premise, per_premise)
    a_kind = kind[premise]
    residential = prem.residential[premise]

    opened = _uniform_day(rng, _day(date(2015, 1, 1)), _day(date(2024, 12, 31)), n_a)
    closed = np.full(n_a, _NO_DATE, dtype=np.int64)
    sale_day = _uniform_day(rng, cal.demo_first, cal.demo_last - 1, n_a)
    predecessor = (a_kind == 2) & (ordinal == 0)
    successor = (a_kind == 2) & (ordinal == 1)
    closed[predecessor] = sale_day[predecessor]
    # The successor opens the day after its predecessor closes.
    opened[successor] = closed[np.flatnonzero(successor) - 1] + 1

    owners = np.where(
        (a_kind == 1) | ~residential, 1, 1 + _choice(rng, n_a, [0.6, 0.3, 0.1])
    )
    family = rng.integers(0, len(_SURNAMES), n_a)
    female = rng.random(n_a) < 0.55
    first = rng.integers(0, 30, n_a)
    patronymic = rng.integers(0, len(_PATRONYMIC_STEMS), n_a)
    company = rng.integers(0, len(_COMPANY_PAYERS), n_a)

    account_ids = _account_ids(np.arange(n_a))
    person_name = _person_names(family, female, first, patronymic, "payer_name")
    payer_name = pl.select(
        pl.when(pl.Series(residential))
        .then(person_name)
        .otherwise(_pick(_COMPANY_PAYERS, company, "x"))
        .alias("payer_name")
    ).to_series()
    has_email = rng.random(n_a) < np.where(residential, 0.35, 0.9)
    translit = [_translit(m) for m, _ in _SURNAMES]
    email = pl.select(
        pl.when(pl.Series(has_email))
        .then(
            pl.concat_str([
                pl.when(pl.Series(residential))
                .then(_pick(translit, family, "x"))
                .otherwise(pl.lit("office")),
                pl.lit("."),
                account_ids.str.slice(6, 4),
                pl.lit("@example.com"),
            ])
        )
        .alias("email")
    ).to_series()
    frame = pl.DataFrame([
        account_ids,
        _premise_ids(premise),
        _pick(("organization", "person"), residential, "payer_kind"),
        payer_name,
        _pick(("1", "0.5"), a_kind == 1, "share"),
        pl.Series("owners", owners, dtype=pl.Int64),
        _dates(opened, "opened_on"),
        _dates(closed, "closed_on"),
        email,
    ])
    info = _Accounts(premise, opened, closed, successor, predecessor, residential, family,
                     female, first, patronymic)
    return frame, info


@dataclass
class _Residents:
    account: np.ndarray
    birth: np.ndarray
    permanent: np.ndarray
    start: np.ndarray
    end: np.ndarray  # _NO_DATE when open


def _residents(
    rng: np.random.Generator, acc: _Accounts, cal: _Calendar
) -> tuple[pl.DataFrame, _Residents]:
    n_a = len(acc.premise)
    counts = np.where(
        acc.residential, _choice(rng, n_a, [0.12, 0.28, 0.28, 0.18, 0.10, 0.04]), 0
    )
    n_r = int(counts.sum())
    account = np.repeat(np.arange(n_a), counts)
    k = np.arange(n_r) - np.repeat(np.cumsum(counts) - counts, counts)
    payer = k == 0  # the first resident is the payer (owner registered in the flat)

    female = np.where(payer, acc.female[account], rng.random(n_r) < 0.52)
    first = np.where(payer, acc.first[account], rng.integers(0, 30, n_r))
    patronymic = np.where(payer, acc.patronymic[account],
                          rng.integers(0, len(_PATRONYMIC_STEMS), n_r))
    start_first = _day(cal.start.first)
    adult_birth = _uniform_day(rng, _day(date(1950, 1, 1)),
                               _day(date(cal.start.year - 20, 12, 31)), n_r)
    any_birth = _uniform_day(rng, _day(date(1945, 1, 1)), start_first - 200, n_r)
    birth = np.where(payer, adult_birth, any_birth)

    opened = acc.opened[account]
    closed = acc.closed[account]
    successor = acc.successor[account]
    predecessor = acc.predecessor[account]
    permanent = ~(rng.random(n_r) < 0.04) | successor | payer
    # Registered some time after the account opened, children from birth.
    reg = np.maximum(birth, np.minimum(opened + rng.integers(0, 400, n_r), cal.history_first - 1))
    end = np.full(n_r, _NO_DATE, dtype=np.int64)
    # Temporary registration (по месту пребывания) for 3–12 months, some ending in the demo.
    tmp_from = np.maximum(birth, _uniform_day(rng, start_first - 300, start_first - 30, n_r))
    tmp_to = tmp_from + rng.integers(90, 366, n_r)
    reg = np.where(permanent, reg, tmp_from)
    end = np.where(permanent, end, tmp_to)

    u = rng.random(n_r)
    ordinary = ~successor & ~predecessor & permanent
    moved_in = ordinary & (u < 0.01)
    retro = ordinary & (u >= 0.01) & (u < 0.013)
    moved_out = ordinary & (u >= 0.013) & (u < 0.019)
    reg = np.where(moved_in, _uniform_day(rng, cal.demo_first, cal.demo_last, n_r), reg)
    reg = np.where(retro, _uniform_day(rng, start_first - 60, start_first - 1, n_r), reg)
    end = np.where(moved_out, _uniform_day(rng, cal.demo_first, cal.demo_last, n_r), end)
    # Successions: the old owners leave when the account closes, the new ones arrive with it.
    reg = np.where(successor, opened, reg)
    end = np.where(predecessor & ((end == _NO_DATE) | (end > closed)), closed, end)

    full_name = _person_names(acc.family[account], female, first, patronymic, "full_name")
    frame = pl.DataFrame([
        _person_ids(np.arange(n_r)),
        _account_ids(account),
        full_name,
        _dates(birth, "birth_date"),
        _pick(("temporary", "permanent"), permanent, "kind"),
        _dates(reg, "from"),
        _dates(end, "to"),
    ])
    return frame, _Residents(account, birth, permanent, reg, end)


def _absences(rng: np.random.Generator, res: _Residents, cal: _Calendar) -> pl.DataFrame:
    eligible = np.flatnonzero(res.permanent & (res.end == _NO_DATE) & (res.start < cal.demo_first))
    n = min(len(eligible), max(2, round(len(res.account) * 0.005)))
    who = np.sort(rng.choice(eligible, size=n, replace=False)) if n else eligible[:0]
    window = cal.demo_last - cal.demo_first + 1
    # Exactly 5 days (recalculation needs more than 5 full days, п.86 Правил 354),
    # shorter and longer trips.
    kind = rng.random(n)
    kind[:1] = 0.9  # at least one long trip
    short = rng.integers(2, 5, n)
    long = rng.integers(6, 31, n)
    length = np.where(kind < 0.3, 5, np.where(kind < 0.45, short, long))
    length = np.minimum(length, window)
    start = _uniform_day(rng, cal.demo_first, cal.demo_last - length + 1, n)
    return pl.DataFrame([
        _person_ids(who),
        _dates(start, "from"),
        _dates(start + length - 1, "to"),
    ])


def _benefits(rng: np.random.Generator, res: _Residents, household: np.ndarray,
              cal: _Calendar) -> pl.DataFrame:
    n_r = len(res.account)
    n = round(n_r * 0.03)
    who = np.sort(rng.choice(n_r, size=n, replace=False)) if n else np.arange(0)
    elder = res.birth[who] < _day(date(1966, 1, 1))
    large = household[res.account[who]] >= 4
    category = np.where(large, 2, np.where(elder, 0, 1))
    start = np.maximum(
        res.start[who], _uniform_day(rng, _day(date(2016, 1, 1)), cal.demo_first - 1, n)
    )
    # Disability is granted until the next re-examination; other benefits rarely end.
    ends = rng.random(n) < np.where(category == 1, 0.5, 0.1)
    end = np.where(ends, _uniform_day(rng, np.maximum(start, cal.demo_first), cal.demo_last + 365,
                                      n), _NO_DATE)
    return pl.DataFrame([
        _person_ids(who),
        _pick(_BENEFIT_CATEGORIES, category, "category"),
        _dates(start, "from"),
        _dates(end, "to"),
    ])


def _outages(rng: np.random.Generator, n_b: int, cal: _Calendar) -> pl.DataFrame:
    n = max(2, round(n_b * 0.3))
    building = rng.integers(0, n_b, n)
    service = _choice(rng, n, [0.35, 0.35, 0.30])  # hot water, cold water, electricity
    minutes = np.select(
        [service == 0, service == 1],
        [rng.integers(3, 15, n) * 24 * 60, rng.integers(4, 31, n) * 60],
        rng.integers(1, 13, n) * 60,
    )
    first_min, last_min = cal.demo_first * 1440, (cal.demo_last + 1) * 1440 - 1
    minutes = np.minimum(minutes, last_min - first_min - 60)
    day = _uniform_day(rng, cal.demo_first, cal.demo_last, n)
    start = day * 1440 + rng.integers(8, 19, n) * 60 + rng.integers(0, 2, n) * 30
    start = np.minimum(start, last_min - minutes)
    end = start + minutes

    def stamp(values: np.ndarray, name: str) -> pl.Series:
        return (
            pl.Series(name, values * 60_000_000, dtype=pl.Int64)
            .cast(pl.Datetime("us"))
            .dt.strftime("%Y-%m-%dT%H:%M")
        )

    return (
        pl.DataFrame([
            _building_ids(building),
            _pick((HOT, COLD, ELECTRICITY), service, "service_id"),
            stamp(start, "started_at"),
            stamp(end, "ended_at"),
        ])
        .unique(subset=["building_id", "service_id", "started_at"], keep="first",
                maintain_order=True)
        .sort("building_id", "started_at", "service_id", maintain_order=True)
    )


def _building_services(rng: np.random.Generator, buildings: pl.DataFrame) -> pl.DataFrame:
    n_b = buildings.height
    intercom = rng.random(n_b) < 0.5
    parts = []
    for service in (*SERVICE_ORDER, *COMMON_PROPERTY):
        supplier = (
            buildings["manager_id"] if service in (MAINTENANCE, *COMMON_PROPERTY)
            else pl.Series([_SUPPLIER_OF[service]] * n_b, dtype=pl.String)
        )
        part = pl.DataFrame({
            "b": np.arange(n_b),
            "building_id": buildings["building_id"],
            "service_id": pl.Series([service] * n_b, dtype=pl.String),
            "supplier_id": supplier,
            "order": [(*SERVICE_ORDER, *COMMON_PROPERTY).index(service)] * n_b,
        })
        if service == INTERCOM:
            part = part.filter(pl.Series(intercom))
        parts.append(part)
    return (
        pl.concat(parts)
        .sort("b", "order")
        .select(
            "building_id", "service_id", "supplier_id",
            pl.lit(_SERVICES_START).alias("from"),
            pl.lit(None, dtype=pl.Date).alias("to"),
        )
    )


@dataclass
class _Meters:
    """Meters as arrays: individual meters first, then building meters (ОДПУ)."""

    service: np.ndarray  # index into SERVICE_ORDER
    building: np.ndarray  # building index (of its premise for an individual meter)
    premise: np.ndarray  # premise index; -1 for a building meter
    installed: np.ndarray
    verified: np.ndarray
    digits: np.ndarray
    initial: np.ndarray  # thousandths
    mean: np.ndarray  # thousandths per month (building meters: expected monthly volume)
    norm: np.ndarray  # individual meters: thousandths a month the premise used before the meter
    extra: np.ndarray  # building meters: thousandths a month beyond the premises' meters
    building_meter: np.ndarray  # bool
    roll: int  # rolls over its digits in the first demo month (-1: none)
    late: int  # always read after the window (26th–28th): each reading counts for the next month
    spike: int  # ten times its usual consumption in the first demo month (-1: none)
    drop: int  # its first demo-month reading is below the previous one (-1: none)

    @property
    def individual(self) -> int:
        return int((~self.building_meter).sum())


def _meters(
    rng: np.random.Generator, prem: _Premises, persons: np.ndarray, cal: _Calendar,
    building_area: np.ndarray,
) -> tuple[pl.DataFrame, _Meters]:
    n_p = len(prem.building)
    water = prem.residential & prem.meter_possible & (rng.random(n_p) < 0.87)
    power = ~prem.residential | (rng.random(n_p) < 0.95)
    has = {SERVICE_ORDER.index(COLD): water, SERVICE_ORDER.index(HOT): water,
           SERVICE_ORDER.index(ELECTRICITY): power}
    m_prem = np.concatenate([np.flatnonzero(mask) for mask in has.values()])
    m_svc = np.concatenate([np.full(int(mask.sum()), s) for s, mask in has.items()])
    order = np.lexsort((m_svc, m_prem))
    m_prem, m_svc = m_prem[order], m_svc[order]
    n_i = len(m_prem)

    cold = m_svc == SERVICE_ORDER.index(COLD)
    hot = m_svc == SERVICE_ORDER.index(HOT)
    power_m = ~cold & ~hot
    p = persons[m_prem]
    r = rng.random(n_i)
    # Monthly consumption: cold 3–4 m³ and hot 2–3 m³ a person, 60–150 kWh a flat;
    # an empty flat still uses a little (the owner visits).
    mean = np.select(
        [cold & (p > 0), hot & (p > 0), cold, hot],
        [(3000 + 1000 * r) * p, (2000 + 1000 * r) * p, 800 * r, 500 * r],
        np.where(p > 0, 60_000 + 90_000 * r, 10_000 + 30_000 * r),
    )
    mean = np.where(power_m & ~prem.residential[m_prem], 300_000 + 1_200_000 * r, mean)
    mean = mean.astype(np.int64)
    digits = np.where(power_m, 6, 5)

    # Verification interval: cold water 6 years, hot water 4, electricity 16.
    years = np.where(cold, 6, np.where(hot, 4, 16))
    expiring = rng.random(n_i) < 0.015
    new = ~expiring & (rng.random(n_i) < 0.005)
    latest_old = cal.history_first - 40
    vu_hi = latest_old + years * 365
    verified = np.where(
        expiring,
        _uniform_day(rng, cal.demo_first, cal.demo_last, n_i),
        _uniform_day(rng, cal.demo_last + 1, vu_hi, n_i),
    )
    # A few water meters failed before the demo (verification expired): in the month before
    # it — the average of their readings before failure for 3 periods (п.59 «а»), then the
    # norm × K (п.60) — and 4–12 months before it (the norm × K from the first demo month).
    water_ok = np.flatnonzero((cold | hot) & ~expiring & ~new)
    n_fail = min(max(1, round(n_i * 0.004)), len(water_ok) // 2)
    failed = rng.choice(water_ok, size=2 * n_fail, replace=False) if n_fail else water_ok[:0]
    recent, lapsed = failed[:n_fail], failed[n_fail:]
    month_before = cal.start.shift(-1)
    verified[recent] = _uniform_day(rng, _day(month_before.first), _day(month_before.last) - 2, n_fail)
    verified[lapsed] = _uniform_day(rng, _day(cal.start.shift(-12).first),
                                    _day(cal.start.shift(-4).last), n_fail)
    installed = np.minimum(verified - years * 365 - years // 4, latest_old)
    # A few meters are installed during the reading history (new ones, initial reading ~0).
    new_day = _uniform_day(rng, cal.history_first + 20, cal.demo_last - 40, n_i)
    installed = np.where(new, new_day, installed)
    verified = np.where(new, new_day + years * 365 + years // 4, verified)
    initial = np.where(
        new, (rng.random(n_i) * 500).astype(np.int64),
        np.where(power_m, rng.integers(0, 2000, n_i) * 1000, (rng.random(n_i) * 10_000)),
    ).astype(np.int64)
    mean = np.where(power_m, mean // 1000 * 1000, mean)

    # Meters with exactly one anomaly in the first demo month: a rollover of the digits, a
    # tenfold consumption (a spike waiting for confirmation), a reading below the previous one.
    # Any other anomaly would hide it.
    clean = ~expiring & ~new & (installed < cal.history_first - 10)
    clean[failed] = False

    def pick(mask: np.ndarray) -> int:
        candidates = np.flatnonzero(mask & clean)
        if not len(candidates):
            return -1
        chosen = int(rng.choice(candidates))
        clean[chosen] = False
        return chosen

    roll = pick(cold & (mean > 500))
    spike = pick((cold | hot) & (mean > 1000))
    drop = pick((cold | hot) & (mean > 3000))
    # And one that is always read late, after the reading window.
    late = pick(cold | hot)

    # Building meters (ОДПУ): heat in about half of the buildings; cold and hot water and
    # electricity in about 40 % of them (not always the same buildings).
    n_b = len(building_area)
    heat_b = np.flatnonzero(rng.permutation(n_b) < (n_b + 1) // 2)
    res_b = np.flatnonzero(rng.permutation(n_b) < max(1, round(n_b * 0.4)))
    resources = (COLD, HOT, ELECTRICITY)
    b_of = np.concatenate([heat_b, res_b, res_b, res_b])
    b_svc = np.concatenate([np.full(len(heat_b), SERVICE_ORDER.index(HEATING)),
                            *[np.full(len(res_b), SERVICE_ORDER.index(s)) for s in resources]])
    order = np.lexsort((b_svc, b_of))
    b_of, b_svc = b_of[order], b_svc[order]
    n_h = len(b_of)
    heat = b_svc == SERVICE_ORDER.index(HEATING)
    b_verified = _uniform_day(rng, cal.demo_last + 30, cal.demo_last + 4 * 365, n_h)
    b_installed = np.minimum(b_verified - 4 * 365 - 1,
                             cal.building_history_first - 40 - rng.integers(0, 700, n_h))
    b_digits = np.where(heat, 6, 9)
    b_initial = np.where(heat, rng.random(n_h) * 100_000,
                         rng.integers(0, 50_000, n_h) * 1000).astype(np.int64)
    # Heat: the building's area × the heating norm a month on average, following the season.
    extra = np.where(heat, building_area[b_of] / 100 * _HEAT_NORM * 1000, 0.0)
    b_mean = extra.copy()
    # Water and electricity: what the premises' meters measure (summed month by month in the
    # readings), the norm of the premises without a meter, and common property. In some
    # buildings and services the meter shows the usual imbalance (common property's norm plus
    # 8–20 % of the premises' volume: leaks, lifts, basements), in others less than the norm
    # (0.2–0.6 of it), so that the yearly settlement of common property (КР на СОИ) goes both
    # ways.
    f_r = rng.random(n_h)
    # Without anybody registered, the owner's norm is charged (п.56(2)).
    charged_persons = np.where(prem.residential, np.maximum(persons, 1), 0)
    norm = charged_persons[m_prem] * np.select(
        [cold, hot], [_NORM_MILLI[COLD], _NORM_MILLI[HOT]], _NORM_MILLI[ELECTRICITY])
    for resource in resources:
        code = SERVICE_ORDER.index(resource)
        metered = np.zeros(n_p, dtype=bool)
        metered[m_prem[m_svc == code]] = True
        unmetered = np.bincount(prem.building, weights=charged_persons * ~metered,
                                minlength=n_b) * _NORM_MILLI[resource]
        premises_sum = np.bincount(prem.building[m_prem[m_svc == code]], weights=mean[m_svc == code],
                                   minlength=n_b)[b_of] + unmetered[b_of]
        sel = np.flatnonzero(b_svc == code)
        high = (np.searchsorted(res_b, b_of[sel]) + code) % 2 == 0
        soi = _SOI_NORM_MILLI[resource] * prem.building_common[b_of[sel]] / 100
        common = np.where(high, soi + premises_sum[sel] * (0.08 + 0.12 * f_r[sel]),
                          soi * (0.2 + 0.4 * f_r[sel]))
        extra[sel] = unmetered[b_of[sel]] + common
        b_mean[sel] = premises_sum[sel] + common

    n_m = n_i + n_h
    service = np.concatenate([m_svc, b_svc])
    installed_all = np.concatenate([installed, b_installed])
    verified_all = np.concatenate([verified, b_verified])
    digits_all = np.concatenate([digits, b_digits])
    initial_all = np.concatenate([initial, b_initial])
    serial_year = (installed_all // 365 + 1970) % 100
    serial = pl.select(
        pl.concat_str([
            pl.Series(serial_year).cast(pl.String).str.zfill(2),
            pl.lit("-"),
            pl.Series(rng.integers(0, 10**8, n_m)).cast(pl.String).str.zfill(8),
        ]).alias("serial")
    ).to_series()
    frame = pl.DataFrame([
        _meter_ids(np.arange(n_m)),
        _pick(SERVICE_ORDER, service, "service_id"),
        pl.concat([_premise_ids(m_prem),
                   pl.Series("premise_id", [None] * n_h, dtype=pl.String)]),
        pl.concat([pl.Series("building_id", [None] * n_i, dtype=pl.String),
                   _building_ids(b_of)]),
        serial,
        _dates(installed_all, "installed_on"),
        pl.Series("removed_on", [None] * n_m, dtype=pl.Date),
        _dates(verified_all, "verified_until"),
        pl.Series("digits", digits_all, dtype=pl.Int64),
        _fixed(initial_all, 3, "initial_value"),
    ])
    info = _Meters(
        service=service,
        building=np.concatenate([prem.building[m_prem], b_of]),
        premise=np.concatenate([m_prem, np.full(n_h, -1)]),
        installed=installed_all,
        verified=verified_all,
        digits=digits_all,
        initial=initial_all,
        mean=np.concatenate([mean, b_mean.astype(np.int64)]),
        norm=np.concatenate([norm, np.zeros(n_h)]),
        extra=np.concatenate([np.zeros(n_i), extra]),
        building_meter=np.concatenate([np.zeros(n_i, bool), np.ones(n_h, bool)]),
        roll=roll, spike=spike, drop=drop, late=late,
    )
    return frame, info


def _write_readings(rng: np.random.Generator, met: _Meters, cal: _Calendar, path: Path) -> int:
    """Monthly readings of every meter, month by month; returns the row count.

    Individual meters are read in ``cal.history`` (with missing, late, anomalous and
    rolled-over readings), building meters on the 17th–22nd of every month of the longer
    ``cal.building_history``. A building meter of water or electricity measures what the
    premises' meters measured that month, plus the premises without a meter and common
    property; a heat meter follows the season.
    """
    n_i = met.individual
    n_b = len(met.service) - n_i
    cap = 10 ** met.digits.astype(np.int64) * 1000
    electricity = SERVICE_ORDER.index(ELECTRICITY)
    service, installed, mean = met.service[:n_i], met.installed[:n_i], met.mean[:n_i]
    # The value at the reading point just before the history: initial + usage since installed.
    before = cal.history_first - 10
    elapsed = np.clip((before - installed) / 30.44, 0, None)
    state = met.initial[:n_i] + (mean * elapsed).astype(np.int64)
    whole = service == electricity
    state = np.where(whole, state // 1000 * 1000, state)
    if met.roll >= 0:
        # Half a month's consumption short of the maximum when the demo starts.
        months_before = cal.history.index(cal.start)
        state[met.roll] = cap[met.roll] - mean[met.roll] * months_before - mean[met.roll] // 2
    # The meters of the forced anomalies show exactly one each.
    regular = np.ones(n_i, dtype=bool)
    forced = [m for m in (met.roll, met.spike, met.drop, met.late) if m >= 0]
    regular[forced] = False
    emitted_prev = state.copy()

    b_service, b_extra = met.service[n_i:], met.extra[n_i:]
    b_heat = b_service == SERVICE_ORDER.index(HEATING)
    b_whole = b_service == electricity
    b_elapsed = np.clip((cal.building_history_first - 10 - met.installed[n_i:]) / 30.44, 0, None)
    b_state = met.initial[n_i:] + (met.mean[n_i:] * b_elapsed).astype(np.int64)
    b_state = np.where(b_whole, b_state // 1000 * 1000, b_state)
    ids = _meter_ids(np.arange(n_i))  # formatted once, gathered every month
    b_ids = _meter_ids(n_i + np.arange(n_b))
    n_s = len(SERVICE_ORDER)
    key = met.building[:n_i] * n_s + service
    b_key = met.building[n_i:] * n_s + b_service
    n_keys = (int(met.building.max()) + 1) * n_s if len(met.building) else 0
    offset = len(cal.building_history) - len(cal.history)
    first_demo = cal.history.index(cal.start)

    rows = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write((",".join(REGISTER_COLUMNS["readings"]) + "\n").encode())
        for long_index, period in enumerate(cal.building_history):
            index = long_index - offset
            first_day = _day(period.first)
            if index >= 0:
                day = rng.integers(15, 26, n_i)
                late = regular & (rng.random(n_i) < 0.01)
                day = np.where(late, rng.integers(26, 29, n_i), day)
                if met.late >= 0:
                    day[met.late] = 26 + long_index % 3
                read_on = first_day + day - 1
                noise = np.where(regular, 0.8 + 0.4 * rng.random(n_i), 1.0)
                inc = mean * noise
                # Electricity meters show whole kWh.
                inc = np.where(whole, np.round(inc / 1000) * 1000, np.round(inc))
                # A meter installed during the month counts from its installation day.
                fraction = np.clip((read_on - installed) / period.days, 0, 1)
                inc = np.round(inc * fraction).astype(np.int64)
                u = rng.random(n_i)
                spike = regular & (u < 0.001) & (index > 0)
                drop = regular & (u >= 0.001) & (u < 0.002) & (index > 0)
                drop_by = rng.integers(1, 6, n_i) * 1000 + inc
                if index == first_demo:
                    for meter, mask in ((met.spike, spike), (met.drop, drop)):
                        if meter >= 0:
                            mask[meter] = True
                    if met.drop >= 0:
                        drop_by[met.drop] = 1000 + inc[met.drop]
                inc = np.where(spike, inc * 10, inc)
                state = state + inc
                value = np.where(drop, np.maximum(emitted_prev - drop_by, 0), state)
                value = value % cap[:n_i]
                missing = regular & (rng.random(n_i) < 0.05)
                present = ~missing & (read_on > installed)
                source = _choice(rng, n_i, _SOURCE_P)
                emitted_prev = np.where(present, value, emitted_prev)
                keep = np.flatnonzero(present)
                chunk = pl.DataFrame([
                    ids.gather(pl.Series(keep)),
                    _dates(read_on[keep], "read_on"),
                    _fixed(value[keep], 3, "value"),
                    _pick(_SOURCES, source[keep], "source"),
                ])
                chunk.write_csv(out, include_header=False, line_terminator="\n")
                rows += chunk.height
                sums = np.bincount(key, weights=inc, minlength=n_keys)
            else:
                # Before the premises' readings: what their meters measure on average, or
                # the norm before a meter was installed.
                used = np.where(installed <= first_day + 19, mean, met.norm[:n_i])
                sums = np.bincount(key, weights=used, minlength=n_keys)
            if not n_b:
                continue
            b_read_on = first_day + rng.integers(17, 23, n_b) - 1
            weather = 0.9 + 0.2 * rng.random(n_b)
            b_inc = np.where(
                b_heat, b_extra * _HEAT_PROFILE[period.month - 1] * weather,
                sums[b_key] + b_extra * (0.95 + 0.1 * rng.random(n_b)),
            )
            b_inc = np.where(b_whole, np.round(b_inc / 1000) * 1000, np.round(b_inc)).astype(np.int64)
            b_state = b_state + b_inc
            chunk = pl.DataFrame([
                b_ids,
                _dates(b_read_on, "read_on"),
                _fixed(b_state % cap[n_i:], 3, "value"),
                pl.Series("source", ["controller"] * n_b, dtype=pl.String),
            ])
            chunk.write_csv(out, include_header=False, line_terminator="\n")
            rows += chunk.height
    os.replace(tmp, path)
    return rows


def _access_refusals(rng: np.random.Generator, met: _Meters, cal: _Calendar) -> pl.DataFrame:
    """Acts of refused access to a premise's meter (акты о недопуске), all before the demo.

    Some premises have two unresolved acts (the norm × K whatever the meter shows), others
    a single one, which is not enough.
    """
    n_i = met.individual
    ok = (met.verified[:n_i] > cal.demo_last) & (met.installed[:n_i] < cal.history_first - 10)
    ok[[m for m in (met.roll, met.spike, met.drop, met.late) if m >= 0]] = False
    candidates = np.flatnonzero(ok)
    # One meter per premise: an act names a premise and a service.
    _, first_of_premise = np.unique(met.premise[candidates], return_index=True)
    candidates = candidates[np.sort(first_of_premise)]
    n_premises = len(np.unique(met.premise[:n_i]))
    n_two = min(max(2, round(n_premises * 0.002)), len(candidates))
    n_one = min(max(1, n_two // 2), len(candidates) - n_two)
    chosen = rng.choice(candidates, size=n_two + n_one, replace=False)
    first_act = cal.demo_first - rng.integers(60, 151, len(chosen))
    second_act = first_act + rng.integers(20, 46, len(chosen))
    meters = np.concatenate([chosen, chosen[:n_two]])
    refused = np.concatenate([first_act, second_act[:n_two]])
    order = np.lexsort((refused, met.service[meters], met.premise[meters]))
    meters, refused = meters[order], refused[order]
    return pl.DataFrame([
        _premise_ids(met.premise[meters]),
        _pick(SERVICE_ORDER, met.service[meters], "service_id"),
        _dates(refused, "refused_on"),
        pl.Series("resolved_on", [None] * len(meters), dtype=pl.Date),
    ])


def _append_maintenance_tariffs(rng: np.random.Generator, rules: Path,
                                managers: list[str]) -> None:
    """Add one maintenance tariff per managing organisation to ``rules/tariffs.csv``.

    Earlier demo rows for the same organisations are replaced, so running the
    generator twice leaves one row per organisation.
    """
    rules.mkdir(parents=True, exist_ok=True)
    path = rules / "tariffs.csv"
    if path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        default = resources.files("rules").joinpath("defaults/tariffs.csv")
        text = default.read_text(encoding="utf-8") if default.is_file() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next(csv.reader(lines[:1]), None) or list(TARIFF_COLUMNS)
    missing = [c for c in TARIFF_COLUMNS if c not in header]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header + missing, lineterminator="\n",
                            restval="", extrasaction="ignore")
    # Existing rows are kept verbatim unless a column has to be added to them.
    kept = [lines[0]] if lines and not missing else []
    if not kept:
        writer.writeheader()
    for line in lines[1:]:
        row = dict(zip(header, next(csv.reader([line]), []), strict=False))
        if (row.get("service_id") == MAINTENANCE and row.get("supplier_id") in managers
                and row.get("source") == MAINTENANCE_TARIFF_SOURCE):
            continue  # an earlier demo row, replaced below
        if missing:
            writer.writerow(row)
        else:
            kept.append(line)
    prices = rng.integers(2600, 3801, len(managers))
    for org_id, price in zip(managers, prices, strict=True):
        writer.writerow({
            "service_id": MAINTENANCE, "supplier_id": org_id,
            "from": MAINTENANCE_TARIFF_FROM.isoformat(),
            "price": f"{price // 100}.{price % 100:02d}",
            "source": MAINTENANCE_TARIFF_SOURCE,
        })
    tmp = path.with_suffix(".tmp")
    head = "".join(line + "\n" for line in kept)
    tmp.write_text(head + buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def generate_city(
    home: Path,
    accounts: int = 1000,
    start: Period = Period(2026, 12),  # noqa: B008 - Period is frozen
    months: int = 3,
    seed: int = 2026,
) -> CitySummary:
    """Write a synthetic city's registers into ``home/registers`` (синтетический город).

    Parameters
    ----------
    home:
        Workspace root; ``registers/`` and ``rules/`` are created when missing.
    accounts:
        Number of personal accounts (лицевые счета), exactly; buildings and
        premises scale with it (1 000 accounts ≈ a dozen buildings).
    start:
        The first demo month; readings of the premises' meters start three months
        earlier, those of the building meters ``BUILDING_HISTORY_MONTHS`` earlier.
    months:
        Number of demo months (events such as sales, moves and absences fall in them).
    seed:
        Seed of ``numpy.random.default_rng``; the same arguments give byte-identical files.

    Returns
    -------
    CitySummary
        Row counts of what was written.

    Also writes the optional register ``access_refusals`` and appends one
    maintenance tariff per managing organisation to ``home/rules/tariffs.csv``
    (created from the default tariffs when missing).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     summary = generate_city(Path(tmp), accounts=50, months=1)
    >>> summary.accounts
    50
    """
    if accounts < 1:
        raise ValueError("accounts must be positive")
    if months < 1:
        raise ValueError("months must be positive")
    home = Path(home)
    registers = home / "registers"
    registers.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cal = _Calendar(start, months)

    counts: dict[str, int] = {}

    def write(name: str, frame: pl.DataFrame) -> None:
        _write_csv(frame.select(REGISTER_COLUMNS[name]), registers / f"{name}.csv")
        counts[name] = frame.height

    # Each register is written as soon as it exists, so a big city never holds
    # all of them in memory at once; later stages keep only NumPy arrays.
    organizations, managers = _organizations(rng)
    write("organizations", organizations)
    buildings, premises, prem = _buildings_and_premises(rng, accounts, managers)
    write("buildings", buildings)
    write("premises", premises)
    del premises
    accounts_frame, acc = _accounts(rng, accounts, prem, cal)
    write("accounts", accounts_frame)
    del accounts_frame
    residents, res = _residents(rng, acc, cal)
    write("residents", residents)
    del residents
    household = np.bincount(res.account, minlength=len(acc.premise))
    write("absences", _absences(rng, res, cal))
    write("benefits", _benefits(rng, res, household, cal))
    persons = np.bincount(acc.premise, weights=household * ~acc.predecessor,
                          minlength=len(prem.building)).astype(np.int64)
    del res, acc
    building_area = np.bincount(prem.building, weights=prem.area,
                                minlength=buildings.height).astype(np.int64)
    meters, met = _meters(rng, prem, persons, cal, building_area)
    write("meters", meters)
    del meters, prem
    write("building_services", _building_services(rng, buildings))
    write("outages", _outages(rng, buildings.height, cal))
    n_readings = _write_readings(rng, met, cal, registers / "readings.csv")
    refusals = _access_refusals(rng, met, cal)
    _write_csv(refusals.select(OPTIONAL_REGISTER_COLUMNS["access_refusals"]),
               registers / "access_refusals.csv")
    counts["access_refusals"] = refusals.height
    _append_maintenance_tariffs(rng, home / "rules", managers)
    return CitySummary(
        organizations=counts["organizations"],
        buildings=counts["buildings"],
        premises=counts["premises"],
        accounts=counts["accounts"],
        residents=counts["residents"],
        meters=counts["meters"],
        readings=n_readings,
        building_meters=int(met.building_meter.sum()),
        access_refusals=counts["access_refusals"],
    )


# --------------------------------------------------------------------------- payments


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on an array of uint64 (wraps around, as intended)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _key_hash(keys: pl.Series) -> np.ndarray:
    """A stable 64-bit hash of each key's UTF-8 bytes.

    Unlike ``Series.hash`` it does not change between Polars versions, and a
    key's hash does not depend on the other keys or their order.
    """
    text = keys.cast(pl.String).fill_null("")
    n = len(text)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    raw = np.asarray(text.cast(pl.Binary).to_numpy(), dtype="S")
    width = max(raw.dtype.itemsize, 1)
    matrix = raw.view(np.uint8).reshape(n, width).astype(np.uint64)
    h = _mix(text.str.len_bytes().to_numpy().astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    for column in range(width):
        h = _mix(h ^ (matrix[:, column] + np.uint64(0x9E3779B97F4A7C15)))
    return h


def _uniform(key_hash: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """Uniform [0, 1) numbers, one per key, fixed by (key, seed, salt)."""
    start = np.uint64((seed * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03) % 2**64)
    h = _mix(_mix(key_hash ^ start) ^ start)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _bucket(u: np.ndarray, shares: tuple[tuple[str, float], ...]) -> np.ndarray:
    cum = np.cumsum([p for _, p in shares])
    return np.minimum(np.searchsorted(cum / cum[-1], u, side="right"), len(shares) - 1)


def payment_behaviour(account_ids: pl.Series, seed: int = 2026) -> pl.Series:
    """How each account pays, fixed by the seed: full, partial, none, overpay or instalments.

    The same accounts are chronic debtors month after month.

    >>> payment_behaviour(pl.Series(["1000000001"])).dtype
    String
    """
    index = _bucket(_uniform(_key_hash(account_ids), seed, 1), PAYMENT_BEHAVIOURS)
    return _pick([b for b, _ in PAYMENT_BEHAVIOURS], index, "behaviour")


def _period_column(marked: np.ndarray, period: Period) -> pl.Series:
    """The bill period where ``marked``, null (an empty cell) elsewhere."""
    return pl.select(
        pl.when(pl.Series(marked, dtype=pl.Boolean)).then(pl.lit(str(period))).alias("period")
    ).to_series()


def generate_payments(due: pl.DataFrame, bill_period: Period, seed: int = 2026) -> pl.DataFrame:
    """Payments made in the month after ``bill_period`` against that month's receipts.

    Parameters
    ----------
    due:
        ``account_id`` (str) and ``to_pay`` (Int64 kopecks, the receipt total;
        ≤ 0 means nothing is due and nothing is paid).
    bill_period:
        The period of the receipts; payments are dated in the following month.
    seed:
        Fixes each account's behaviour (see :func:`payment_behaviour`) and the
        month's details (days, partial shares, agents).

    Returns
    -------
    polars.DataFrame
        String columns ``payment_id, paid_on, account_id, amount, period, agent``;
        ``amount`` is rubles with a dot and two decimals, ``period`` is the bill
        period or null ("empty"), ``payment_id`` is ``{agent}-{YYYYMM}-{n:08d}``.

    >>> due = pl.DataFrame({"account_id": ["1000000003", "1000000004"], "to_pay": [150000, -100]})
    >>> payment_behaviour(due["account_id"]).to_list()
    ['full', 'full']
    >>> generate_payments(due, Period(2026, 8)).select("account_id", "amount").rows()
    [('1000000003', '1500.00')]
    """
    frame = (
        due.select(
            pl.col("account_id").cast(pl.String),
            pl.col("to_pay").cast(pl.Int64).fill_null(0),
        )
        .group_by("account_id", maintain_order=True)
        .agg(pl.col("to_pay").sum())
    )
    ids = frame["account_id"]
    to_pay = frame["to_pay"].to_numpy().astype(np.int64)
    pay_period = bill_period.shift(1)
    month_salt = pay_period.year * 12 + pay_period.month
    names = [b for b, _ in PAYMENT_BEHAVIOURS]
    key_hash = _key_hash(ids)
    behaviour = _bucket(_uniform(key_hash, seed, 1), PAYMENT_BEHAVIOURS)
    agent = _bucket(_uniform(key_hash, seed, 2), PAYMENT_AGENTS)

    def u(salt: int) -> np.ndarray:
        # Details of the month: a different draw each period, same account behaviour.
        return _uniform(key_hash, seed, salt * 1_000_000 + month_salt)

    _, partial, none, overpay, instalments = (behaviour == names.index(b) for b in names)
    pays = (to_pay > 0) & ~none
    share = 300 + np.floor(u(3) * 601).astype(np.int64)  # 30–90 %, per mille
    split = 400 + np.floor(u(4) * 201).astype(np.int64)  # first instalment 40–60 %
    first = np.select(
        [partial, overpay, instalments],
        [np.maximum(to_pay * share // 1000, 1), (to_pay // 10_000 + 1) * 10_000,
         to_pay * split // 1000],
        to_pay,
    )
    second = np.where(instalments, to_pay - first, 0)
    two = instalments & (first > 0) & (second > 0)
    first = np.where(instalments & ~two, to_pay, first)

    last_day = pay_period.days
    late = u(5) < 0.05
    day = np.where(late, 26 + np.floor(u(6) * (last_day - 25)), 1 + np.floor(u(6) * 25))
    day = np.where(two, 1 + np.floor(u(6) * 12), day).astype(np.int64)
    day2 = (13 + np.floor(u(7) * 13)).astype(np.int64)
    with_period = u(8) < 0.7
    with_period2 = u(9) < 0.7

    rows = np.flatnonzero(pays)
    rows2 = np.flatnonzero(pays & two)
    part = np.concatenate([np.zeros(len(rows), np.int64), np.ones(len(rows2), np.int64)])
    index = np.concatenate([rows, rows2])
    amount = np.concatenate([first[rows], second[rows2]])
    paid_day = np.concatenate([day[rows], day2[rows2]])
    marked = np.concatenate([with_period[rows], with_period2[rows2]])
    base = _day(pay_period.first) - 1
    out = (
        pl.DataFrame([
            _dates(base + paid_day, "paid_on").dt.strftime("%Y-%m-%d"),
            ids.gather(pl.Series(index)).alias("account_id"),
            _fixed(amount, 2, "amount"),
            _period_column(marked, bill_period),
            _pick([a for a, _ in PAYMENT_AGENTS], agent[index], "agent"),
            pl.Series("part", part),
        ])
        .sort("paid_on", "account_id", "part", maintain_order=True)
        .with_columns(n=pl.int_range(1, pl.len() + 1).over("agent"))
    )
    tag = f"{bill_period.year:04d}{bill_period.month:02d}"
    return out.select(
        pl.concat_str([pl.col("agent"), pl.lit(f"-{tag}-"),
                       pl.col("n").cast(pl.String).str.zfill(8)]).alias("payment_id"),
        "paid_on", "account_id", "amount", "period", "agent",
    )


def write_payments_csv(frame: pl.DataFrame, path: Path) -> None:
    """Write a payment register as UTF-8 CSV with a header, atomically.

    The file is written next to ``path`` with the suffix ``.tmp`` and then
    renamed, so an importer never sees half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.select(PAYMENT_COLUMNS).write_csv(tmp, include_header=True, separator=",",
                                            line_terminator="\n")
    os.replace(tmp, path)


__all__ = [
    "BUILDING_HISTORY_MONTHS",
    "OPTIONAL_REGISTER_COLUMNS",
    "PAYMENT_BEHAVIOURS",
    "PAYMENT_COLUMNS",
    "REGISTER_COLUMNS",
    "CitySummary",
    "generate_city",
    "generate_payments",
    "payment_behaviour",
    "write_payments_csv",
]
