"""``billing explain``: every charge of an account with its method, formula and inputs.

For a sealed period the lines come from its ``charges`` table (one file or its parts,
read through :mod:`pipeline.sealed`); for an open period they are computed on the spot
(nothing is written). Each number is traced to where it came from: the rule row (file,
row, effective date, legal source) and the meter readings.
"""

from __future__ import annotations

import json
from decimal import Decimal

import polars as pl

from pipeline.dates import Period
from pipeline.methods import method_name
from pipeline.money import format_rub, rubles_text
from pipeline.progress import plural
from pipeline.sealed import read_periods, read_table
from pipeline.settings import Readings, load_section
from pipeline.workspace import BillingError, Workspace
from rules import read_rule_table, threshold


def _num(value: Decimal | int | None, places: int = 3) -> str:
    if value is None:
        return "—"
    d = Decimal(value)
    text = f"{d:.{places}f}".rstrip("0").rstrip(".") if "." in f"{d:.{places}f}" else f"{d}"
    return text.replace(".", ",")


def _rub(value: Decimal) -> str:
    return rubles_text(int(Decimal(value) * 100))


def _charges(ws: Workspace, period: str) -> tuple[dict[str, pl.DataFrame], bool]:
    names = ("charges", "meter_volumes", "recalculations", "penalties", "reading_issues")
    folder = ws.period_dir(period)
    from pipeline.verify import check_sealed

    check_sealed(ws, [q for q in ws.sealed_periods() if q <= period])  # the periods read below
    settled = read_periods([ws.period_dir(q) for q in ws.sealed_periods() if q <= period], "settlements")
    made = [settled] if settled is not None else []
    if (folder / "manifest.json").is_file():
        tables = {n: read_table(folder, n) for n in names}
        sealed = True
    else:
        from pipeline.close import compute, load_inputs, to_outputs

        out = to_outputs(compute(load_inputs(ws, Period.parse(period))))
        tables, sealed = {n: out[n] for n in names}, False
        made.append(out["settlements"])
    tables["settlements"] = pl.concat(made, how="vertical_relaxed") if made else pl.DataFrame()
    return tables, sealed


