"""``billing demo`` and ``billing bench``: a synthetic city billed month after month.

Both build a city with :mod:`pipeline.synth`, ingest it and close consecutive
months; between closes the payers pay what their last receipt asked (a
deterministic share of them partly or not at all), through an agent file in
``inbox/`` imported like a night's payments. ``demo`` goes through the Prefect
flow and renders receipts; after the first close it also adds a few late news
about the closed month to the registers (a resident registered retroactively,
an outage and an absence reported late), so that the second close recalculates
it, and at the end it names one account per charge method and mechanism for
``billing explain``. ``bench`` calls the stages directly, skips PDFs and
reports time and peak memory per step.
"""

from __future__ import annotations

import csv
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.dates import Period, month_periods
from pipeline.money import rubles_text
from pipeline.progress import count_text, seconds_text
from pipeline.sealed import read_internal, read_table
from pipeline.synth import DEMO_START
from pipeline.workspace import BillingError, Workspace, audit, init_workspace

DEMO_MARKER = ".billing-demo"

Say = Callable[[str], None]


def fresh_demo_home(ws: Workspace) -> Workspace:
    """A new workspace; an earlier demo in the same place is replaced, anything else refused."""
    home = ws.home
    if home.exists() and any(home.iterdir()):
        if not (home / DEMO_MARKER).is_file():
            raise BillingError(
                f"Каталог {home} не пуст и не является демо-пространством: "
                "укажите другой --home."
            )
        shutil.rmtree(home)
    ws = init_workspace(home)
    (home / DEMO_MARKER).write_text("synthetic city; safe to delete\n")
    return ws


def _pay_last_bill(ws: Workspace, bill: Period, seed: int) -> Path | None:
    """Write the payments made during the month after ``bill`` into ``inbox/``.

    Sberbank's share arrives as its nightly register (cp1251, footer), the other
    agents' as a plain CSV with its marker ``NAME.done`` (the file is whole, so the
    nightly import need not wait for it to settle), as they would in production.
    """
    from pipeline.ingest.bank_formats import write_sber_register
    from pipeline.ingest.payments import done_marker
    from pipeline.ingest.registers import load_store
    from pipeline.synth import generate_payments, write_payments_csv

    due = read_internal(ws.period_dir(str(bill)), "balances", ["account_id", "closing"]).group_by(
        "account_id").agg(pl.col("closing_kop").sum().alias("to_pay"))
    payments = generate_payments(due, bill, seed=seed)
    if not payments.height:
        return None
    paid_in = bill.shift(1)
    sber = payments.filter(pl.col("agent") == "sber")
    if sber.height:
        accounts = load_store(ws)["accounts"].select("account_id", pl.col("payer_name"))
        register = sber.join(accounts, on="account_id", how="left").select(
            pl.col("payment_id").str.replace_all(r"\D", ""), pl.col("paid_on").str.to_date(), "account_id",
            (pl.col("amount").cast(pl.Decimal(18, 2)) * 100).cast(pl.Int64).alias("amount_kop"),
            "period", "payer_name", pl.lit("г. Энск").alias("address"),
        )
        name = f"17066_7707083893_40702810000000000001_{paid_in.month:03d}.txt"
        write_sber_register(register, ws.inbox / name)
    path = ws.inbox / f"payments-{paid_in}.csv"
    write_payments_csv(payments.filter(pl.col("agent") != "sber"), path)
    done_marker(path).write_bytes(b"")
    return path


def _pay_and_import(ws: Workspace, bill: Period) -> int:
    """Pay ``bill`` and import the night's files; the number of payments accepted."""
    from pipeline.ingest.payments import import_inbox

    _pay_last_bill(ws, bill, 2026)
    infos = import_inbox(ws, today=bill.shift(1).last)  # the city's clock: the night after the paying month
    return sum(n for info in infos if isinstance(n := info.get("accepted", 0), int))


