"""``docs/registers.md`` and the register templates, written from the contracts in ``schemas/``.

What a new user needs to fill a register is in the specs already (columns, kinds,
bounds, allowed values, key, references): this module turns them into Russian
text, so the page cannot drift from what ``billing ingest`` checks. The example
rows form a small consistent town — ``tests/integration/test_new_user.py`` builds a workspace
from them and the templates of ``billing init`` alone, loads and closes it.

``python -m pipeline.docs`` rewrites ``docs/registers.md``; ``--check`` only
compares (exit 1 when the page is stale).
"""

from __future__ import annotations

import csv
import io
import sys
from importlib import resources
from pathlib import Path

from schemas.history import HISTORY
from schemas.registers import PAYMENTS, REGISTERS, Col, Register
from schemas.rules import RULE_TABLES

#: The separator of the templates and examples: what Excel in a Russian locale reads and
#: writes, and with it a decimal comma (48,73) needs no quotes.
SEPARATOR = ";"

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "registers.md"

INTROS: dict[str, str] = {
    "organizations": "Организации: управляющие (УК, ТСЖ), поставщики услуг (РСО), фонд капитального "
                     "ремонта, расчётный центр. Реквизиты печатаются в квитанции.",
    "buildings": "Многоквартирные дома. Площадь общего имущества нужна для КР на СОИ.",
    "premises": "Помещения домов: квартиры и нежилые помещения.",
    "accounts": "Лицевые счета: по счёту на плательщика помещения; при долевой собственности — по "
                "счёту на долю (`share`).",
    "building_services": "Какие услуги оказываются в доме и какой поставщик их получает, с датами.",
    "residents": "Зарегистрированные по месту жительства или пребывания: по ним считаются услуги по "
                 "нормативу и «на человека» (если никого нет — по числу собственников).",
    "absences": "Временное отсутствие гражданина (п.86–87 Правил 354): `from` и `to` — дни выезда и "
                "возвращения; засчитываются полные дни между ними, если их больше пяти.",
    "meters": "Приборы учёта: индивидуальные (ИПУ — заполнен `premise_id`) и общедомовые (ОДПУ — "
              "заполнен `building_id`); заполняется ровно одно из двух.",
    "readings": "Показания приборов учёта. Показания, снятые по 25-е число включительно (settings.toml "
                "`[readings] window_end_day`), относятся к этому месяцу, позже — к следующему.",
    "benefits": "Льготы граждан; категория — код льготы (например, `veteran_labour`).",
    "outages": "Перерывы в предоставлении услуг и ненадлежащее качество: сверх допустимой "
               "продолжительности (rules/quality_rules.csv) плата снижается.",
    "access_refusals": "Акты о недопуске к прибору учёта: при двух и более неразрешённых актах — "
                       "начисление по нормативу с повышающим коэффициентом.",
    "payments": "Простой CSV платёжного агента (банк, почта, личный кабинет): строка на платёж. "
                "Реестры Сбербанка и ВТБ (cp1251, итоговая строка `=…`) распознаются сами — см. "
                "[README](../README.md#платежи-и-ночной-импорт).",
}