def explain_account(ws: Workspace, account_id: str, period: str) -> str:
    Period.parse(period)
    tables, sealed = _charges(ws, period)
    charges, volumes = tables["charges"], tables["meter_volumes"]
    mine = charges.filter(pl.col("account_id") == account_id)
    if not mine.height:
        raise BillingError(f"У лицевого счёта {account_id} нет начислений за {period}.")
    from pipeline.ingest.registers import load_store

    regs = load_store(ws)
    services = {r["service_id"]: r for r in read_rule_table(ws.rules, "services").iter_rows(named=True)}
    rules = {name: {r["source_row"]: r for r in read_rule_table(ws.rules, name).iter_rows(named=True)}
             for name in ("tariffs", "norms", "increasing_coefficients", "electricity_norms")}
    orgs = {r["org_id"]: r["name"] for r in regs["organizations"].iter_rows(named=True)}
    acc = regs["accounts"].filter(pl.col("account_id") == account_id)
    premise = acc["premise_id"][0] if acc.height else None
    meters = regs["meters"].filter(pl.col("premise_id") == premise)
    meter_lines = volumes.join(meters.select("meter_id", "verified_until", "digits"), on="meter_id")
    unread = _charged_without_reading(ws, meters, period)
    readings = load_section(ws.settings_path, Readings)
    window_end_day, settle_norm = readings.window_end_day, readings.settle_norm_months
    why_k = _increased_reasons(regs, premise, Period.parse(period),
                               read_rule_table(ws.rules, "legal_thresholds"))

    out = [f"Лицевой счёт {account_id}, период {period}"
           + ("" if sealed else " (период не закрыт: предварительный расчёт)")]
    if acc.height:
        out.append(f"Плательщик: {acc['payer_name'][0]}; помещение {premise}, "
                   f"доля {_num(acc['share'][0], 4)}")
    migrated = sealed and bool(json.loads((ws.period_dir(period) / "manifest.json").read_text(
        encoding="utf-8")).get("migrated"))
    if migrated:
        out.append("Период перенесён из прежней системы (billing migrate): начисления — её, а не наш расчёт.")
    total = Decimal(0)
    for ln in mine.iter_rows(named=True):
        svc = services.get(ln["service_id"], {"name": ln["service_id"], "unit": ""})
        unit = svc["unit"]
        out.append("")
        out.append(f"{svc['name']} — {orgs.get(ln['supplier_id'], ln['supplier_id'])}; "
                   f"способ: {method_name(ln['method'])}; дни {ln['line_from']:%d.%m}–{ln['line_to']:%d.%m} "
                   f"({ln['days']} из {ln['days_in_month']})")
        if migrated:  # moved in from the old system: its figures, not a calculation of ours
            given = [f"объём {_num(ln['volume'], 6)} {unit}" if ln["volume"] is not None else "",
                     f"тариф {format_rub(int(ln['tariff'] * 100))} ₽" if ln["tariff"] is not None else ""]
            out.append("  перенесено из прежней системы: " + ", ".join(
                [g for g in given if g] + [f"сумма {_rub(ln['amount'])}"]))
            total += ln["amount"]
            continue
        out.extend("  " + s for s in _volume_text(ln, unit, meter_lines, unread, window_end_day,
                                                  settle_norm))
        if ln["method"] == "norm_increased":
            why = why_k.get(ln["service_id"], "прибор учёта не установлен, хотя установка возможна "
                                              "(п.42, формула 4(1))")
            out.append(f"  повышающий коэффициент: {why}")
        coef = ln["coefficient"]
        coef_text = f" × {_num(coef)} (повышающий коэффициент)" if coef and coef != 1 else ""
        out.append(f"  сумма = {_num(ln['volume'], 6)} {unit} × {format_rub(int(ln['tariff'] * 100))} ₽"
                   f"{coef_text} = {_rub(ln['amount'])} (округление до копейки один раз)")
        out.extend("  " + s for s in _sources(ln, rules))
        total += ln["amount"]
    out.append("")
    out.append(f"Итого начислено: {_rub(total)}")
    issues = tables["reading_issues"].join(meters.select("meter_id"), on="meter_id") \
        if tables["reading_issues"].height else tables["reading_issues"]
    for r in issues.iter_rows(named=True):
        out.append(f"Показания не приняты: прибор {r['meter_id']}, {r['read_on']}, {_num(r['value'])} — "
                   f"{r['reason']}")
    recalcs = tables["recalculations"].filter(pl.col("account_id") == account_id)
    for r in recalcs.iter_rows(named=True):
        name = services.get(r["service_id"], {"name": r["service_id"]})["name"]
        hours = f"; превышение {r['excess_minutes'] / 60:g} ч" if r.get("excess_minutes") else ""
        out.append(f"Перерасчёт за {r['origin_period']}, {name}: {_rub(r['amount'])} — {r['reason']}{hours}")
        if r.get("kind") == "settlement":
            out.extend("  " + s for s in _settlement_text(tables["settlements"], r, services))
    penalties = tables["penalties"].filter((pl.col("account_id") == account_id) & (pl.col("amount") != 0))
    for r in penalties.iter_rows(named=True):
        if r["charge_period"] is None:  # the old system's penalty line of a migrated month
            out.append(f"Пени прежней системы, {orgs.get(r['supplier_id'], r['supplier_id'])}: "
                       f"{_rub(r['amount'])}")
            continue
        article = "ч.14.1" if r["scheme"] == "capital_repair" else "ч.14"
        out.append(f"Пени (ЖК РФ ст.155 {article}) по начислениям за {r['charge_period']}, "
                   f"{orgs.get(r['supplier_id'], r['supplier_id'])}: {_rub(r['amount'])} "
                   f"(всего на конец периода {_rub(r['cumulative'])}, долг {_rub(r['debt'])}, "
                   f"срок оплаты {r['due_date']:%d.%m.%Y})")
    return "\n".join(out)


