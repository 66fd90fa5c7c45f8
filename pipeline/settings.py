"""``settings.toml`` as one typed value, parsed and checked once (:meth:`Settings.load`).

Each section is a frozen dataclass whose field defaults are *the* defaults: a key that
is absent takes it, and ``DEFAULT_SETTINGS`` (the text ``billing init`` writes, in
:mod:`pipeline.workspace`) states the same values (a test parses it and compares).

Every value is checked on load; a bad one stops with a Russian message naming the
section, the key and the value. Inside a known section an unknown key (a typo such as
``spike_multiplier``) is refused with the allowed keys listed; an unknown *section* is
ignored, so a workspace written by another version still loads.

The close reads and checks the whole file (``Workspace.typed_settings()``); a command
that needs one section reads only that one (:func:`load_section`: the lock, ingest,
the inbox, receipts, ``serve``, ``explain``), so a typo in ``[heating]`` does not stop
the nightly payment import. Only the stdlib is imported here: the workspace lock reads
its section without polars.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, cast

from pipeline.errors import BillingError

#: Formats of payment files (parsers in :mod:`pipeline.ingest.bank_formats`).
PAYMENT_FORMATS = ("sber", "vtb", "csv", "1c")
#: Formats whose registers end with a checked footer line.
FOOTER_FORMATS = ("sber", "vtb", "1c")
#: How the nightly import tells that an inbox file is complete.
COMPLETE_RULES = ("footer", "settle", "done")

_MONTH = "нужен номер месяца 1–12"


@dataclass(frozen=True)
class Readings:
    """``[readings]``: the reading window, the spike check, settling norm months (п.61)."""

    window_start_day: int = 15
    window_end_day: int = 25
    spike_multiple: int = 5
    settle_norm_months: bool = True


@dataclass(frozen=True)
class Heating:
    """``[heating]``: how heating is paid (ПП 603/2016, the region's choice)."""

    payment: str = "even"
    season_months: tuple[int, ...] = (1, 2, 3, 4, 5, 10, 11, 12)
    true_up_month: int = 1


@dataclass(frozen=True)
class Recalculation:
    """``[recalculation]``: how many sealed months a change of registers or rules reaches."""

    horizon_months: int = 36


@dataclass(frozen=True)
class Ingest:
    """``[ingest]``: what an ingest may do to records of the last snapshot."""

    on_rejected_existing: str = "refuse"
    max_removed_share: float = 0.05


@dataclass(frozen=True)
class Close:
    """``[close]``: how many accounts one partition of the close holds (whole buildings).

    Peak memory follows this size, not the region's (docs/scaling.md has the measurement
    behind the default); a region below it closes as one partition, its tables one file each.
    """

    partition_accounts: int = 250_000
    #: Exports made right after the seal (``billing export KIND`` for each; docs/exports.md).
    #: One that fails does not undo the close: it is reported and can be run again by hand.
    exports: tuple[str, ...] = ()


#: What ``billing export`` writes (and ``[close] exports`` may name).
EXPORT_KINDS = ("banks", "post", "gis", "welfare")


@dataclass(frozen=True)
class Receipts:
    """``[receipts]``: rendering processes (0 — one per core), print batches per building and
    whom the receipt's QR codes pay: each payee, or one collecting agent (``agent``, an
    ``org_id`` of the organizations register) for the whole amount. ``benefits``: how the
    welfare body's amounts (``billing import welfare``) show in the ЕПД's benefits column —
    ``info`` (information only, the default: monetised benefits are paid to the person) or
    ``discount`` (deducted from the amount to pay). ``tear_off``: "where to pay" printed as a
    tear-off slip (извещение) under a cut line closing the front, where the region's
    practice uses one."""

    workers: int = 0
    print_batches: bool = True
    pay_to: str = "payees"
    agent: str = ""
    benefits: str = "info"
    tear_off: bool = False


@dataclass(frozen=True)
class Smtp:
    """``[smtp]``: the mail server ``billing receipts send`` delivers through.

    The password is never in a file: it is read from the environment variable named by
    ``password_env`` when ``user`` is set.
    """

    host: str = ""
    port: int = 587
    security: str = "starttls"
    user: str = ""
    password_env: str = "BILLING_SMTP_PASSWORD"
    sender: str = ""
    sender_name: str = ""
    ca_file: str = ""
    timeout_seconds: float = 30.0
    max_attempts: int = 5


@dataclass(frozen=True)
class Lock:
    """``[lock]``: how long a writer waits for the workspace lock (env ``BILLING_LOCK_WAIT`` wins)."""

    wait_seconds: float = 900.0


@dataclass(frozen=True)
class Schedule:
    """``[schedule]``: the nightly payment import of ``billing serve``."""

    nightly_import_cron: str = "30 2 * * *"
    timezone: str = "Europe/Moscow"


@dataclass(frozen=True)
class Inbox:
    """``[inbox]`` and ``[inbox.complete]``: when an inbox file is complete.

    ``complete`` maps a format or a file-name pattern to its rule, in the file's order
    after the defaults (a pattern wins over a format: see ``InboxRules.rule_for``).
    """

    settle_seconds: int = 120
    complete: tuple[tuple[str, str], ...] = (("sber", "footer"), ("vtb", "footer"), ("csv", "settle"),
                                            ("1c", "footer"))


#: Layouts of the charge registers ``billing export banks`` writes (:mod:`pipeline.export.banks`).
BANK_LAYOUTS = ("sber", "csv")
#: Fields a ``sber``-layout line may be made of, in the order ``columns`` names them.
BANK_COLUMNS = ("account", "els", "payer", "address", "period", "amount", "meters", "services",
                "marker", "empty")
#: Placeholders of an agent's ``file_name`` rule.
BANK_NAME_FIELDS = ("inn", "account", "seq", "mm", "yy", "yyyy", "period", "pay_mm", "pay_yy",
                    "pay_yyyy", "code")


@dataclass(frozen=True)
class BankAgent:
    """One ``[[banks.agents]]`` entry: a bank or paying agent that takes a charge register.

    ``code`` is the agent as its payments come back (``sber``, ``post``…) and the folder of
    its files; ``org_id`` the organization (organizations register) whose contract the
    register serves — its ИНН and settlement account go into the file name. Everything about
    the layout is a setting because each contract fixes its own (exchange-formats.md §2.1).
    """

    code: str
    layout: str = "sber"
    name: str = ""
    org_id: str = ""
    #: "" — the layout's default rule (``sber``: ``{inn}_{account}_{seq}_{mm}{yy}.txt``).
    file_name: str = ""
    sequence: int = 1
    #: Service ids the agent collects for; empty — every service.
    services: tuple[str, ...] = ()
    separator: str = ";"
    decimal: str = ","
    amounts: str = "rubles"
    columns: tuple[str, ...] = ("account", "els", "payer", "address", "period", "amount", "meters")
    #: Longest text field (payer, address), characters; 0 — no limit.
    max_text: int = 200
    #: Whether organization payers (who get invoices, not receipts) are listed.
    organizations: bool = False


@dataclass(frozen=True)
class Banks:
    """``[banks]`` with ``[[banks.agents]]``: who gets a charge register of a sealed period."""

    agents: tuple[BankAgent, ...] = ()


@dataclass(frozen=True)
class ExportWelfare:
    """``[export_welfare]``: the layout of the register social welfare takes (UNVERIFIED per region).

    ``encoding``: of the CSV (a letter it lacks is written as ``?`` and counted); ``separator``:
    one character; ``decimal_comma``: ``48,73`` rather than ``48.73``; ``name``: the file name
    without extension, ``{period}`` → ``202608``; ``text_limit``: the longest text cell, longer
    ones cut (0 = no limit); ``recipient``: who reads it.
    """

    encoding: str = "cp1251"
    separator: str = ";"
    decimal_comma: bool = True
    name: str = "uszn_{period}"
    text_limit: int = 0
    recipient: str = "УСЗН"


def _encoding_known(name: str) -> bool:
    try:
        "".encode(name)
    except LookupError:
        return False
    return True


#: A check of one value: (test, what is allowed — the end of the message).
Check = tuple[Callable[[Any], bool], str]

_CHECKS: dict[str, dict[str, Check]] = {
    "export_welfare": {
        "encoding": (_encoding_known, "нужна известная кодировка, например cp1251 или utf-8"),
        "separator": (lambda v: len(v) == 1 and v not in "\"\r\n", "нужен один символ, например \";\""),
        "decimal_comma": (lambda v: True, "нужно true или false"),
        "name": (lambda v: bool(v.strip()) and not any(c in v for c in "/\\") and not v.startswith("."),
                 "не годится для имени файла"),
        "text_limit": (lambda v: v >= 0, "нужно целое число ≥ 0 (0 — без ограничения)"),
        "recipient": (lambda v: True, "нужен текст"),
    },
    "readings": {
        "window_start_day": (lambda v: 1 <= v <= 31, "нужен день месяца 1–31"),
        "window_end_day": (lambda v: 1 <= v <= 31, "нужен день месяца 1–31"),
        "spike_multiple": (lambda v: v >= 0, "нужно целое ≥ 0"),
        "settle_norm_months": (lambda v: True, "нужно true или false"),
    },
    "heating": {
        "payment": (lambda v: v in ("even", "in_season"), "допустимо «even» или «in_season»"),
        "season_months": (lambda v: all(isinstance(m, int) and 1 <= m <= 12 for m in v),
                          f"{_MONTH} в списке"),
        "true_up_month": (lambda v: 1 <= v <= 12, _MONTH),
    },
    "recalculation": {
        "horizon_months": (lambda v: v >= 0, "нужно целое число месяцев ≥ 0"),
    },
    "ingest": {
        "on_rejected_existing": (lambda v: v in ("refuse", "keep_last"),
                                 "допустимо «refuse» или «keep_last»"),
        "max_removed_share": (lambda v: 0 <= v <= 1, "нужна доля от 0 до 1 (0.05 — это 5 %)"),
    },
    "close": {
        "partition_accounts": (lambda v: v >= 1, "нужно целое число лицевых счетов ≥ 1"),
        "exports": (lambda v: all(isinstance(k, str) and k in EXPORT_KINDS for k in v)
                    and len(set(v)) == len(v),
                    f"нужен список выгрузок без повторов из {', '.join(EXPORT_KINDS)}"),
    },
    "migration": {
        "tolerance_kop": (lambda v: v >= 0, "нужно целое число копеек ≥ 0"),
        "partial_years": (lambda v: v in ("skip", "covered"), "нужно skip или covered"),
        "partition_accounts": (lambda v: v >= 1, "нужно целое число лицевых счетов ≥ 1"),
        "workers": (lambda v: v >= 0, "нужно целое ≥ 0 (0 — по числу ядер)"),
    },
    "receipts": {
        "workers": (lambda v: v >= 0, "нужно целое ≥ 0 (0 — по числу ядер)"),
        "print_batches": (lambda v: True, "нужно true или false"),
        "pay_to": (lambda v: v in ("payees", "agent"), "нужно payees или agent"),
        "agent": (lambda v: True, "нужен код организации (org_id)"),
        "benefits": (lambda v: v in ("info", "discount"),
                     "нужно info (справочно) или discount (вычесть из суммы к оплате)"),
        "tear_off": (lambda v: True, "нужно true или false"),
    },
    "smtp": {
        "host": (lambda v: True, "нужно имя сервера"),
        "port": (lambda v: 1 <= v <= 65535, "нужен порт 1–65535"),
        "security": (lambda v: v in ("starttls", "ssl", "none"), "нужно starttls, ssl или none"),
        "user": (lambda v: True, "нужно имя пользователя"),
        "password_env": (lambda v: bool(re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", v)),
                         "нужно имя переменной окружения, например BILLING_SMTP_PASSWORD"),
        "sender": (lambda v: v == "" or "@" in v, "нужен адрес отправителя, например epd@eirc.ru"),
        "sender_name": (lambda v: True, "нужно имя отправителя"),
        "ca_file": (lambda v: True, "нужен путь к файлу сертификатов"),
        "timeout_seconds": (lambda v: v > 0, "нужно число секунд > 0"),
        "max_attempts": (lambda v: v >= 1, "нужно целое ≥ 1"),
    },
    "lock": {
        "wait_seconds": (lambda v: v >= 0, "нужно число секунд ≥ 0"),
    },
    "schedule": {
        "nightly_import_cron": (lambda v: len(v.split()) == 5,
                                "нужно расписание cron из пяти полей, например \"30 2 * * *\""),
        "timezone": (lambda v: bool(v.strip()), "нужен часовой пояс, например \"Europe/Moscow\""),
    },
}


@dataclass(frozen=True)
class Migration:
    """``[migration]``: moving in from another system (docs/migration.md).

    ``tolerance_kop``: a reconciliation difference up to this many kopecks (per account,
    supplier and service) is not a difference; the first close refuses to run while a
    larger one is neither explained nor accepted. ``partial_years``: whether the yearly
    corrections (heating п.42(1), КР на СОИ) correct a year of which only some months are
    sealed or migrated — ``skip`` (the default: a part of a year is not the year the law
    settles) or ``covered`` (correct the covered months alone).

    ``partition_accounts``, ``workers``: the migrated months are rebuilt in partitions of
    whole buildings of about this many accounts (:mod:`pipeline.close.cut`, as a close
    cuts them), each partition through all the months, in ``workers`` processes at once (0 —
    one per core). Memory follows the partition, not the region (docs/migration.md «Large exports»).
    """

    tolerance_kop: int = 0
    partial_years: str = "skip"
    partition_accounts: int = 25_000
    workers: int = 0


@dataclass(frozen=True)
class Settings:
    """The whole ``settings.toml``, checked; ``Settings()`` is the defaults."""

    readings: Readings = field(default_factory=Readings)
    heating: Heating = field(default_factory=Heating)
    recalculation: Recalculation = field(default_factory=Recalculation)
    ingest: Ingest = field(default_factory=Ingest)
    close: Close = field(default_factory=Close)
    receipts: Receipts = field(default_factory=Receipts)
    smtp: Smtp = field(default_factory=Smtp)
    lock: Lock = field(default_factory=Lock)
    schedule: Schedule = field(default_factory=Schedule)
    inbox: Inbox = field(default_factory=Inbox)
    migration: Migration = field(default_factory=Migration)

    @classmethod
    def load(cls, path: Path) -> Settings:
        """Parse and check all of ``path`` (a broken file, a bad value or an unknown key stops)."""
        return cls.parse(_read(path), path)

    @classmethod
    def parse(cls, data: Mapping[str, Any], path: Path | str = "settings.toml") -> Settings:
        """Check an already parsed ``settings.toml`` (``path`` only names it in messages)."""
        return cls(**{f.name: _parse_section(_SECTIONS[f.name], data, path) for f in fields(cls)})


S = TypeVar("S")

_SECTIONS: dict[str, type] = {"readings": Readings, "heating": Heating, "recalculation": Recalculation,
                              "ingest": Ingest, "close": Close, "receipts": Receipts, "smtp": Smtp,
                              "lock": Lock, "schedule": Schedule, "inbox": Inbox, "migration": Migration}
# Read by ``billing export banks`` alone (load_section); not yet a field of Settings.
_SECTIONS["banks"] = Banks
_SECTIONS["export_welfare"] = ExportWelfare  # read by ``billing export welfare`` alone
_NAMES = {kind: name for name, kind in _SECTIONS.items()}


def load_section(path: Path, kind: type[S]) -> S:
    """One section of ``path``, checked (``load_section(path, Lock)``); the others are not looked at.

    Commands that need one section use this, so a typo in ``[heating]`` does not stop the
    nightly payment import; the close checks the whole file (:meth:`Settings.load`).
    """
    return _parse_section(kind, _read(path), path)


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise BillingError(f"{path}: файл настроек не найден") from None
    except tomllib.TOMLDecodeError as err:
        raise BillingError(f"{path}: файл настроек не читается: {err}") from err


def _parse_section(kind: type[S], data: Mapping[str, Any], path: Path | str) -> S:
    name = _NAMES[kind]
    if kind is Inbox:
        return cast(S, _inbox(data.get(name, {}), path))
    if kind is Banks:
        return cast(S, _banks(data.get(name, {}), path))
    return cast(S, _section(kind, name, data.get(name, {})))


def _refuse_unknown(section: str, table: Mapping[str, Any], allowed: list[str]) -> None:
    unknown = [key for key in table if key not in allowed]
    if unknown:
        raise BillingError(f"settings.toml [{section}]: неизвестный ключ «{unknown[0]}» — допустимы "
                           f"{', '.join(allowed)}")


def _section(kind: type, section: str, table: Any) -> Any:
    if not isinstance(table, dict):
        raise BillingError(f"settings.toml [{section}]: ожидается раздел настроек, а не {table!r}")
    names = [f.name for f in fields(kind)]
    _refuse_unknown(section, table, names)
    values = {}
    for name in names:
        if name in table:
            default = getattr(kind, name)
            values[name] = _value(section, name, table[name], default, _CHECKS[section][name])
    return kind(**values)


def _value(section: str, key: str, value: Any, default: Any, check: Check) -> Any:
    """``value`` of the default's type passing ``check``, else a stop naming section, key, value."""
    test, allowed = check
    if isinstance(default, tuple):
        ok = isinstance(value, list) and not any(isinstance(v, bool) for v in value)  # items: by the check
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):  # an integer is a number too: wait_seconds = 900
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default)) and not isinstance(value, bool)
    if not ok or not test(value):
        raise BillingError(f"settings.toml [{section}] {key} = {value!r}: {allowed}")
    if isinstance(default, tuple):
        return tuple(value)
    return float(value) if isinstance(default, float) else value