#: What each allowed value means, by (table, column).
CHOICES: dict[tuple[str, str], dict[str, str]] = {
    ("organizations", "role"): {
        "management": "управляющая организация (УК, ТСЖ)",
        "supplier": "поставщик услуги (ресурсоснабжающая организация)",
        "capital_repair": "фонд капитального ремонта",
        "billing_centre": "расчётный центр (ЕИРЦ, РКЦ)",
    },
    ("premises", "kind"): {"residential": "жилое", "nonresidential": "нежилое"},
    ("accounts", "payer_kind"): {"person": "физическое лицо", "organization": "организация"},
    ("accounts", "delivery"): {"paper": "на бумаге", "email": "по e-mail и на бумаге",
                               "email_only": "только по e-mail (в пачки для печати не входит)"},
    ("residents", "kind"): {"permanent": "по месту жительства", "temporary": "по месту пребывания"},
    ("gis_meter_ids", "value_kind"): {"one_rate": "однотарифный: вода, тепло, газ",
                                      "electric": "электроэнергия, показание T1"},
    ("gis_nsi", "kind"): {"housing": "жилищная услуга (НСИ 50)",
                          "additional": "дополнительная услуга (НСИ 1)",
                          "municipal": "коммунальная услуга (НСИ 51)", "penalty": "пени (НСИ 329)",
                          "resource": "коммунальный ресурс (НСИ 2)"},
    ("services", "kind"): {
        "metered": "коммунальный ресурс: по прибору учёта, среднему или нормативу",
        "sewerage": "водоотведение: объём холодной и горячей воды",
        "area": "по площади помещения",
        "per_person": "на человека",
        "fixed": "фиксированная плата с помещения",
        "heating": "отопление",
        "common_property": "ресурс на содержание общего имущества (КР на СОИ)",
    },
    ("services", "penalty_scheme"): {
        "standard": "ЖК РФ ст.155 ч.14: 1/300, с 91-го дня просрочки 1/130",
        "capital_repair": "ЖК РФ ст.155 ч.14.1 (взносы на капремонт): 1/300",
    },
    ("penalty_schemes", "scheme"): {
        "standard": "ЖК РФ ст.155 ч.14",
        "capital_repair": "ЖК РФ ст.155 ч.14.1",
    },
    ("penalty_rate_caps", "kind"): {
        "fixed": "ставка вместо ключевой",
        "min": "меньшая из этой ставки и ключевой",
    },
    ("quality_rules", "excess_rule"): {
        "month_total": "часы сверх допустимых за месяц",
        "greater_of": "большее из превышений месячного и единовременного пределов",
    },
}

#: The example rows: one small town that loads without a reject and closes August 2026.
EXAMPLES: dict[str, list[dict[str, str]]] = {
    "organizations": [
        {"org_id": "uk1", "name": "ООО «УК Садовая»", "inn": "7700000009", "kpp": "770001001",
         "role": "management", "bank_name": "ПАО Сбербанк", "bik": "044525225",
         "account": "40702810200000000001", "corr_account": "30101810400000000225",
         "address": "г. Энск, ул. Садовая, д. 1", "phone": "+7 800 000-00-01"},
        {"org_id": "vodokanal", "name": "АО «Водоканал»", "inn": "7700000016", "kpp": "770001001",
         "role": "supplier", "bank_name": "ПАО Сбербанк", "bik": "044525225",
         "account": "40702810500000000002", "corr_account": "30101810400000000225",
         "address": "г. Энск, ул. Речная, д. 5", "phone": "+7 800 000-00-02"},
    ],
    "buildings": [
        {"building_id": "B001", "address": "г. Энск, ул. Садовая, д. 1", "manager_id": "uk1",
         "total_area": "365.00", "common_area": "60.00"},
    ],
    "premises": [
        {"premise_id": "P001", "building_id": "B001", "number": "1", "kind": "residential",
         "total_area": "50.00", "rooms": "2", "meter_possible": "true"},
    ],
    "accounts": [
        {"account_id": "1000000001", "premise_id": "P001", "payer_kind": "person",
         "payer_name": "Иванов Иван Иванович", "share": "1", "owners": "1", "opened_on": "2020-01-01",
         "closed_on": "", "email": "ivanov@example.ru"},
    ],
    "building_services": [
        {"building_id": "B001", "service_id": "maintenance", "supplier_id": "uk1", "from": "2020-01-01",
         "to": ""},
        {"building_id": "B001", "service_id": "cold_water", "supplier_id": "vodokanal",
         "from": "2020-01-01", "to": ""},
    ],
    "residents": [
        {"person_id": "R0001", "account_id": "1000000001", "full_name": "Иванов Иван Иванович",
         "birth_date": "1980-05-12", "kind": "permanent", "from": "2020-01-01", "to": ""},
    ],
    "absences": [{"person_id": "R0001", "from": "2026-08-03", "to": "2026-08-16"}],
    "meters": [
        {"meter_id": "M0001", "service_id": "cold_water", "premise_id": "P001", "building_id": "",
         "serial": "123456", "installed_on": "2026-06-20", "removed_on": "",
         "verified_until": "2032-06-20", "digits": "5", "initial_value": "10.5"},
    ],
    "readings": [
        {"meter_id": "M0001", "read_on": "2026-07-20", "value": "14.000", "source": "lk",
         "confirmed": "false"},
        {"meter_id": "M0001", "read_on": "2026-08-20", "value": "19.500", "source": "lk",
         "confirmed": "false"},
    ],
    "benefits": [{"person_id": "R0001", "category": "veteran_labour", "from": "2020-01-01", "to": ""}],
    "outages": [{"building_id": "B001", "service_id": "cold_water", "started_at": "2026-08-10T09:00",
                 "ended_at": "2026-08-10T21:00"}],
    "access_refusals": [{"premise_id": "P001", "service_id": "cold_water", "refused_on": "2026-05-15",
                         "resolved_on": "2026-06-01"}],
    "gis_ids": [{"account_id": "1000000001", "service_id": "", "els": "75da533315", "izhku": "",
                 "from": "2020-01-01", "account_guid": "6c1f0a2b-7d3e-4f5a-9b8c-1d2e3f4a5b61"},
                {"account_id": "1000000001", "service_id": "cold_water", "els": "75da533315",
                 "izhku": "75da533315-01", "from": "2020-01-01"}],
    "gis_meter_ids": [{"meter_id": "M0001", "device_guid": "5b0e3c1a-6f2d-4a8e-9c71-2d4f6a8b0c11",
                       "value_kind": "one_rate", "from": "2020-01-01"}],
    "gis_nsi": [
        {"kind": "housing", "service_id": "maintenance", "supplier_id": "", "code": "1",
         "guid": "0b7a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c21", "name": "Содержание жилого помещения",
         "from": "2020-01-01"},
        {"kind": "municipal", "service_id": "cold_water", "supplier_id": "vodokanal", "code": "1",
         "guid": "0b7a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c22", "name": "Холодное водоснабжение",
         "from": "2020-01-01"},
        {"kind": "penalty", "service_id": "", "supplier_id": "", "code": "1",
         "guid": "0b7a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c23", "name": "Пени", "from": "2020-01-01"},
        {"kind": "resource", "service_id": "cold_water", "supplier_id": "", "code": "1",
         "guid": "0b7a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c24", "name": "Холодная вода", "from": "2020-01-01"}],
    "instalments": [{"account_id": "1000000001", "supplier_id": "vodokanal", "service_id": "cold_water",
                     "period": "2026-08", "amount": "350.00", "interest_rate": "9.5", "interest": "2.77"}],
    "repayment_agreements": [{"account_id": "1000000001", "supplier_id": "vodokanal", "from": "2026-11-01",
                              "to": "2027-04-30", "broken_on": ""}],
    "payments": [{"payment_id": "sber-0001", "paid_on": "2026-09-05", "account_id": "1000000001",
                  "amount": "1500.00", "period": "2026-08", "agent": "sber", "refund_of": ""}],
}

