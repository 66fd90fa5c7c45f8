"""Rule tables: dated data that the law or a regulator changes (a change is a new row).

Parsed with the same machinery as registers, but a rule table is all or
nothing: one bad row stops the command, because charging with half a tariff
table is worse than not charging.
"""

from __future__ import annotations

from schemas.registers import Col, Register

SERVICE_KINDS = ("metered", "sewerage", "area", "per_person", "fixed", "heating", "common_property")
PENALTY_SCHEMES = ("standard", "capital_repair")

RULE_TABLES: dict[str, Register] = {
    r.name: r
    for r in [
        Register(
            "services",
            "Услуги",
            (
                Col("service_id", "id", "код услуги"),
                Col("name", "text", "наименование"),
                Col("unit", "text", "единица измерения"),
                Col("kind", "enum", "способ начисления", choices=SERVICE_KINDS),
                Col("penalty_scheme", "enum", "схема пени", choices=PENALTY_SCHEMES,
                    required=False, default="standard"),
                Col("order", "int", "порядок в квитанции", required=False, default="0"),
                # КР на СОИ: the resource whose building meter settles it once a year.
                Col("settled_by", "id", "ресурс для годовой корректировки по ОДПУ", required=False,
                    nullable=True),
            ),
            key=("service_id",),
            required_file=True,
        ),
        Register(
            "tariffs",
            "Тарифы",
            (
                Col("service_id", "id", "услуга"),
                Col("supplier_id", "id", "поставщик (пусто — любой)", required=False,
                    nullable=True),
                Col("from", "date", "действует с"),
                # Tariffs are set in kopecks; a price with more decimals is refused.
                Col("price", "decimal", "цена, руб.", scale=2, ge=0, le=10_000_000),
                Col("source", "text", "основание", required=False, nullable=True),
            ),
            key=("service_id", "supplier_id", "from"),
            required_file=True,
        ),
        Register(
            "norms",
            "Нормативы потребления",
            (
                Col("service_id", "id", "услуга"),
                Col("from", "date", "действует с"),
                Col("value", "decimal", "норматив", scale=6, ge=0, le=100_000),
                Col("source", "text", "основание", required=False, nullable=True),
            ),
            key=("service_id", "from"),
            required_file=True,
        ),
        Register(
            "increasing_coefficients",
            "Повышающие коэффициенты",
            (
                Col("service_id", "id", "услуга"),
                Col("from", "date", "действует с"),
                Col("value", "decimal", "коэффициент", scale=3, ge=1, le=100),
                Col("source", "text", "основание", required=False, nullable=True),
            ),
            key=("service_id", "from"),
        ),
        Register(
            "key_rates",
            "Ключевая ставка Банка России",
            (
                Col("from", "date", "действует с"),
                Col("rate", "decimal", "ставка, %", scale=2, ge=0, le=100),
                Col("confidence", "text", "достоверность", required=False, nullable=True),
            ),
            key=("from",),
            required_file=True,
        ),
    ]
}