def _inbox(table: Any, path: Path | str) -> Inbox:
    """``[inbox]``: ``settle_seconds`` and ``[inbox.complete]`` (formats or name patterns)."""
    where = f"{path}, [inbox]"
    if not isinstance(table, dict):
        raise BillingError(f"{where}: ожидается раздел настроек")
    _refuse_unknown("inbox", table, ["settle_seconds", "complete"])
    settle = table.get("settle_seconds", Inbox.settle_seconds)
    if isinstance(settle, bool) or not isinstance(settle, int) or settle < 0:
        raise BillingError(f"{where} settle_seconds: ожидается целое число секунд не меньше 0, "
                           f"а не «{settle}»")
    rules = table.get("complete", {})
    if not isinstance(rules, dict):
        raise BillingError(f"{where} complete: ожидается раздел [inbox.complete]")
    complete = dict(Inbox.complete)
    for key, rule in rules.items():
        if rule not in COMPLETE_RULES:
            raise BillingError(f"{where}.complete, {key}: правило «{rule}» неизвестно — допустимы "
                               f"{', '.join(COMPLETE_RULES)}")
        if not is_name_pattern(key) and key not in PAYMENT_FORMATS:
            raise BillingError(f"{where}.complete: «{key}» — не формат ({', '.join(PAYMENT_FORMATS)}) "
                               f"и не шаблон имени файла (например \"post-*.csv\")")
        if rule == "footer" and key not in FOOTER_FORMATS:
            raise BillingError(f"{where}.complete, {key}: правило footer — только для реестров sber и "
                               f"vtb и выписок 1c (итоговая строка или КонецФайла есть только у них); "
                               f"выберите settle или done")
        complete[key] = rule
    return Inbox(settle, tuple(complete.items()))