_KINDS = {
    "id": "код (текст, ведущие нули сохраняются)",
    "text": "текст",
    "int": "целое число",
    "date": "дата ГГГГ-ММ-ДД (или ДД.ММ.ГГГГ)",
    "datetime": "дата и время ГГГГ-ММ-ДДTЧЧ:ММ (или «ГГГГ-ММ-ДД ЧЧ:ММ», можно с секундами)",
    "bool": "да/нет: `true`/`false` (или `1`/`0`, `да`/`нет`)",
    "enum": "одно из значений",
}


def template_csv(register: Register) -> str:
    """A register's header-only CSV (``billing init`` writes one per register).

    >>> template_csv(REGISTERS["absences"])
    'person_id;from;to\\n'
    """
    return _csv_lines([[c.name for c in register.columns]])


def templates() -> dict[str, str]:
    """File name → header-only CSV for every register."""
    return {f"{name}.csv": template_csv(spec) for name, spec in REGISTERS.items()}


#: One row of each history register (``billing migrate``), in our columns.
HISTORY_EXAMPLES: dict[str, list[dict[str, str]]] = {
    "history_charges": [
        {"account_id": "1000000001", "period": "2026-05", "service_id": "cold_water",
         "supplier_id": "vodokanal", "method": "meter", "volume": "5.300000", "tariff": "52.28",
         "amount": "277.08"},
        {"account_id": "1000000001", "period": "2026-05", "service_id": "penalty",
         "supplier_id": "vodokanal", "amount": "3.41"},
    ],
    "history_recalculations": [
        {"account_id": "1000000001", "period": "2026-05", "origin_period": "2026-04",
         "service_id": "cold_water", "supplier_id": "vodokanal", "amount": "-52.28",
         "reason": "перерасчёт по показаниям"},
    ],
    "history_payments": [
        {"payment_id": "П-000266", "agent": "sber", "account_id": "1000000001", "paid_on": "2026-05-28",
         "period": "2026-05", "amount": "200.00", "service_id": "cold_water", "supplier_id": "vodokanal",
         "charge_period": "2026-05"},
    ],
    "history_balances": [
        {"account_id": "1000000001", "period": "2026-05", "service_id": "cold_water",
         "supplier_id": "vodokanal", "opening": "0.00", "closing": "77.08"},
    ],
    "history_debts": [
        {"account_id": "1000000001", "service_id": "cold_water", "supplier_id": "vodokanal",
         "charge_period": "2026-05", "amount": "77.08", "due_date": "2026-06-15"},
    ],
    "history_penalties": [
        {"account_id": "1000000001", "supplier_id": "vodokanal", "charge_period": "2025-11",
         "accrued": "41.17"},
    ],
    "history_readings": [{"meter_id": "M0001", "read_on": "2026-05-20", "value": "124.300"}],
    "history_meter_volumes": [
        {"meter_id": "M0001", "period": "2026-05", "method": "meter", "volume": "5.300000"},
    ],
}


