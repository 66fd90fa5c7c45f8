"""History registers: what a settlement centre brings from its previous system (``billing migrate``).

The columns here are ours; ``migration/mapping.toml`` of the workspace names the old
system's columns and codes (docs/migration.md). Each register is parsed and checked like
every register (:func:`pipeline.ingest.parse.parse_table`: file, row, column and reason
in Russian for every refused cell). Money is rubles with at most two decimals (kopecks
inside); a debt is positive, an advance negative. ``period`` columns are ``YYYY-MM``.

Which months are migrated: every month from the first to the last ``period`` of
``history_charges``; the first close of the workspace is the month after the last.
"""

from __future__ import annotations

from schemas.registers import Col, Ref, Register

MONEY = {"scale": 2, "ge": -1_000_000_000, "le": 1_000_000_000}
VOLUME = {"scale": 6, "ge": -1_000_000_000, "le": 1_000_000_000}


def _id(name: str, title: str, **kw: object) -> Col:
    return Col(name, "id", title, **kw)  # type: ignore[arg-type]


def _period(name: str, title: str, **kw: object) -> Col:
    return Col(name, "text", title + " (ГГГГ-ММ)", **kw)  # type: ignore[arg-type]


_ACCOUNT = Ref("account_id", "accounts", "account_id")
_SERVICE = Ref("service_id", "services", "service_id")
_SUPPLIER = Ref("supplier_id", "organizations", "org_id")

#: The ``service_id`` under which the old system's penalties (пени) come.
PENALTY_SERVICE = "penalty"

HISTORY: dict[str, Register] = {
    r.name: r
    for r in [
        Register(
            "history_charges",
            "Начисления прежней системы",
            (
                _id("account_id", "лицевой счёт"),
                _period("period", "месяц"),
                _id("service_id", "услуга"),
                _id("supplier_id", "поставщик"),
                Col("method", "text", "способ расчёта", required=False, default="imported"),
                Col("volume", "decimal", "объём", required=False, nullable=True, **VOLUME),  # type: ignore[arg-type]
                Col("tariff", "decimal", "тариф", required=False, nullable=True, **MONEY),  # type: ignore[arg-type]
                Col("amount", "decimal", "сумма", **MONEY),  # type: ignore[arg-type]
            ),
            key=("account_id", "period", "service_id", "supplier_id"),
            refs=(_ACCOUNT, _SUPPLIER),
            required_file=True,
            notes=("Пени прежней системы — строки с услугой penalty: они попадают в пени месяца.",),
        ),
        Register(
            "history_recalculations",
            "Перерасчёты прежней системы",
            (
                _id("account_id", "лицевой счёт"),
                _period("period", "месяц, в котором сделан перерасчёт"),
                _period("origin_period", "месяц, за который"),
                _id("service_id", "услуга"),
                _id("supplier_id", "поставщик"),
                Col("amount", "decimal", "сумма", **MONEY),  # type: ignore[arg-type]
                Col("reason", "text", "причина", required=False, default="перерасчёт прежней системы"),
            ),
            key=("account_id", "period", "origin_period", "service_id", "supplier_id"),
            refs=(_ACCOUNT, _SERVICE, _SUPPLIER),
        ),
        Register(
            "history_payments",
            "Оплаты прежней системы",
            (
                _id("payment_id", "номер платежа"),
                _id("agent", "платёжный агент"),
                _id("account_id", "лицевой счёт"),
                Col("paid_on", "date", "дата оплаты"),
                _period("period", "месяц учёта оплаты", required=False, nullable=True),
                Col("amount", "decimal", "сумма", **MONEY),  # type: ignore[arg-type]
                # How the old system split the payment; empty: split by our rules (docs/allocation).
                _id("service_id", "услуга", required=False, nullable=True),
                _id("supplier_id", "поставщик", required=False, nullable=True),
                _period("charge_period", "за какой месяц", required=False, nullable=True),
            ),
            key=("agent", "payment_id", "service_id", "supplier_id", "charge_period"),
            refs=(_ACCOUNT,),
        ),
        Register(
            "history_balances",
            "Сальдо прежней системы",
            (
                _id("account_id", "лицевой счёт"),
                _period("period", "месяц"),
                _id("service_id", "услуга"),
                _id("supplier_id", "поставщик"),
                Col("opening", "decimal", "сальдо на начало", required=False, nullable=True, **MONEY),  # type: ignore[arg-type]
                Col("closing", "decimal", "сальдо на конец", **MONEY),  # type: ignore[arg-type]
            ),
            key=("account_id", "period", "service_id", "supplier_id"),
            refs=(_ACCOUNT, _SUPPLIER),
            required_file=True,
        ),
        Register(
            "history_debts",
            "Долги по месяцам возникновения",
            (
                _id("account_id", "лицевой счёт"),
                _id("service_id", "услуга"),
                _id("supplier_id", "поставщик"),
                _period("charge_period", "месяц возникновения (пусто — аванс)", required=False,
                        nullable=True),
                Col("amount", "decimal", "сумма долга (аванс — с минусом)", **MONEY),  # type: ignore[arg-type]
                Col("due_date", "date", "срок оплаты", required=False, nullable=True),
            ),
            key=("account_id", "service_id", "supplier_id", "charge_period"),
            refs=(_ACCOUNT, _SUPPLIER),
        ),
        Register(
            "history_penalties",
            "Пени прежней системы по долгам",
            (
                _id("account_id", "лицевой счёт"),
                _id("supplier_id", "поставщик"),
                _period("charge_period", "месяц долга"),
                Col("accrued", "decimal", "начислено пени за всё время", **MONEY),  # type: ignore[arg-type]
            ),
            key=("account_id", "supplier_id", "charge_period"),
            refs=(_ACCOUNT, _SUPPLIER),
        ),
        Register(
            "history_readings",
            "Показания прежней системы",
            (
                _id("meter_id", "прибор учёта"),
                Col("read_on", "date", "дата показания"),
                Col("value", "decimal", "показание", scale=6, ge=0, le=1_000_000_000),
            ),
            key=("meter_id", "read_on"),
            refs=(Ref("meter_id", "meters", "meter_id"),),
        ),
        Register(
            "history_meter_volumes",
            "Объёмы по приборам прежней системы",
            (
                _id("meter_id", "прибор учёта"),
                _period("period", "месяц"),
                Col("method", "enum", "как определён объём", choices=("meter", "average", "norm")),
                Col("volume", "decimal", "объём", **VOLUME),  # type: ignore[arg-type]
            ),
            key=("meter_id", "period"),
            refs=(Ref("meter_id", "meters", "meter_id"),),
        ),
    ]
}