_BANK_CHECKS: dict[str, Check] = {
    "code": (lambda v: bool(re.fullmatch(r"[A-Za-z0-9_-]{1,32}", v)),
             "нужен код агента из латинских букв, цифр, «_» или «-», например sber"),
    "layout": (lambda v: v in BANK_LAYOUTS, f"допустимо {' или '.join(BANK_LAYOUTS)}"),
    "name": (lambda v: True, "нужно название банка или агента"),
    "org_id": (lambda v: True, "нужен код организации (org_id)"),
    "file_name": (lambda v: _bank_name_rule_ok(v),
                  "нужно правило имени файла из полей {" + "}, {".join(BANK_NAME_FIELDS)
                  + "} без «/», например \"{inn}_{account}_{seq}_{mm}{yy}.txt\""),
    "sequence": (lambda v: 1 <= v <= 999, "нужен номер реестра 1–999"),
    "services": (lambda v: all(isinstance(s, str) and s for s in v), "нужен список кодов услуг"),
    "separator": (lambda v: v in (";", "|", "\t"), "допустимо \";\", \"|\" или \"\\t\""),
    "decimal": (lambda v: v in (",", "."), "допустимо \",\" или \".\""),
    "amounts": (lambda v: v in ("rubles", "kopecks"), "допустимо rubles или kopecks"),
    "columns": (lambda v: _bank_columns_ok(v),
                f"нужен список полей из {', '.join(BANK_COLUMNS)}: account и amount — ровно по "
                "одному разу, meters и services — не больше одного раза"),
    "max_text": (lambda v: v >= 0, "нужно целое число знаков ≥ 0 (0 — без ограничения)"),
    "organizations": (lambda v: True, "нужно true или false"),
}