def _charged_without_reading(ws: Workspace, meters: pl.DataFrame, period: str) -> pl.DataFrame:
    """The premise's meter volumes of the sealed months before ``period`` a reading settles (п.61).

    period, meter_id, method, volume and ``index`` (year × 12 + month − 1), in period order.
    """
    from pipeline.calc.readings import period_index

    settle_norm = load_section(ws.settings_path, Readings).settle_norm_months
    methods = ["meter", "average", "norm"] if settle_norm else ["meter", "average"]
    schema = pl.Schema({"period": pl.String(), "meter_id": pl.String(), "method": pl.String(),
                        "volume": pl.Decimal(18, 6)})
    rows = read_periods([ws.period_dir(q) for q in ws.sealed_periods() if q < period], "meter_volumes",
                        list(schema))
    if rows is None or not meters.height:
        return pl.DataFrame(schema={**schema, "index": pl.Int32()})
    return rows.filter(pl.col("meter_id").is_in(meters["meter_id"].implode())
                       & pl.col("method").is_in(methods)).with_columns(
        period_index(pl.col("period").str.slice(0, 4).cast(pl.Int32),
                     pl.col("period").str.slice(5, 2).cast(pl.Int32)).alias("index")).sort("period")


def _settled_text(m: dict, delta: Decimal, unread: pl.DataFrame, window_end_day: int, unit: str
                  ) -> tuple[str, list[str]]:
    """What a reading settled (п.61): the subtraction, and the months charged without it, by method."""
    span = unread.filter(pl.col("meter_id") == m["meter_id"])
    if (d := m["prev_read_on"]) is not None:  # the months after the one the previous reading counts for
        span = span.filter(pl.col("index") > d.year * 12 + d.month - 1 + int(d.day > window_end_day))
    if not span.height:
        return "", []
    by_method: dict[str, Decimal] = {}
    for r in span.iter_rows(named=True):
        by_method[r["method"]] = by_method.get(r["method"], Decimal(0)) + r["volume"]
    charged = sum(by_method.values(), Decimal(0))
    parts = " и ".join(f"{method_name(k)} {_num(v, 6)}" for k, v in by_method.items())
    months = ", ".join(f"{r['period']} {method_name(r['method'])} {_num(r['volume'], 6)}"
                       for r in span.iter_rows(named=True))
    detail = f"без показаний начислено: {months}"
    excess = charged - delta
    if excess > 0:
        # Taken back from the most recent months first, each down to zero (readings.settled_volumes).
        credited, rest = [], excess
        for r in reversed(list(span.iter_rows(named=True))):
            if rest <= 0:
                break
            credited.append(r["period"])
            rest -= min(rest, r["volume"])
        detail += (f"; начислено больше, чем потреблено, на {_num(excess, 6)} {unit} — возвращено "
                   f"перерасчётом за {', '.join(sorted(credited))} (п.61)")
    return f" = {_num(delta, 6)} − уже начислено {parts} (п.61)", [detail]