RULE_TABLES["due_dates"] = Register(
    "due_dates",
    "Срок оплаты",
    (
        Col("from", "date", "для начислений за периоды с"),
        Col("day", "int", "число следующего месяца", ge=1, le=28),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("from",),
)

# Penalties (пени, ЖК РФ ст.155 ч.14 и ч.14.1): see pipeline/penalties/__init__.py.
RULE_TABLES["penalty_schemes"] = Register(
    "penalty_schemes",
    "Схемы пени",
    (
        Col("scheme", "enum", "схема пени", choices=PENALTY_SCHEMES),
        Col("from", "date", "для начислений за периоды с"),
        Col("grace_days", "int", "дней без пени после срока оплаты", ge=0, le=366),
        Col("step_day", "int", "последний день первой доли (день просрочки)", ge=0, le=3660),
        Col("den_before", "int", "знаменатель первой доли (1/300)", ge=1, le=100_000),
        Col("den_after", "int", "знаменатель второй доли (1/130)", ge=1, le=100_000),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("scheme", "from"),
)

PENALTY_CAP_KINDS = ("fixed", "min")

RULE_TABLES["penalty_rate_caps"] = Register(
    "penalty_rate_caps",
    "Ограничение ставки для пени",
    (
        Col("from", "date", "для дня оплаты (расчёта) с"),
        Col("to", "date", "по (включительно)"),
        Col("kind", "enum", "вид: fixed — ставка вместо ключевой, min — меньшая из двух",
            choices=PENALTY_CAP_KINDS),
        Col("rate", "decimal", "ставка, %", scale=2, ge=0, le=100),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("from",),
    date_order=(("from", "to"),),
)

RULE_TABLES["moratoriums"] = Register(
    "moratoriums",
    "Моратории на пени",
    (
        Col("variant", "id", "вариант (law — по закону)"),
        Col("from", "date", "первый день без пени"),
        Col("to", "date", "последний день без пени (включительно)"),
        Col("arisen_before", "date", "только для долгов, возникших до (пусто — для всех)",
            required=False, nullable=True),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("variant", "from"),
    date_order=(("from", "to"),),
)

RULE_TABLES["absence_rules"] = Register(
    "absence_rules",
    "Перерасчёт за временное отсутствие",
    (
        Col("service_id", "id", "услуга"),
        Col("from", "date", "действует с"),
        Col("meter_impossible_only", "bool", "только при технической невозможности ИПУ"),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("service_id", "from"),
)

RULE_TABLES["quality_rules"] = Register(
    "quality_rules",
    "Снижение платы за перерывы (Прил. 1 к Правилам 354)",
    (
        Col("service_id", "id", "услуга"),
        Col("from", "date", "действует с"),
        Col("month_hours", "decimal", "допустимо часов в месяц", scale=2, ge=0, le=744),
        Col("once_hours", "decimal", "допустимо часов единовременно", scale=2, ge=0, le=744),
        Col("percent_per_hour", "decimal", "снижение за час превышения, %", scale=4, ge=0, le=100),
        Col("excess_rule", "enum", "как считать превышение", choices=("month_total", "greater_of")),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("service_id", "from"),
)

RULE_TABLES["failed_meter_rules"] = Register(
    "failed_meter_rules",
    "Повышающий коэффициент после выхода прибора учёта из строя",
    (
        Col("service_id", "id", "услуга"),
        Col("from", "date", "действует с"),
        Col("coefficient_applies", "bool", "норматив с повышающим коэффициентом"),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("service_id", "from"),
)

RULE_TABLES["soi_settlement"] = Register(
    "soi_settlement",
    "Годовая корректировка платы за КР на СОИ по ОДПУ",
    (
        Col("from", "date", "действует с"),
        Col("settle_month", "int", "месяц корректировки", ge=1, le=12),
        Col("parts", "int", "равных частей", ge=1, le=24),
        Col("carry_over", "bool", "отрицательный остаток переносится после года выплаты"),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("from",),
)

#: Stove kinds of the electricity norm matrix; ``any`` = one value for both.
NORM_STOVES = ("gas", "electric", "any")

# Electricity norm by rooms × persons (кВт·ч на 1 человека в месяц), the matrix a subject
# of the RF sets (law.md §1.3): a service with rows here is charged by the premise's cell,
# else by norms.csv. rooms 4 = «4 и более», persons 5 = «5 и более».
RULE_TABLES["electricity_norms"] = Register(
    "electricity_norms",
    "Нормативы электроснабжения по числу комнат и проживающих",
    (
        Col("service_id", "id", "услуга"),
        Col("from", "date", "действует с"),
        Col("rooms", "int", "комнат (4 — 4 и более)", ge=1, le=4),
        Col("persons", "int", "проживающих (5 — 5 и более)", ge=1, le=5),
        Col("stove", "enum", "плита (gas, electric, any — любая)", choices=NORM_STOVES),
        Col("value", "decimal", "норматив на 1 человека в месяц", scale=6, ge=0, le=100_000),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("service_id", "from", "rooms", "persons", "stove"),
)

#: The numeric thresholds of the law the engine applies, each by its name in
#: ``legal_thresholds.csv`` (every value an inclusive bound; its meaning in the row's source).
LEGAL_THRESHOLDS = (
    "absence_min_full_days",       # temporary absence counts from this many full days (п.86–87)
    "average_unread_max_periods",  # periods by average after the last reading (п.59 «б»)
    "average_failed_max_periods",  # periods by average after a meter failed (п.59 «а», п.60)
    "average_history_periods",     # periods of own history the average is taken over (п.59)
    "average_min_months",          # shortest history an average may be taken over (п.59)
    "access_refusals_min",         # unresolved acts of refused access → norm × K (п.85(3)?, п.60)
    "limitation_years",            # limitation of a court statement (ГК РФ ст.196)
    "warning_debt_months",         # overdue debt over this many months' charges → п.119 warning on the ЕПД
)

RULE_TABLES["legal_thresholds"] = Register(
    "legal_thresholds",
    "Числовые пороги закона",
    (
        Col("threshold", "enum", "порог", choices=LEGAL_THRESHOLDS),
        Col("from", "date", "действует с"),
        Col("value", "int", "значение", ge=1, le=1000),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("threshold", "from"),
    required_file=True,
)

# Debt collection (pipeline/collect, docs/collection.md): who is a debtor, the warning days
# and what may be restricted, per service (``*`` = any other) and payer kind (law.md §6).
COLLECTION_THRESHOLDS = ("norm_months", "amount")
COLLECTION_RESTRICTION = ("allowed", "never", "not_in_block_of_flats")

RULE_TABLES["collection"] = Register(
    "collection",
    "Работа с должниками",
    (
        Col("service", "id", "услуга (* — любая без своей строки)"),
        Col("payer_kind", "enum", "вид плательщика", choices=("person", "organization")),
        Col("from", "date", "действует с"),
        Col("threshold", "enum", "порог: norm_months — месяцев начислений по нормативу (п.118), "
            "amount — сумма и срок долга", choices=COLLECTION_THRESHOLDS),
        Col("months", "int", "месяцев начислений по нормативу", required=False, nullable=True,
            ge=1, le=120),
        Col("amount", "decimal", "долг больше, руб.", scale=2, required=False, nullable=True, ge=0,
            le=100_000_000),
        Col("age_days", "int", "просрочка не меньше, дней", required=False, nullable=True, ge=0,
            le=3660),
        Col("warning_days", "int", "дней на погашение после предупреждения (претензии)", ge=0,
            le=366),
        Col("restriction", "enum", "ограничение услуги", choices=COLLECTION_RESTRICTION),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("service", "payer_kind", "from"),
)

#: ``general`` — a claim in a court of general jurisdiction (НК 333.19 п.1 пп.1), ``arbitration``
#: — in an arbitration court (НК 333.21 п.1 пп.1), ``order`` — an application for a court order
#: (a share of the ``general`` fee, with a minimum).
STATE_DUTY_COURTS = ("general", "arbitration", "order")

RULE_TABLES["state_duty"] = Register(
    "state_duty",
    "Государственная пошлина",
    (
        Col("court", "enum", "вид: general, arbitration — иск; order — судебный приказ",
            choices=STATE_DUTY_COURTS),
        Col("from", "date", "действует с"),
        Col("above", "decimal", "цена иска больше, руб.", scale=2, ge=0, le=1_000_000_000_000),
        Col("base", "decimal", "пошлина, руб.", scale=2, ge=0, le=1_000_000_000),
        Col("percent", "decimal", "плюс процент суммы сверх «above» (order: процент пошлины по иску)",
            scale=4, ge=0, le=100),
        Col("min", "decimal", "не меньше, руб.", scale=2, required=False, nullable=True, ge=0,
            le=1_000_000_000),
        Col("max", "decimal", "не больше, руб.", scale=2, required=False, nullable=True, ge=0,
            le=1_000_000_000),
        Col("source", "text", "основание", required=False, nullable=True),
    ),
    key=("court", "from", "above"),
)
