"""Register contracts: the columns staff maintain, their types and their checks.

One :class:`Register` per register of ``CONTRACT.md``. From it the ingest stage
derives (1) the parsing of text cells into typed columns, (2) a pandera schema
for value checks on the typed frame, and (3) the referential checks between
registers. The specification is the single source: messages in the reject
report are written from it, in Russian.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandera.polars as pa
import polars as pl
from pandera.engines.polars_engine import Decimal as PaDecimal

ColumnKind = Literal["id", "text", "int", "decimal", "date", "datetime", "bool", "enum"]
#: Checks of a text column's form (``pipeline.ingest.requisites``).
ColumnCheck = Literal[
    "inn", "kpp", "bik", "account", "corr_account", "email", "els", "izhku", "period", "ogrn"]


@dataclass(frozen=True)
class Col:
    """One register column.

    Attributes:
        name: column name in the file header (contract name).
        kind: how the text cell is parsed.
        required: the header must have this column; when False a missing column
            is filled with ``default``.
        nullable: an empty cell is allowed (an empty ``to`` means open-ended).
        default: value used for an empty cell or a missing optional column.
        scale: decimals kept for ``decimal`` columns (more is an error, never rounded).
        ge, gt, le: numeric bounds (bounds also keep integer products from overflowing).
        choices: allowed values of an ``enum`` column.
        check: a requisite check of a text column (``pipeline.ingest.requisites``):
            ``inn``, ``kpp``, ``bik``, ``account`` or ``corr_account`` (the two accounts
            are checked against the row's ``bik``), ``email``.
        title: the Russian name used in messages.
    """

    name: str
    kind: ColumnKind
    title: str
    required: bool = True
    nullable: bool = False
    default: str | None = None
    scale: int = 0
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    check: ColumnCheck | None = None

    @property
    def dtype(self) -> pl.DataType:
        if self.kind == "int":
            return pl.Int64()
        if self.kind == "decimal":
            return pl.Decimal(18, self.scale)
        if self.kind == "date":
            return pl.Date()
        if self.kind == "datetime":
            return pl.Datetime("us")
        if self.kind == "bool":
            return pl.Boolean()
        return pl.String()


@dataclass(frozen=True)
class Ref:
    """A reference from ``column`` to the key of ``target`` (rows with an empty cell pass)."""

    column: str
    target: str
    target_column: str


@dataclass(frozen=True)
class Register:
    """A register: its columns, key, references and date-order rules."""

    name: str
    title: str
    columns: tuple[Col, ...]
    key: tuple[str, ...] = ()
    refs: tuple[Ref, ...] = ()
    date_order: tuple[tuple[str, str], ...] = ()
    #: at least one of these columns must be filled (meter: premise or building)
    one_of: tuple[str, ...] = ()
    #: (column, values, needed): a row whose ``column`` is one of ``values`` must fill ``needed``
    needs: tuple[tuple[str, tuple[str, ...], str], ...] = ()
    required_file: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def col(self, name: str) -> Col:
        return next(c for c in self.columns if c.name == name)


def _id(name: str, title: str, **kw: object) -> Col:
    return Col(name, "id", title, **kw)  # type: ignore[arg-type]


AREA = {"scale": 2, "le": 1_000_000}

ROLES = ("management", "supplier", "capital_repair", "billing_centre")

#: How the payer gets the receipt: on paper; by e-mail and on paper; by e-mail only (the
#: consent of Правила 354 п.67 to electronic delivery is ``email`` or ``email_only``).
DELIVERY = ("paper", "email", "email_only")

#: Kitchen stove of a premise: the electricity norm differs (law.md §1.3).
STOVES = ("gas", "electric")

#: How a meter's reading goes to ГИС ЖКХ: ``OneRateDeviceValue`` (water, heat, gas: with the
#: resource's НСИ 2 reference) or ``ElectricDeviceValue`` (electricity, tariff T1).
GIS_VALUE_KINDS = ("one_rate", "electric")

#: ГИС ЖКХ dictionary references (``gis_nsi.kind``): a charge's service type — housing (НСИ 50),
#: additional (НСИ 1) or municipal (НСИ 51) service; penalties (НСИ 329); a meter's
#: resource (НСИ 2).
GIS_NSI_KINDS = ("housing", "additional", "municipal", "penalty", "resource")

REGISTERS: dict[str, Register] = {
    r.name: r
    for r in [
        Register(
            "organizations",
            "Организации",
            (
                _id("org_id", "код организации"),
                Col("name", "text", "наименование"),
                Col("inn", "text", "ИНН", required=False, nullable=True, check="inn"),
                Col("kpp", "text", "КПП", required=False, nullable=True, check="kpp"),
                Col("role", "enum", "роль", choices=ROLES),
                Col("bank_name", "text", "банк", required=False, nullable=True),
                Col("bik", "text", "БИК", required=False, nullable=True, check="bik"),
                Col("account", "text", "расчётный счёт", required=False, nullable=True, check="account"),
                Col("corr_account", "text", "корр. счёт", required=False, nullable=True,
                    check="corr_account"),
                Col("address", "text", "адрес", required=False, nullable=True),
                Col("phone", "text", "телефон", required=False, nullable=True),
                # A claimant's ОГРН for court documents (ГПК 124 ч.2 п.2; pipeline/penalties/parties.py).
                Col("ogrn", "text", "ОГРН", required=False, nullable=True, check="ogrn"),
            ),
            key=("org_id",),
            required_file=True,
        ),
        Register(
            "buildings",
            "Дома",
            (
                _id("building_id", "код дома"),
                Col("address", "text", "адрес"),
                _id("manager_id", "управляющая организация"),
                Col("total_area", "decimal", "общая площадь", **AREA, gt=0),  # type: ignore[arg-type]
                Col("common_area", "decimal", "площадь общего имущества", required=False,
                    nullable=True, ge=0, **AREA),  # type: ignore[arg-type]
                # The post's register sorts by it (pipeline.export.post); empty = the leading
                # six digits of ``address`` when it starts with them.
                Col("post_index", "text", "почтовый индекс (6 цифр)", required=False, nullable=True),
            ),
            key=("building_id",),
            required_file=True,
            refs=(Ref("manager_id", "organizations", "org_id"),),
        ),
        Register(
            "premises",
            "Помещения",
            (
                _id("premise_id", "код помещения"),
                _id("building_id", "дом"),
                Col("number", "text", "номер"),
                Col("kind", "enum", "вид помещения", choices=("residential", "nonresidential")),
                Col("total_area", "decimal", "общая площадь", **AREA, gt=0),  # type: ignore[arg-type]
                Col("rooms", "int", "комнат", required=False, nullable=True, ge=0, le=100),
                Col("meter_possible", "bool", "возможна установка ИПУ", required=False,
                    default="true"),
                # Picks the electricity norm's table (docs/rules.md): empty = gas, the lower
                # norm, so a premise whose stove nobody entered is never overcharged.
                Col("stove", "enum", "плита (gas — газовая, electric — электрическая)",
                    required=False, default="gas", choices=STOVES),
                Col("living_area", "decimal", "жилая площадь", required=False, nullable=True, ge=0,
                    **AREA),  # type: ignore[arg-type]
                # Where the postman goes: print batches run by entrance, floor and flat.
                Col("entrance", "int", "подъезд", required=False, nullable=True, ge=0, le=1000),
                Col("floor", "int", "этаж", required=False, nullable=True, ge=-10, le=300),
            ),
            key=("premise_id",),
            required_file=True,
            refs=(Ref("building_id", "buildings", "building_id"),),
        ),
        Register(
            "accounts",
            "Лицевые счета",
            (
                _id("account_id", "лицевой счёт"),
                _id("premise_id", "помещение"),
                Col("payer_kind", "enum", "вид плательщика", choices=("person", "organization"),
                    required=False, default="person"),
                Col("payer_name", "text", "плательщик"),
                Col("share", "decimal", "доля", scale=4, gt=0, le=1, required=False,
                    default="1"),
                Col("owners", "int", "число собственников", ge=0, le=1000, required=False,
                    default="1"),
                Col("opened_on", "date", "дата открытия"),
                Col("closed_on", "date", "дата закрытия", required=False, nullable=True),
                Col("email", "text", "e-mail", required=False, nullable=True, check="email"),
                Col("delivery", "enum", "доставка квитанции", choices=DELIVERY, required=False,
                    default="paper"),
                # An agreement on repaying the debt (flag of the social welfare register,
                # law.md §8.2–8.3): in force through this day; empty = none.
                Col("repayment_agreement_until", "date", "соглашение о погашении долга действует по",
                    required=False, nullable=True),
                # An organization payer's details: its invoices name the buyer, its bank
                # payments are matched by ИНН (pipeline.ingest.onec).
                Col("payer_inn", "text", "ИНН плательщика", required=False, nullable=True, check="inn"),
                Col("payer_kpp", "text", "КПП плательщика", required=False, nullable=True, check="kpp"),
                # A person payer's details a court order names (ГПК 124 ч.2 п.3); empty = not known,
                # the court statement then says «сведения не известны» (docs/statements.md).
                Col("payer_birth_date", "date", "дата рождения плательщика", required=False, nullable=True),
                Col("payer_birth_place", "text", "место рождения плательщика", required=False, nullable=True),
                Col("payer_document", "text", "идентификатор плательщика (СНИЛС, паспорт)", required=False,
                    nullable=True),
            ),
            key=("account_id",),
            required_file=True,
            refs=(Ref("premise_id", "premises", "premise_id"),),
            date_order=(("opened_on", "closed_on"),),
            needs=(("delivery", ("email", "email_only"), "email"),),
        ),
        Register(
            "building_services",
            "Услуги дома",
            (
                _id("building_id", "дом"),
                _id("service_id", "услуга"),
                _id("supplier_id", "поставщик"),
                Col("from", "date", "действует с"),
                Col("to", "date", "действует по", required=False, nullable=True),
            ),
            key=("building_id", "service_id", "from"),
            required_file=True,
            refs=(
                Ref("building_id", "buildings", "building_id"),
                Ref("service_id", "services", "service_id"),
                Ref("supplier_id", "organizations", "org_id"),
            ),
            date_order=(("from", "to"),),
        ),
        Register(
            "residents",
            "Проживающие (зарегистрированные)",
            (
                _id("person_id", "код гражданина"),
                _id("account_id", "лицевой счёт"),
                Col("full_name", "text", "ФИО"),
                Col("birth_date", "date", "дата рождения", required=False, nullable=True),
                Col("kind", "enum", "вид регистрации", choices=("permanent", "temporary"),
                    required=False, default="permanent"),
                Col("from", "date", "зарегистрирован с"),
                Col("to", "date", "зарегистрирован по", required=False, nullable=True),
            ),
            key=("person_id", "from"),
            refs=(Ref("account_id", "accounts", "account_id"),),
            date_order=(("from", "to"),),
        ),
        Register(
            "absences",
            "Временное отсутствие",
            (
                _id("person_id", "код гражданина"),
                Col("from", "date", "отсутствует с"),
                Col("to", "date", "отсутствует по"),
            ),
            key=("person_id", "from"),
            refs=(Ref("person_id", "residents", "person_id"),),
            date_order=(("from", "to"),),
        ),
        Register(
            "meters",
            "Приборы учёта",
            (
                _id("meter_id", "код прибора учёта"),
                _id("service_id", "услуга"),
                _id("premise_id", "помещение", required=False, nullable=True),
                _id("building_id", "дом (для ОДПУ)", required=False, nullable=True),
                Col("serial", "text", "заводской номер", required=False, nullable=True),
                Col("installed_on", "date", "дата установки"),
                Col("removed_on", "date", "дата снятия", required=False, nullable=True),
                Col("verified_until", "date", "поверка до", required=False, nullable=True),
                Col("digits", "int", "разрядность", ge=1, le=12, required=False, default="6"),
                Col("initial_value", "decimal", "начальные показания", scale=6, ge=0,
                    le=1e12, required=False, nullable=True),
            ),
            key=("meter_id",),
            refs=(
                Ref("premise_id", "premises", "premise_id"),
                Ref("building_id", "buildings", "building_id"),
                Ref("service_id", "services", "service_id"),
            ),
            date_order=(("installed_on", "removed_on"),),
            one_of=("premise_id", "building_id"),
        ),
        Register(
            "readings",
            "Показания приборов учёта",
            (
                _id("meter_id", "прибор учёта"),
                Col("read_on", "date", "дата показаний"),
                Col("value", "decimal", "показания", scale=6, ge=0, le=1e12),
                Col("source", "text", "источник", required=False, nullable=True),
                Col("confirmed", "bool", "подтверждено (аномальные показания)", required=False,
                    default="false"),
            ),
            key=("meter_id", "read_on"),
            refs=(Ref("meter_id", "meters", "meter_id"),),
        ),
        Register(
            "benefits",
            "Льготы",
            (
                _id("person_id", "код гражданина"),
                # The beneficiaries of social support (issue 14): the category is a code of
                # rules/welfare_categories.csv (rules.welfare_categories).
                Col("category", "text", "категория льготы"),
                Col("from", "date", "действует с"),
                Col("to", "date", "действует по", required=False, nullable=True),
                # Empty = the account the person is registered on (residents) in the period.
                _id("account_id", "лицевой счёт (пусто — по регистрации)", required=False,
                    nullable=True),
                Col("document", "text", "документ о праве на льготу", required=False, nullable=True),
            ),
            key=("person_id", "category", "from"),
            refs=(Ref("person_id", "residents", "person_id"),
                  Ref("account_id", "accounts", "account_id")),
            date_order=(("from", "to"),),
        ),
        Register(
            "gis_ids",
            "Идентификаторы ГИС ЖКХ",
            (
                _id("account_id", "лицевой счёт"),
                Col("service_id", "text", "услуга (для ИЖКУ)", required=False, nullable=True),
                Col("els", "text", "ЕЛС", check="els"),
                Col("izhku", "text", "ИЖКУ", required=False, nullable=True, check="izhku"),
                Col("from", "date", "действует с"),
                # AccountGuid: the only account identifier ГИС takes in a payment document.
                Col("account_guid", "text", "GUID лицевого счёта в ГИС ЖКХ (AccountGuid)",
                    required=False, nullable=True),
            ),
            key=("account_id", "service_id", "from"),
            refs=(Ref("account_id", "accounts", "account_id"),),
            notes=("ЕЛС и ИЖКУ присваивает ГИС ЖКХ; в квитанции печатаются действующие на конец периода.",
                   "GUID лицевого счёта нужен для выгрузки платёжных документов в ГИС ЖКХ "
                   "(billing export gis); без него счёт не выгружается и попадает в отчёт "
                   "gis/пропущено.csv."),
        ),
        Register(
            "gis_meter_ids",
            "Идентификаторы приборов учёта в ГИС ЖКХ",
            (
                _id("meter_id", "прибор учёта"),
                Col("device_guid", "text", "GUID прибора учёта в ГИС ЖКХ (MeteringDeviceRootGUID)"),
                Col("value_kind", "enum", "вид показаний", required=False, default="one_rate",
                    choices=GIS_VALUE_KINDS),
                Col("from", "date", "действует с"),
            ),
            key=("meter_id", "from"),
            refs=(Ref("meter_id", "meters", "meter_id"),),
            notes=("Показания прибора без GUID не выгружаются в ГИС ЖКХ и попадают в отчёт "
                   "gis/пропущено.csv.",),
        ),
        Register(
            "gis_nsi",
            "Справочники ГИС ЖКХ для услуг",
            (
                Col("kind", "enum", "вид записи", choices=GIS_NSI_KINDS),
                _id("service_id", "услуга", required=False, nullable=True),
                _id("supplier_id", "поставщик (пусто — для всех)", required=False, nullable=True),
                Col("code", "text", "код записи справочника ГИС ЖКХ"),
                Col("guid", "text", "GUID записи справочника ГИС ЖКХ"),
                Col("name", "text", "наименование в справочнике", required=False, nullable=True),
                Col("from", "date", "действует с"),
            ),
            key=("kind", "service_id", "supplier_id", "from"),
            refs=(Ref("service_id", "services", "service_id"),
                  Ref("supplier_id", "organizations", "org_id")),
            needs=(("kind", ("housing", "additional", "municipal", "resource"), "service_id"),),
            notes=("Строка поставщика важнее общей (пустой supplier_id). Услуга с начислением, "
                   "но без записи справочника, не выгружается: её платёжный документ попадает "
                   "в отчёт gis/пропущено.csv.",),
        ),
        Register(
            "instalments",
            "Рассрочка",
            (
                _id("account_id", "лицевой счёт"),
                _id("supplier_id", "поставщик"),
                Col("service_id", "text", "услуга", required=False, nullable=True),
                Col("period", "text", "период ГГГГ-ММ", check="period"),
                Col("amount", "decimal", "сумма к оплате по рассрочке, руб.", scale=2, gt=0, le=100_000_000),
                Col("interest_rate", "decimal", "проценты за рассрочку, % годовых", scale=4, ge=0, le=100,
                    required=False, default="0"),
                Col("interest", "decimal", "проценты за рассрочку, руб.", scale=2, ge=0, le=100_000_000,
                    required=False, default="0"),
            ),
            key=("account_id", "supplier_id", "service_id", "period"),
            refs=(Ref("account_id", "accounts", "account_id"), Ref("supplier_id", "organizations", "org_id")),
        ),
        # Правила 354 п.118: a kept agreement on repaying the debt stops its collection case
        # (pipeline/collect, docs/collection.md); a broken one (broken_on) lets it continue.
        Register(
            "repayment_agreements",
            "Соглашения о погашении задолженности",
            (
                _id("account_id", "лицевой счёт"),
                _id("supplier_id", "поставщик (пусто — все поставщики)", required=False, nullable=True),
                Col("from", "date", "соглашение с"),
                Col("to", "date", "соглашение по"),
                Col("broken_on", "date", "нарушено (не оплачено в срок) с", required=False, nullable=True),
            ),
            key=("account_id", "supplier_id", "from"),
            refs=(Ref("account_id", "accounts", "account_id"), Ref("supplier_id", "organizations", "org_id")),
            date_order=(("from", "to"),),
        ),
        Register(
            "outages",
            "Перерывы и ненадлежащее качество",
            (
                _id("building_id", "дом"),
                _id("service_id", "услуга"),
                Col("started_at", "datetime", "начало"),
                Col("ended_at", "datetime", "окончание"),
            ),
            key=("building_id", "service_id", "started_at"),
            refs=(
                Ref("building_id", "buildings", "building_id"),
                Ref("service_id", "services", "service_id"),
            ),
            date_order=(("started_at", "ended_at"),),
        ),
        Register(
            "access_refusals",
            "Акты о недопуске к прибору учёта",
            (
                _id("premise_id", "помещение"),
                _id("service_id", "услуга"),
                Col("refused_on", "date", "дата акта о недопуске"),
                Col("resolved_on", "date", "доступ предоставлен (проверка проведена)",
                    required=False, nullable=True),
            ),
            key=("premise_id", "service_id", "refused_on"),
            refs=(
                Ref("premise_id", "premises", "premise_id"),
                Ref("service_id", "services", "service_id"),
            ),
            date_order=(("refused_on", "resolved_on"),),
        ),
    ]
}

#: Order in which registers are checked: a reference always points backwards.
LOAD_ORDER: tuple[str, ...] = tuple(REGISTERS)


def _checks(col: Col) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if col.ge is not None:
        checks.append(pa.Check.ge(col.ge, error=f"должно быть не меньше {col.ge:g}"))
    if col.gt is not None:
        checks.append(pa.Check.gt(col.gt, error=f"должно быть больше {col.gt:g}"))
    if col.le is not None:
        checks.append(pa.Check.le(col.le, error=f"должно быть не больше {col.le:g}"))
    if col.choices:
        checks.append(
            pa.Check.isin(list(col.choices), error="допустимые значения: " + ", ".join(col.choices))
        )
    return checks


def pandera_schema(register: Register) -> pa.DataFrameSchema:
    """The pandera schema of a register's typed frame (value checks, not parsing).

    >>> pandera_schema(REGISTERS["buildings"]).columns["total_area"].checks[0].error
    'должно быть больше 0'
    """
    columns = {}
    for col in register.columns:
        dtype: Any = PaDecimal(precision=18, scale=col.scale) if col.kind == "decimal" else col.dtype
        columns[col.name] = pa.Column(dtype, checks=_checks(col), nullable=col.nullable)
    return pa.DataFrameSchema(columns, strict=False, coerce=False)


#: Messages for pandera's built-in checks.
BUILTIN_CHECK_MESSAGES = {
    "not_nullable": "обязательное значение не заполнено",
    "field_uniqueness": "значение повторяется",
}

#: A plain payment file of an agent (bank, post, online account): one row per payment.
PAYMENTS = Register(
    "payments",
    "Платежи",
    (
        Col("payment_id", "id", "код платежа"),
        Col("paid_on", "date", "дата платежа"),
        Col("account_id", "id", "лицевой счёт"),
        # Negative = a refund or cancellation; it must name its original in refund_of.
        Col("amount", "decimal", "сумма, руб.", scale=2, ge=-100_000_000, le=100_000_000),
        Col("period", "text", "период ГГГГ-ММ", required=False, nullable=True),
        # Required: a payment id is unique only within its agent (billing payments import
        # --agent names the agent of a file without the column).
        Col("agent", "id", "платёжный агент"),
        Col("refund_of", "id", "возврат платежа (код исходного платежа)", required=False,
            nullable=True),
    ),
    key=("agent", "payment_id"),
)