def _volume_text(ln: dict, unit: str, meter_lines: pl.DataFrame,
                 unread: pl.DataFrame | None = None, window_end_day: int = 25,
                 settle_norm: bool = True) -> list[str]:
    method = ln["method"]
    part = f" × {ln['days']}/{ln['days_in_month']} дн." if ln["days"] != ln["days_in_month"] else ""
    if method in ("norm", "norm_increased") and ln["norm"] is not None:
        basis = "собственников (никто не зарегистрирован, п.56(2))" if ln["persons_basis"] == "owners" \
            else "зарегистрированных"
        if ln.get("absent_days"):
            basis += f" (за вычетом {ln['absent_days']} чел.-дн. временного отсутствия, п.86–87)"
        # A working meter left unread after its 3 averaged months: the norm (п.60).
        later = "; объём вычитается, когда придут показания (п.61)" if settle_norm else ""
        unread_meter = [f"  прибор {m['meter_id']}: показаний нет больше трёх месяцев — начислено по "
                        f"нормативу (п.60){later}"
                        for m in meter_lines.filter((pl.col("service_id") == ln["service_id"])
                                                    & (pl.col("method") == "norm")).iter_rows(named=True)
                        if method == "norm"]
        return [f"объём = {ln['person_days']} чел.-дн. {basis} / {ln['days_in_month']} дн. × "
                f"норматив {_num(ln['norm'], 6)} {unit} = {_num(ln['volume'], 6)} {unit}",
                *_matrix_text(ln, unit), *unread_meter]
    if method == "per_person":
        away = (f" (за вычетом {ln['absent_days']} чел.-дн. отсутствия, п.148(44))"
                if ln.get("absent_days") else "")
        return [f"объём = {ln['person_days']} чел.-дн.{away} / {ln['days_in_month']} дн. = "
                f"{_num(ln['volume'], 6)} чел."]
    if method == "area":
        return [f"объём = площадь {_num(ln['area'], 2)} м² × доля {_num(ln['share'], 4)}{part} = "
                f"{_num(ln['volume'], 6)} {unit}"]
    if method == "heating":
        return [f"объём = площадь {_num(ln['area'], 2)} м² × доля {_num(ln['share'], 4)} × "
                f"норматив {_num(ln['norm'], 6)} Гкал/м²{part} = {_num(ln['volume'], 6)} {unit}"]
    if method in ("heating_meter", "heating_average"):
        source, note = (("ОДПУ дома за месяц", "формула 3, по фактическому объёму")
                        if method == "heating_meter" else
                        ("среднемесячный объём ОДПУ дома за прошлый год",
                         "формула 3(1), оплата равномерно; корректировка по итогам года"))
        return [f"объём = {source} {_num(ln['meter_volume'], 6)} {unit} × помещение "
                f"{_num(ln['area'], 2)} м² × доля {_num(ln['share'], 4)} / площадь дома "
                f"{_num(ln['building_area'], 2)} м²{part} = {_num(ln['volume'], 6)} {unit} ({note})"]
    if method == "common_property":
        return [f"объём = норматив {_num(ln['norm'], 6)} {unit}/м² × общее имущество "
                f"{_num(ln['common_area'], 2)} м² × помещение {_num(ln['area'], 2)} м² × доля "
                f"{_num(ln['share'], 4)} / площадь дома {_num(ln['building_area'], 2)} м²{part} = "
                f"{_num(ln['volume'], 6)} {unit} (КР на СОИ, ЖК 156 ч.9.2)"]
    if method == "fixed":
        return [f"плата за месяц{part}"]
    if ln["service_id"] == "sewerage":
        return [f"объём = холодная + горячая вода {_num(ln['meter_volume'], 6)} {unit}{part} = "
                f"{_num(ln['volume'], 6)} {unit}"]
    lines = [f"объём = {_num(ln['meter_volume'], 6)} {unit} по прибору × доля "
             f"{_num(ln['share'], 4)}{part} = {_num(ln['volume'], 6)} {unit}"]
    for m in meter_lines.filter(pl.col("service_id") == ln["service_id"]).iter_rows(named=True):
        if m["method"] == "meter":
            delta = m["curr_value"] - m["prev_value"]
            text = (f"  прибор {m['meter_id']}: {_num(m['curr_value'])} ({m['curr_read_on']}) − "
                    f"{_num(m['prev_value'])} ({m['prev_read_on']})")
            if delta < 0:  # the meter passed its maximum
                delta += Decimal(10) ** int(m["digits"])
                text += f" + 10^{m['digits']} (переход через ноль)"
            settled, detail = (_settled_text(m, delta, unread, window_end_day, unit)
                               if unread is not None else ("", []))
            lines.append(f"{text}{settled} = {_num(m['volume'], 6)}")
            lines.extend("    " + d for d in detail)
        elif m["method"] == "norm":
            lines.append(f"  прибор {m['meter_id']}: показаний нет больше трёх месяцев — начислено по "
                         f"нормативу {_num(m['volume'], 6)}; вычитается, когда придут показания (п.60, п.61)")
        elif m["verified_until"] is not None and m["curr_read_on"] is None and m["prev_read_on"] is None:
            lines.append(f"  прибор {m['meter_id']}: срок поверки истёк {m['verified_until']} — "
                         f"среднемесячный объём по показаниям до этой даты {_num(m['volume'], 6)} (п.59 «а»)")
        else:
            lines.append(f"  прибор {m['meter_id']}: показаний за месяц нет или они не приняты — "
                         f"среднемесячный объём {_num(m['volume'], 6)} (п.59 «б», п.59(1))")
    return lines


STOVE_TEXT = {"gas": "газовая плита", "electric": "электроплита"}