def _bank_name_rule_ok(rule: str) -> bool:
    import string

    if any(ch in rule for ch in "/\\") or rule.startswith("."):
        return False
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(rule) if f is not None]
    except ValueError:
        return False
    return all(n in BANK_NAME_FIELDS for n in names)


def _bank_columns_ok(columns: Any) -> bool:
    return (all(isinstance(c, str) and c in BANK_COLUMNS for c in columns)
            and columns.count("account") == 1 and columns.count("amount") == 1
            and columns.count("meters") <= 1 and columns.count("services") <= 1)


def _banks(table: Any, path: Path | str) -> Banks:
    """``[banks]``: the list ``[[banks.agents]]``, each entry checked like a section."""
    where = f"{path}, [banks]"
    if not isinstance(table, dict):
        raise BillingError(f"{where}: ожидается раздел настроек")
    _refuse_unknown("banks", table, ["agents"])
    entries = table.get("agents", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise BillingError(f"{where} agents: ожидается список [[banks.agents]]")
    names = [f.name for f in fields(BankAgent)]
    agents: list[BankAgent] = []
    for number, entry in enumerate(entries, start=1):
        section = f"banks.agents № {number}"
        _refuse_unknown(section, entry, names)
        if "code" not in entry:
            raise BillingError(f"settings.toml [{section}]: не указан code — код банка или агента "
                               "(как его платежи приходят обратно, например sber)")
        values: dict[str, Any] = {}
        for name in names:
            if name not in entry:
                continue
            value, default = entry[name], getattr(BankAgent, name, "")
            if isinstance(default, tuple):  # lists of text: services, columns
                if not isinstance(value, list) or not _BANK_CHECKS[name][0](value):
                    raise BillingError(f"settings.toml [{section}] {name} = {value!r}: "
                                       f"{_BANK_CHECKS[name][1]}")
                values[name] = tuple(value)
            else:
                values[name] = _value(section, name, value, default, _BANK_CHECKS[name])
        agents.append(BankAgent(**values))
    codes = [a.code for a in agents]
    twice = sorted({c for c in codes if codes.count(c) > 1})
    if twice:
        raise BillingError(f"{where}: агент {twice[0]} указан дважды — у каждого агента свой code")
    return Banks(tuple(agents))


def is_name_pattern(key: str) -> bool:
    """Whether a key of ``[inbox.complete]`` is a file-name pattern (not a format)."""
    return any(ch in key for ch in "*?[")