def example_csv(register: Register, rows: list[dict[str, str]]) -> str:
    """The header and the example rows of a register, as a file would hold them."""
    return _csv_lines([[c.name for c in register.columns],
                       *[[row.get(c.name, "") for c in register.columns] for row in rows]])


def _csv_lines(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=SEPARATOR, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _number(value: float) -> str:
    """A bound as a Russian reader writes it (thousands apart).

    >>> _number(1_000_000), _number(0.5)
    ('1 000 000', '0.5')
    """
    if value == int(value):
        return f"{int(value):,}".replace(",", " ")
    return f"{value:g}"


def _bounds(col: Col) -> str:
    low = (f"больше {_number(col.gt)}" if col.gt is not None
           else f"не меньше {_number(col.ge)}" if col.ge is not None else "")
    high = f"не больше {_number(col.le)}" if col.le is not None else ""
    if col.ge is not None and col.le is not None and col.gt is None:
        return f"от {_number(col.ge)} до {_number(col.le)}"
    return ", ".join(part for part in (low, high) if part)


def _kind(col: Col) -> str:
    if col.kind == "decimal":
        return f"число, до {col.scale} знаков после запятой" if col.scale else "целое число"
    return _KINDS[col.kind]


def _open_ended(spec: Register) -> set[str]:
    return {end for _, end in spec.date_order}


#: What the requisite checks of ``pipeline.ingest.requisites`` ask, as the page says it.
CHECK_TEXT = {
    "inn": "10 цифр (организация) или 12 (предприниматель), контрольные числа проверяются",
    "kpp": "9 знаков: 4 цифры, 2 цифры или заглавные латинские буквы, 3 цифры",
    "bik": "9 цифр, начинается с 0",
    "account": "20 цифр, контрольный ключ сверяется с БИК (алгоритм Банка России)",
    "corr_account": "20 цифр, начинается с 301, контрольный ключ сверяется с БИК",
    "email": "один адрес вида имя@домен.ru; обязателен, если `delivery` — `email` или `email_only`",
    "els": "10 латинских букв и цифр (присваивает ГИС ЖКХ)",
    "izhku": "ЕЛС, дефис и 2 цифры услуги, например 75da533315-01",
    "period": "ГГГГ-ММ, например 2026-09",
    "ogrn": "13 цифр (ОГРНИП — 15), контрольная цифра проверяется",
}


def _need(col: Col, spec: Register) -> str:
    if col.required:
        return "да" if not col.nullable else "да (значение может быть пустым)"
    if col.default is not None:
        return f"нет; пусто — `{col.default}`"
    if col.nullable and col.kind in ("date", "datetime") and col.name in _open_ended(spec):
        return "нет; пусто — бессрочно"
    return "нет"


def _ref_text(table: str, column: str) -> str:
    if table in REGISTERS:
        return f"код из реестра «{REGISTERS[table].title}» (`{table}.{column}`)"
    return f"код из таблицы правил «{RULE_TABLES[table].title}» (`rules/{table}.csv`, `{column}`)"


def _allowed(col: Col, spec: Register) -> str:
    parts = []
    if col.choices:
        meanings = CHOICES.get((spec.name, col.name), {})
        parts.append("; ".join(f"`{v}` — {meanings[v]}" if v in meanings else f"`{v}`"
                               for v in col.choices))
    bounds = _bounds(col)
    if bounds:
        parts.append(bounds)
    if col.check:
        parts.append(CHECK_TEXT[col.check])
    for ref in spec.refs:
        if ref.column == col.name:
            parts.append(_ref_text(ref.target, ref.target_column))
    if spec.name in RULE_TABLES and spec.name != "services" and col.name == "service_id":
        parts.append("код из `rules/services.csv` (иначе — предупреждение, строка не используется)")
    return "; ".join(parts)


def _section(spec: Register, file_fact: str, example: str) -> list[str]:
    lines = [f"### `{spec.name}` — {spec.title}", ""]
    intro = INTROS.get(spec.name)
    if intro:
        lines += [intro, ""]
    facts = [file_fact]
    if spec.key:
        facts.append("Ключ (не повторяется): " + ", ".join(f"`{k}`" for k in spec.key) + ".")
    for start, end in spec.date_order:
        facts.append(f"`{end}` не раньше `{start}`.")
    if spec.one_of:
        facts.append("Заполняется ровно одно из: " + ", ".join(f"`{c}`" for c in spec.one_of) + ".")
    lines += [" ".join(facts), "",
              "| столбец | название | тип | обязателен | допустимые значения |",
              "|---|---|---|---|---|"]
    for col in spec.columns:
        lines.append(f"| `{col.name}` | {col.title} | {_kind(col)} | {_need(col, spec)} | "
                     f"{_allowed(col, spec)} |")
    lines += ["", "Пример:", "", "```csv", example.rstrip("\n"), "```", ""]
    return lines


def _default_rule_rows(name: str) -> list[dict[str, str]]:
    """The first row of a default rule table (its example)."""
    entry = resources.files("rules") / "defaults" / f"{name}.csv"
    if not entry.is_file():
        return []
    reader = csv.DictReader(io.StringIO(entry.read_text(encoding="utf-8-sig")))
    return [next(reader)]


def registers_markdown() -> str:
    """The text of ``docs/registers.md``."""
    lines = [
        "# Реестры, платёжный файл и таблицы правил",
        "",
        "<!-- Написано из schemas/ командой `python -m pipeline.docs`; не правьте вручную. -->",
        "",
        "Что и в каком виде кладётся в рабочее пространство. `billing init` создаёт в `registers/` "
        "по пустому шаблону на реестр (только строка заголовка); допишите под заголовком строки и "
        "выполните `billing ingest`. Готовый маленький городок со всеми реестрами — "
        "[data/sample/](../data/sample/README.md).",
        "",
        "- Файл называется по реестру: `buildings.csv`, `buildings.xlsx` или `buildings.parquet` (один "
        "файл на реестр).",
        "- CSV: кодировка UTF-8 или Windows-1251, разделитель `;`, `,` или табуляция (определяется по "
        "строке заголовка). Первая строка — имена столбцов, как в таблицах ниже; порядок столбцов "
        "любой, лишние столбцы не мешают. XLSX: первый лист, первая строка — заголовок.",
        "- Дробная часть — через точку или запятую: `48.73` или `48,73`; в файле с разделителем `,` "
        "число с запятой берётся в кавычки: `\"48,73\"`.",
        "- Деньги — в рублях, не больше 2 знаков после запятой (лишние знаки не округляются, строка "
        "отклоняется). Площади — в м².",
        "- «Обязателен: да» — столбец должен быть в заголовке, а ячейка заполнена; «нет» — ячейку "
        "можно оставить пустой, а столбец не включать вовсе (тогда действует значение по умолчанию).",
        "- Даты `from`/`to` включительно; пустая дата окончания — бессрочно.",
        "- Строка с ошибкой не загружается и попадает в отчёт `rejects/ingest-….csv`: файл, строка, "
        "столбец, значение, причина. Ошибка в таблице правил отменяет загрузку целиком.",
        "",
        "## Реестры (`registers/`)",
        "",
    ]
    for name, spec in REGISTERS.items():
        need = ("обязательный, нужна хотя бы одна строка" if spec.required_file
                else "может быть пустым (только строка заголовка)")
        lines += _section(spec, f"Файл `registers/{name}.csv` — {need}.",
                          example_csv(spec, EXAMPLES[name]))
    lines += [
        "## Платёжный файл (`billing payments import ФАЙЛ`)",
        "",
        "Повторная загрузка того же файла или того же платежа (`agent`, `payment_id`) ничего не "
        "меняет; отрицательная сумма — возврат, в `refund_of` — код исходного платежа. Платёж на "
        "неизвестный или закрытый счёт попадает в невыясненные (`billing payments suspense`).",
        "",
    ]
    lines += _section(PAYMENTS, "Файл — любое имя с расширением `.csv`.",
                      example_csv(PAYMENTS, EXAMPLES["payments"]))
    lines += [
        "Кассовый чек платежа (54-ФЗ), если агент передаёт его в том же файле, — в необязательных "
        "столбцах `fn` (номер ФН, 16 цифр), `fd` (номер ФД), `fp` (фискальный признак ФП) и "
        "`fiscal_at` (дата и время чека: `ГГГГ-ММ-ДД ЧЧ:ММ` или `ДД.ММ.ГГГГ ЧЧ:ММ`); годятся и "
        "заголовки «ФН», «ФД», «ФП» (или «ФПД»), «Дата и время чека». Сумма чека — сумма платежа. "
        "Нужны все четыре столбца; строка без чека оставляет их пустыми. Чек с ошибкой попадает в "
        "отчёт `rejects/` (файл, строка, столбец, причина), а платёж загружается; отмена файла "
        "(`billing payments revert`) убирает и его чеки. Чеки отдельным файлом агента или ОФД — "
        "`billing payments fiscal ФАЙЛ` ([docs/receipts.md](receipts.md#fiscal-receipts)).",
        "",
        "```csv",
        "payment_id;paid_on;account_id;amount;period;agent;fn;fd;fp;fiscal_at",
        "kassa-0001;2026-09-05;1000000001;1500.00;2026-08;kassa;9287440300123456;101;1234567890;"
        "2026-09-05 14:30",
        "```",
        "",
    ]
    lines += [
        "## Таблицы правил (`rules/`)",
        "",
        "`billing init` копирует их из `rules/defaults/`; изменение закона — новая строка с датой "
        "`from`. Что значат правила и какие толкования выбраны — [docs/rules.md](rules.md). Каждая "
        "`billing ingest` проверяет все таблицы: ошибка отменяет загрузку, услуга, которой нет в "
        "`services.csv`, — предупреждение (её строки не используются). Пример — первая строка "
        "таблицы по умолчанию.",
        "",
    ]
    for name, spec in RULE_TABLES.items():
        need = " — обязательная" if spec.required_file else ""
        lines += _section(spec, f"Таблица `rules/{name}.csv`{need}.",
                          example_csv(spec, _default_rule_rows(name)))
    lines += [
        "## История прежней системы (`migration/`, `billing migrate load`)",
        "",
        "Выгрузка программы, из которой переходит расчётный центр: файл на таблицу в каталоге "
        "`migration/` рабочего пространства и `mapping.toml`, который переводит её столбцы и коды в "
        "наши (как устроен переход, сверка и параллельный расчёт — [docs/migration.md](migration.md); "
        "пример выгрузки — [data/migration-demo/](../data/migration-demo/README.md)). Ниже — наши "
        "столбцы. Месяцы — `ГГГГ-ММ` (или `ММ.ГГГГ`); долг — с плюсом, аванс — с минусом. Строка с "
        "ошибкой попадает в отчёт `rejects/migration-….csv` под именем столбца из выгрузки.",
        "",
    ]
    for name, spec in HISTORY.items():
        need = "обязательный" if spec.required_file else "может отсутствовать"
        lines += _section(spec, f"Файл `migration/{name}.csv` — {need}.",
                          example_csv(spec, HISTORY_EXAMPLES[name]))
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rewrite ``docs/registers.md`` (``--check``: only say whether it is up to date)."""
    args = sys.argv[1:] if argv is None else argv
    text = registers_markdown()
    current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.is_file() else ""
    if "--check" in args:
        if current != text:
            print(f"{DOC_PATH} устарел: выполните python -m pipeline.docs", file=sys.stderr)
            return 1
        return 0
    if current != text:
        DOC_PATH.write_text(text, encoding="utf-8")
    print(DOC_PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