def _append_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """Append rows to a register CSV, in the order of its header."""
    with open(path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    with open(path, "a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n", restval="")
        writer.writerows(rows)


def _dmy(d: date) -> str:
    return f"{d:%d.%m.%Y}"


def late_news(ws: Workspace, closed: Period, seed: int) -> list[str]:
    """Add to the registers three late news about the sealed month ``closed``; describe them.

    A resident registered from the 10th of ``closed`` (on an account charged by the
    norm), an interruption of hot water on the 12th–14th reported after the close, and
    an absence from the 3rd to the 20th reported late (on another account). The next
    close recalculates ``closed`` for them. Chosen by ``seed``; returns Russian lines
    for the demo's output.
    """
    import numpy as np

    rng = np.random.default_rng(seed + 1)

    def read(name: str) -> pl.DataFrame:
        return pl.read_csv(ws.registers / f"{name}.csv", infer_schema=False)

    def pick(values: pl.Series) -> str | None:
        values = values.unique().sort()
        return str(values[int(rng.integers(values.len()))]) if values.len() else None

    charges = read_table(ws.period_dir(str(closed)), "charges")
    whole_month = charges.filter(pl.col("days") == pl.col("days_in_month"))
    residents, premises, buildings = read("residents"), read("premises"), read("buildings")
    first, last = closed.first.isoformat(), closed.last.isoformat()
    said = [f"Сведения задним числом о закрытом периоде {closed} (реестры дополнены после "
            f"закрытия; перерасчёт войдёт в {closed.shift(1)}):"]

    # A resident registered retroactively on an account charged by the norm.
    norm = whole_month.filter((pl.col("method") == "norm") & (pl.col("persons_basis") == "registered"))
    account = pick(norm["account_id"]) or pick(
        whole_month.filter(pl.col("method") == "per_person")["account_id"])
    if account is not None:
        number = (residents.select(pl.col("person_id").str.slice(1).cast(pl.Int64).max()).item() or 0) + 1
        person = f"R{number:07d}"
        moved_in = closed.first.replace(day=10)
        _append_rows(ws.registers / "residents.csv", [{
            "person_id": person, "account_id": account, "full_name": "Новосёлов Артём Игоревич",
            "birth_date": "1995-03-14", "kind": "permanent", "from": moved_in.isoformat(), "to": "",
        }])
        said.append(f"  • лицевой счёт {account}: жилец {person} зарегистрирован с {_dmy(moved_in)} — "
                    "сведения о регистрации пришли после закрытия месяца; плата по нормативу и за ТКО "
                    "пересчитывается по числу зарегистрированных")

    # An interruption of hot water reported after the close.
    with_hot = read("building_services").filter(pl.col("service_id") == "hot_water")["building_id"]
    building = pick(with_hot)
    if building is not None:
        start, end = f"{closed.first.replace(day=12)}T09:15", f"{closed.first.replace(day=14)}T18:15"
        _append_rows(ws.registers / "outages.csv", [{
            "building_id": building, "service_id": "hot_water", "started_at": start, "ended_at": end}])
        address = buildings.filter(pl.col("building_id") == building)["address"][0]
        said.append(f"  • дом {building} ({address}): перерыв горячего водоснабжения "
                    f"{_dmy(closed.first.replace(day=12))} 09:15 – {_dmy(closed.first.replace(day=14))} "
                    "18:15 (57 ч при допустимых 8 ч в месяц) — акт составлен после закрытия месяца; "
                    "плата за ГВС снижается всем счетам дома (Прил. 1 Правил 354)")

    # An absence reported late, on another account: full month registered, not away already.
    absent = read("absences")["person_id"]
    per_person = whole_month.filter(pl.col("method") == "per_person").select("account_id")
    candidates = residents.filter(
        (pl.col("kind") == "permanent") & (pl.col("from") <= first)
        & (pl.col("to").is_null() | (pl.col("to") > last))
        & ~pl.col("person_id").is_in(absent.implode()) & (pl.col("account_id") != (account or ""))
    ).join(per_person, on="account_id", how="semi")
    # Preferably where no meter can be fitted: then water by the norm is reduced too (п.86).
    impossible = read("accounts").join(premises.filter(pl.col("meter_possible") == "false"),
                                       on="premise_id", how="semi").select("account_id")
    preferred = candidates.join(impossible, on="account_id", how="semi")
    away = pick((preferred if preferred.height else candidates)["person_id"])
    if away is not None:
        away_from, away_to = closed.first.replace(day=3), closed.first.replace(day=20)
        _append_rows(ws.registers / "absences.csv", [{
            "person_id": away, "from": away_from.isoformat(), "to": away_to.isoformat()}])
        holder = residents.filter(pl.col("person_id") == away)["account_id"][0]
        said.append(f"  • лицевой счёт {holder}: жилец {away} отсутствовал {_dmy(away_from)} – "
                    f"{_dmy(away_to)} (16 полных суток) — заявление о временном отсутствии подано после "
                    "закрытия месяца; плата за ТКО (и по нормативу, где прибор установить нельзя) "
                    "уменьшается (п.86–87, 148(44) Правил 354)")
    return said


#: What each charge method shows, for the list of examples at the end of the demo.
METHOD_LABELS: dict[str, str] = {
    "meter": "По показаниям прибора учёта (формула 1)",
    "average": "По среднемесячному объёму (п.59)",
    "norm": "По нормативу: прибор учёта установить нельзя (формула 4)",
    "norm_increased": "По нормативу с повышающим коэффициентом (формула 4(1))",
    "area": "По площади: содержание жилья, взнос на капремонт",
    "heating": "Отопление по нормативу: в доме нет ОДПУ (формула 2)",
    "heating_meter": "Отопление по ОДПУ за месяц (формула 3)",
    "heating_average": "Отопление по среднему ОДПУ за прошлый год (формула 3(1))",
    "per_person": "На человека: обращение с ТКО",
    "fixed": "Фиксированная плата: домофон",
    "common_property": "Коммунальные ресурсы на содержание общего имущества (КР на СОИ)",
}


def explain_examples(ws: Workspace, periods: list[Period]) -> list[tuple[str, str, str]]:
    """One (label, account, period) per charge method and mechanism in the sealed ``periods``.

    Found in the sealed tables (charges, meter_volumes, reading_issues,
    recalculations, penalties) and the register snapshot: the first account, in
    period and account order, that shows each of them.
    """
    from pipeline.ingest.registers import load_store
    from rules import read_rule_table, threshold

    regs = load_store(ws)
    accounts = regs["accounts"].select("account_id", "premise_id")
    meters = regs["meters"].filter(pl.col("premise_id").is_not_null()).select(
        "meter_id", "premise_id", "service_id", "verified_until")
    refusals = regs.get("access_refusals")
    thresholds = read_rule_table(ws.rules, "legal_thresholds")
    found: list[pl.DataFrame] = []

    def add(label: str, rows: pl.DataFrame, period: Period) -> None:
        found.append(rows.select(pl.lit(label).alias("label"), pl.lit(str(period)).alias("period"),
                                 "account_id"))

    for period in periods:
        folder = ws.period_dir(str(period))
        if not (folder / "manifest.json").is_file():
            continue
        charges = read_table(folder, "charges")
        charged = charges.select("account_id").unique()
        for method, label in METHOD_LABELS.items():
            if method not in ("average", "norm_increased"):
                add(label, charges.filter(pl.col("method") == method), period)
        add("Водоотведение: объём ХВС + ГВС", charges.filter(pl.col("service_id") == "sewerage"), period)
        add("Никто не зарегистрирован: норматив на собственников (п.56(2))",
            charges.filter(pl.col("persons_basis") == "owners"), period)
        add("Временное отсутствие более 5 суток (п.86–87)", charges.filter(pl.col("absent_days") > 0),
            period)
        add("Долевая собственность: начисление по доле", charges.filter(pl.col("share") < 1), period)
        sold = regs["accounts"].filter(
            pl.col("opened_on").is_between(period.first.replace(day=2), period.last)
            | pl.col("closed_on").is_between(period.first, period.last, closed="left"))
        add("Смена собственника в течение месяца: начисление за дни владения",
            charges.filter(pl.col("method") == "area").join(sold, on="account_id", how="semi"), period)

        # Why norm × K: refused access, a meter failed long ago, or no meter where one fits.
        increased = charges.filter((pl.col("method") == "norm_increased")
                                   & (pl.col("service_id") != "sewerage")).join(accounts, on="account_id")
        if refusals is not None and refusals.height:
            least = threshold(thresholds, "access_refusals_min", period.first)
            refused = refusals.filter(pl.col("refused_on") < pl.lit(period.first)).group_by(
                "premise_id", "service_id").len().filter(pl.col("len") >= least)
            add("Недопуск к прибору учёта дважды: норматив × K (п.85(3))",
                increased.join(refused, on=["premise_id", "service_id"], how="semi"), period)
        expired = meters.filter(pl.col("verified_until") < pl.lit(period.first))
        add("Истёк срок поверки более 3 месяцев назад: норматив × K (п.60)",
            increased.join(expired, on=["premise_id", "service_id"], how="semi"), period)
        add("Прибор учёта не установлен, хотя возможно: норматив × K (формула 4(1))",
            increased.join(meters, on=["premise_id", "service_id"], how="anti"), period)

        volumes = read_table(folder, "meter_volumes").join(
            meters.select("meter_id", "verified_until"), on="meter_id", how="left")
        issues = read_table(folder, "reading_issues")

        def by_premise(rows: pl.DataFrame, charged: pl.DataFrame = charged) -> pl.DataFrame:
            return rows.select("premise_id").join(accounts, on="premise_id").join(
                charged, on="account_id", how="semi")

        average = volumes.filter(pl.col("method") == "average")
        failed = pl.col("verified_until") < pl.lit(period.last)
        add("Истёк срок поверки: по среднему до 3 месяцев (п.59 «а»)", by_premise(average.filter(failed)),
            period)
        quiet = average.filter(~failed).join(issues, on="meter_id", how="anti")
        add("Показания не переданы: по среднему (п.59 «б»)", by_premise(quiet), period)
        metered = volumes.filter(pl.col("method") == "meter")
        rolled = metered.filter(pl.col("curr_value") < pl.col("prev_value"))
        add("Переход счётчика через ноль", by_premise(rolled), period)
        add("Показания сняты после 25-го числа: учтены в следующем месяце",
            by_premise(metered.filter(pl.col("curr_read_on") < pl.lit(period.first))), period)
        for needle, label in (("больше среднего", "Расход в разы больше обычного: показания не приняты "
                                                  "до подтверждения"),
                              ("меньше предыдущих", "Показания меньше предыдущих: не приняты")):
            flagged = issues.filter(pl.col("reason").str.contains(needle)).join(
                meters.select("meter_id", "premise_id"), on="meter_id")
            add(label, by_premise(flagged), period)

        recalcs = read_table(folder, "recalculations")
        for reason in recalcs["reason"].unique().sort():
            add(f"Перерасчёт: {reason}", recalcs.filter(pl.col("reason") == reason), period)
        penalties = read_table(folder, "penalties")
        add("Пени за просрочку оплаты (ЖК РФ ст.155 ч.14)", penalties.filter(pl.col("amount") > 0), period)

    if not found:
        return []
    table = pl.concat(found).with_row_index("order").sort("period", "account_id", "order")
    first = table.group_by("label", maintain_order=True).agg(pl.col("period").first(),
                                                              pl.col("account_id").first(),
                                                              pl.col("order").min())
    return [(r["label"], r["account_id"], r["period"]) for r in first.sort("order").iter_rows(named=True)]


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_demo(ws: Workspace, accounts: int, months: int, start: str = DEMO_START, receipts: bool = True,
             seed: int = 2026, say: Say = print, heating: str = "even") -> None:
    """Build the synthetic city, close ``months`` months from ``start`` and say where everything is.

    ``heating`` is the region's heating payment (``settings.toml`` [heating] payment):
    ``even`` shows formula 3(1) and the January correction, ``in_season`` formula 3.
    """
    from pipeline.app import close_summary_lines, run_close
    from pipeline.ingest.payments import import_inbox
    from pipeline.ingest.registers import ingest
    from pipeline.synth import generate_city

    first = Period.parse(start)
    started = time.perf_counter()
    ws = fresh_demo_home(ws)
    settings = ws.home / "settings.toml"
    text = settings.read_text(encoding="utf-8")
    if heating != "even":
        text = text.replace('payment = "even"', f'payment = "{heating}"', 1)
    # The city's ЕИРЦ collects for every supplier as their paying agent: one QR code a receipt.
    text = text.replace('pay_to = "payees"\nagent = ""', 'pay_to = "agent"\nagent = "eirc"', 1)
    # After each seal: the charge registers for the bank and the post, the post's delivery list.
    text = text.replace("exports = []", 'exports = ["banks", "post"]', 1)
    text += ('\n[[banks.agents]]\ncode = "sber"\nlayout = "sber"\norg_id = "eirc"\n'
             '\n[[banks.agents]]\ncode = "post"\nlayout = "csv"\n')
    settings.write_text(text, encoding="utf-8")
    say(f"Демо: синтетический город в {ws.home}")
    city = generate_city(ws.home, accounts=accounts, start=first, months=months, seed=seed)
    say(f"  {city}")
    audit(ws, "demo", inputs={"accounts": accounts, "months": months, "start": start, "seed": seed},
          outputs={"city": str(city)})
    result = ingest(ws)
    audit(ws, "ingest", outputs={"version": result.version, "loaded": result.loaded,
                                 "rejected": result.rejected})
    say(f"  реестры загружены: {sum(result.loaded.values())} строк, отклонено "
        f"{result.total_rejected}" + (f" (отчёт: {result.rejects_path})" if result.rejects_path else ""))
    _migrate_a_year(ws, first, seed, say)
    periods = month_periods(first, months)
    for period in periods:
        if period == first.shift(1):
            say("")
            for line in late_news(ws, first, seed):
                say(line)
            again = ingest(ws)
            audit(ws, "ingest", outputs={"version": again.version, "loaded": again.loaded,
                                         "rejected": again.rejected})
            say(f"  реестры загружены повторно: отклонено {again.total_rejected}")
        if period != first:
            path = _pay_last_bill(ws, period.shift(-1), seed)
            if path is not None:
                for info in import_inbox(ws, today=period.last):  # the city's clock, not the machine's
                    audit(ws, "payments import", outputs=info)
                    say(f"  платежи {info['file']}: принято {info.get('accepted', 0)}"
                        + (f", невыясненных {info['suspense']}" if info.get("suspense") else ""))
        # Receipts of the last month only: the earlier months' are printed on demand from their
        # sealed tables (billing receipts print), which keeps the demo near its 3 minutes.
        summary = run_close(ws, str(period), receipts=receipts and period == periods[-1])
        for line in close_summary_lines(summary, dry_run=False):
            say(line)
    last = periods[-1]
    say("")
    say(f"Готово за {time.perf_counter() - started:.0f} с. Где что лежит:")
    say(f"  закрытые периоды: {ws.periods}/ГГГГ-ММ (таблицы Parquet, manifest.json)")
    if receipts:
        say(f"  квитанции: {ws.period_dir(str(last))}/receipts/ (PDF на каждый счёт, "
            "пачки для печати в receipts/batches/), счета организаций — в invoices/")
        if len(periods) > 1:
            say(f"  квитанции прошлых месяцев — по закрытым данным: billing receipts print --period "
                f"{periods[0]} --home {ws.home}")
    say(f"  выгрузки для банка и почты: {ws.period_dir(str(last))}/exports/ (реестры начислений, "
        "реестр доставки; ГИС ЖКХ и соцзащита — billing export gis|welfare)")
    say(f"  отклонённые строки: {ws.rejects}")
    say(f"  журнал операций: {ws.audit}/log.jsonl")
    say("Попробуйте:")
    say(f"  billing sql --home {ws.home} \"select period, method, count(*), sum(amount) "
        "from charges group by all order by all\"")
    examples = explain_examples(ws, periods)
    if examples:
        say("Способы расчёта и механизмы на примерах (по одному лицевому счёту):")
        for label, account, when in examples:
            say(f"  {label}: billing explain {account} --period {when} --home {ws.home}")
        if not any(label == METHOD_LABELS["heating_meter"] for label, _, _ in examples):
            say(f"  {METHOD_LABELS['heating_meter']}: при оплате отопления в отопительный сезон "
                "(settings.toml, [heating] payment = \"in_season\"; "
                "в демо — billing demo --heating in_season)")


#: Months of the old system's history the demo city moves in with: a whole year before the
#: first demo month, so the January corrections settle a whole year (docs/migration.md).
DEMO_HISTORY_MONTHS = 12


def _migrate_a_year(ws: Workspace, first: Period, seed: int, say: Say) -> None:
    """The city moves in from its previous system: a year of history, reconciled, its planted
    differences accepted by the operator (as a centre does once it has explained them)."""
    from pipeline.migrate.reconcile import accept
    from pipeline.migrate.run import migrate_load
    from pipeline.migrate.synth import write_old_export

    planted = write_old_export(ws.home, months=DEMO_HISTORY_MONTHS, last=first.shift(-1), seed=seed)
    moved = migrate_load(ws)
    say(f"  история прежней системы перенесена: {moved.months[0]} — {moved.months[-1]} "
        f"({moved.rows['history_charges']} строк начислений, отклонено {moved.rejected}); "
        f"сверка: расхождений {moved.differences} на {rubles_text(moved.difference_kop)}")
    for item in planted:
        say(f"    заложено в выгрузку: {item.description} (лицевой счёт {item.account_id})")
    if moved.differences:
        accept(ws, "демо: расхождения выгрузки прежней системы заложены намеренно")
        say(f"    расхождения приняты (billing migrate accept); отчёт: {moved.reports[0]}")


def run_bench(accounts: int, months: int, ws: Workspace | None, say: Say,
              partition_accounts: int | None = None,
              prepare: Callable[[Workspace], None] | None = None) -> dict[str, Any]:
    """Generate, ingest and close ``months`` periods without PDFs; measure every stage.

    The close runs as ``billing close`` does, in partitions of ``partition_accounts``
    accounts (default ``[close] partition_accounts``), one after another in this process;
    its row gives the partitions' compute, write and finish seconds under ``parts``.

    Each stage gets wall and CPU seconds, the peak RSS so far and rows a second of its
    main output (:class:`pipeline.bench.StageClock`). After the first month's close the
    bare join of the same month's charge lines (:func:`pipeline.bench.bare_charge_join`)
    runs on the same loaded registers; ``ratio`` is the first close (load + compute +
    seal) over it. ``prepare(ws)`` runs after the city is written, before the ingest (more
    registers for a bench of its own, e.g. the exports').
    """
    from pipeline.bench import StageClock, bare_charge_join, peak_rss_mb
    from pipeline.close import close_in_parts, load_inputs
    from pipeline.ingest.registers import ingest
    from pipeline.synth import generate_city

    tmp = None
    if ws is None:
        tmp = Path(tempfile.mkdtemp(prefix="billing-bench-"))
        ws = Workspace(tmp / "home")
    ws = fresh_demo_home(ws)
    first = Period(2026, 8)
    stages: list[dict[str, Any]] = []
    report: dict[str, Any] = {"accounts": accounts, "months": months, "stages": stages}

    clocks: list[StageClock] = []

    def step(name: str, fn: Callable[[], Any], rows: Callable[[Any], int] | int) -> Any:
        clock = StageClock(name)
        out = fn()
        row = clock.stop(rows if isinstance(rows, int) else rows(out))
        stages.append(row)
        clocks.append(clock)
        say(f"{name}: {seconds_text(row['seconds'])} с, ЦП {seconds_text(row['cpu_seconds'])} с, "
            f"строк {count_text(row['rows'])}, пик памяти {count_text(round(row['peak_rss_mb']))} МБ")
        return out

    try:
        step("generate_city", partial(generate_city, ws.home, accounts=accounts, start=first,
                                      months=months), lambda city: int(city.accounts))
        if prepare is not None:
            prepare(ws)
        step("ingest", partial(ingest, ws), lambda result: sum(result.loaded.values()))
        for period in month_periods(first, months):
            if period != first:
                step(f"payments {period}", partial(_pay_and_import, ws, period.shift(-1)), int)
            inputs = step(f"load {period}", partial(load_inputs, ws, period),
                          lambda inputs: sum(frame.height for frame in inputs.regs.values()))
            size = partition_accounts or ws.typed_settings().close.partition_accounts
            closed = step(f"close {period}", partial(close_in_parts, ws, inputs, size),
                          lambda summary: summary["charge_lines"])
            stages[-1].update(partitions=closed["partitions"], parts=closed["stage_seconds"])
            report.setdefault("charge_lines", []).append(closed["charge_lines"])
            if period == first:
                report["partitions"] = closed["partitions"]
                report["close_seconds"] = round(sum(s["seconds"] for s in stages[-2:]), 2)
                regs = inputs.regs
                bare = step(f"bare_join {period}", partial(
                    bare_charge_join, regs["accounts"], regs["premises"], regs["building_services"],
                    regs["residents"], inputs.rules.services, inputs.rules.tariffs, period.first,
                    period.last), lambda lines: lines.height)
                del bare
                # finer than the stage's 0.01 s: a small city's join takes milliseconds
                report["bare_join_seconds"] = max(round(clocks[-1].seconds, 4), 0.0001)
                report["bare_join_rows"] = stages[-1]["rows"]
            del inputs, closed
        report["peak_rss_mb"] = peak_rss_mb()
        report["peak_memory_gb"] = round(report["peak_rss_mb"] / 1024, 2)
        report["ratio"] = bench_ratio(report["close_seconds"], report["bare_join_seconds"])
        close_steps = [s for s in stages if s["step"].split()[0] in ("load", "close")]
        report["close_seconds_per_month"] = round(sum(s["seconds"] for s in close_steps) / months, 2)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def bench_ratio(close_seconds: float, bare_join_seconds: float) -> float:
    """The close's seconds over the bare join's, rounded to 0.1."""
    return round(close_seconds / bare_join_seconds, 1)


def bench_summary(report: dict[str, Any]) -> list[str]:
    """The readable Russian summary of :func:`run_bench`'s report."""
    lines = [f"Замер: {count_text(report['accounts'])} лицевых счетов, месяцев {report['months']}"]
    lines.append(f"  {'этап':<22} {'с':>8} {'ЦП, с':>8} {'пик, МБ':>9} {'строк':>12} {'строк/с':>12}")
    for s in report["stages"]:
        lines.append(f"  {s['step']:<22} {seconds_text(s['seconds']):>8} {seconds_text(s['cpu_seconds']):>8} "
                     f"{count_text(round(s['peak_rss_mb'])):>9} {count_text(s['rows']):>12} "
                     f"{count_text(s['rows_per_second']):>12}")
    parts = report.get("partitions", 1)
    within = f", частей {parts}" if parts > 1 else ""
    lines.append(f"Закрытие первого месяца (загрузка + расчёт + запечатывание{within}): "
                 f"{seconds_text(report['close_seconds'])} с")
    bare = f"{report['bare_join_seconds']:.3f}".replace(".", ",")
    lines.append(f"Голое соединение Polars тех же строк начислений "
                 f"({count_text(report['bare_join_rows'])} строк): {bare} с")
    lines.append(f"Отношение закрытия к голому соединению: {str(report['ratio']).replace('.', ',')}")
    lines.append(f"Пик памяти процесса: {str(report['peak_memory_gb']).replace('.', ',')} ГБ")
    return lines


def bare_csv_to_parquet(files: list[Path], out: Path) -> int:
    """The yardstick of a migration: every row of ``files`` read as text by Polars and written
    as Parquet (streaming, so that 40 GB of CSV fit), nothing checked; the rows moved."""
    import pyarrow.parquet as pq

    from pipeline.ingest.readers import sniff_separator

    rows = 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as fh:
            separator = sniff_separator(fh.readline())
        target = out / f"{path.stem}.parquet"
        pl.scan_csv(path, separator=separator, infer_schema=False).sink_parquet(target)
        rows += pq.ParquetFile(target).metadata.num_rows
    return rows


def run_migration_bench(accounts: int, months: int, ws: Workspace | None, say: Say) -> dict[str, Any]:
    """``billing migrate load`` of ``months`` months of a synthetic old system for ``accounts``
    accounts (:func:`pipeline.migrate.benchexport.write_bench_export`), measured step by step
    (read, seal, save, reconcile) beside the bare move of the same files
    (:func:`bare_csv_to_parquet`); ``ratio`` is the load over the bare move."""
    from pipeline.bench import StageClock, peak_rss_mb
    from pipeline.ingest.registers import ingest
    from pipeline.migrate.benchexport import write_bench_export
    from pipeline.migrate.run import migrate_load
    from pipeline.synth import generate_city

    tmp = None
    if ws is None:
        tmp = Path(tempfile.mkdtemp(prefix="billing-migbench-"))
        ws = Workspace(tmp / "home")
    ws = fresh_demo_home(ws)
    first = Period.parse(DEMO_START)
    stages: list[dict[str, Any]] = []
    report: dict[str, Any] = {"accounts": accounts, "history_months": months, "stages": stages}

    def step(name: str, fn: Callable[[], Any], rows: Callable[[Any], int]) -> tuple[Any, StageClock]:
        clock = StageClock(name)
        out = fn()
        row = clock.stop(rows(out))
        stages.append(row)
        say(f"{name}: {seconds_text(row['seconds'])} с, ЦП {seconds_text(row['cpu_seconds'])} с, "
            f"строк {count_text(row['rows'])}, пик памяти {count_text(round(row['peak_rss_mb']))} МБ")
        return out, clock

    try:
        step("generate_city", partial(generate_city, ws.home, accounts=accounts, start=first, months=1),
             lambda city: int(city.accounts))
        step("ingest", partial(ingest, ws), lambda result: sum(result.loaded.values()))
        written, _ = step("write_export", partial(write_bench_export, ws.home, months=months,
                                                  last=first.shift(-1)), lambda rows: sum(rows.values()))
        files = sorted((ws.home / "migration").glob("*.csv"))
        report["export_rows"] = written
        report["export_bytes"] = sum(p.stat().st_size for p in files)
        bare_dir = Path(tempfile.mkdtemp(prefix="billing-bare-", dir=ws.home.parent))
        try:
            _, bare = step("bare_csv_to_parquet", partial(bare_csv_to_parquet, files, bare_dir), int)
        finally:
            shutil.rmtree(bare_dir, ignore_errors=True)
        moved, load = step("migrate_load", partial(migrate_load, ws),
                           lambda result: sum(result.rows.values()))
        report["load_seconds"] = round(load.seconds, 2)
        report["load_steps"] = moved.seconds
        # the CPU of the load's own process and of the processes it read and rebuilt months in
        report["load_cpu_seconds"] = round(stages[-1]["cpu_seconds"] + moved.worker_cpu_seconds, 2)
        report["bare_seconds"] = round(bare.seconds, 2)
        report["ratio"] = round(load.seconds / bare.seconds, 1) if bare.seconds else None
        report["differences"] = moved.differences
        report["rejected"] = moved.rejected
        report["periods"] = len(moved.periods)
        report["peak_rss_mb"] = peak_rss_mb()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def run_payment_bench(accounts: int, payments: int, say: Say) -> dict[str, Any]:
    """A night of ``payments`` bank payments against ``accounts`` accounts.

    Closes one month (no PDFs), writes the night as a Sberbank register, then times
    the import (parse, footer check, exactly-once, suspense) and the allocation of
    the next close.
    """
    import numpy as np

    from pipeline.allocate.ledger import apply_period
    from pipeline.close import compute, load_inputs, seal
    from pipeline.ids import coded
    from pipeline.ingest.bank_formats import write_sber_register
    from pipeline.ingest.payments import import_payment_file
    from pipeline.ingest.registers import ingest
    from pipeline.synth import generate_city

    tmp = Path(tempfile.mkdtemp(prefix="billing-paybench-"))
    ws = fresh_demo_home(Workspace(tmp / "home"))
    report: dict[str, Any] = {"accounts": accounts, "payments": payments}
    try:
        first = Period(2026, 8)
        generate_city(ws.home, accounts=accounts, start=first, months=2)
        ingest(ws)
        inputs = load_inputs(ws, first)
        seal(ws, compute(inputs), inputs)
        due = read_internal(ws.period_dir(str(first)), "balances", ["account_id", "closing"]).group_by(
            "account_id").agg(pl.col("closing_kop").sum().alias("to_pay"))
        rng = np.random.default_rng(7)
        picked = due.filter(pl.col("to_pay") > 0).sample(n=min(payments, due.height), seed=7)
        night = picked.select(
            pl.int_range(pl.len()).cast(pl.String).str.zfill(10).alias("payment_id"),
            pl.lit(first.shift(1).first).alias("paid_on"), "account_id",
            (pl.col("to_pay") * pl.Series(rng.uniform(0.3, 1.2, picked.height))).cast(pl.Int64)
            .clip(1, None).alias("amount_kop"),
            pl.lit(None, pl.String).alias("period"), pl.lit("Плательщик").alias("payer_name"),
            pl.lit("г. Энск").alias("address"),
        )
        path = ws.inbox / "17066_7707083893_40702810000000000001_001.txt"
        write_sber_register(night, path)
        t = time.perf_counter()
        result = import_payment_file(ws, path)
        report["import_seconds"] = round(time.perf_counter() - t, 2)
        report["imported"] = result.accepted
        inputs = load_inputs(ws, first.shift(1))
        out = compute(inputs)  # charges of the month, needed as debts
        assert inputs.codes is not None
        lines = inputs.codes.encode(out.lines)  # the stages' coded identifiers, as in a close
        t = time.perf_counter()
        with coded():
            apply_period(inputs.open_items, lines, inputs.payments, str(first.shift(1)))
        report["allocation_seconds"] = round(time.perf_counter() - t, 2)
        report["peak_rss_mb"] = _peak_mb()
        say(f"  импорт {result.accepted} платежей: {report['import_seconds']} с; "
            f"распределение: {report['allocation_seconds']} с")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report