def _matrix_text(ln: dict, unit: str) -> list[str]:
    """The cell of the rooms × persons norm matrix a line used (or why it used none)."""
    persons = ln.get("norm_persons")
    if persons is None:
        return []
    if ln.get("norm_rooms") is None:
        return ["в реестре помещений не указано число комнат — норматив на человека из norms.csv "
                "вместо норматива по числу комнат и проживающих"]
    rooms = "4 и более" if ln["norm_rooms"] >= 4 else str(ln["norm_rooms"])
    people = "5 и более" if persons >= 5 else str(persons)
    stove = STOVE_TEXT.get(ln.get("norm_stove") or "", ln.get("norm_stove") or "")
    return [f"норматив {rooms} комн., {people} чел., {stove}: {_num(ln['norm'], 6)} {unit} на человека "
            "в месяц (проживающих — в среднем за дни строки по всем счетам помещения)"]


def _increased_reasons(regs: dict[str, pl.DataFrame], premise: str | None, period: Period,
                       thresholds: pl.DataFrame) -> dict[str, str]:
    """Why a service of the premise is charged by the norm × K, by service.

    The numbers in the texts are the ``thresholds`` (``legal_thresholds.csv``) in force
    on the period's first day.
    """
    out: dict[str, str] = {}
    if premise is None:
        return out
    from pipeline.calc.charges import access_refused
    from pipeline.calc.readings import failed_meters

    meters = regs["meters"].filter(pl.col("premise_id") == premise)
    failed = failed_meters(meters, period)
    if failed.height:
        months = plural(threshold(thresholds, "average_failed_max_periods", period.first),
                        "месяц", "месяца", "месяцев")
        for r in failed.iter_rows(named=True):
            out[r["service_id"]] = (f"срок поверки прибора {r['meter_id']} истёк {r['verified_until']}, "
                                    f"срок начисления по среднему — {months} — прошёл (п.60)")
    refused = access_refused(regs.get("access_refusals"), period, thresholds)
    if refused.height:
        acts = plural(threshold(thresholds, "access_refusals_min", period.first), "акта", "актов", "актов")
        for r in refused.filter(pl.col("premise_id") == premise).iter_rows(named=True):
            out[r["service_id"]] = f"не менее {acts} о недопуске к прибору учёта (п.85(3), п.60)"
    return out


def _settlement_text(settlements: pl.DataFrame, r: dict, services: dict) -> list[str]:
    """How a КР на СОИ settlement part was found: the year's volumes, the share and the schedule."""
    if not settlements.height:
        return []
    rows = settlements.filter((pl.col("account_id") == r["account_id"])
                              & (pl.col("service_id") == r["service_id"])
                              & (pl.col("year") == r["settles_year"]))
    if not rows.height:
        return []
    st = rows.row(0, named=True)
    unit = services.get(st["service_id"], {"unit": ""})["unit"]
    return [
        f"за месяцы {st['months']}: ОДПУ дома {_num(st['building_volume'], 6)} − помещения "
        f"{_num(st['premises_volume'], 6)} − начислено на СОИ по нормативу {_num(st['charged_volume'], 6)} = "
        f"{_num(st['difference'], 6)} {unit}",
        f"доля = {_num(st['difference'], 6)} {unit} × помещение {_num(st['area'], 2)} м² × доля "
        f"{_num(st['share'], 4)} / площадь дома {_num(st['building_area'], 2)} м² × тариф на 31.12."
        f"{st['year']} {format_rub(int(st['tariff'] * 100))} ₽ = {_rub(st['amount'])}; "
        f"равными частями: {st['parts']}, с {st['first_period']}",
    ]


def _sources(ln: dict, rules: dict[str, dict[int, dict]]) -> list[str]:
    out = []
    norms = ln.get("norm_table") or "norms"
    for key, table, label in (("tariff_row", "tariffs", "тариф"), ("norm_row", norms, "норматив"),
                              ("coef_row", "increasing_coefficients", "коэффициент")):
        row = ln.get(key)
        if row is None:
            continue
        rule = rules[table].get(row)
        if rule is None:
            out.append(f"{label}: {table}.csv, строка {row} (строка изменена после расчёта)")
            continue
        out.append(f"{label}: {table}.csv, строка {row}, действует с {rule['from']}: "
                   f"{rule.get('source') or 'основание не указано'}")
    return out
