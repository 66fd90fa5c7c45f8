"""``billing``: the command line, the thinnest layer over the stages and flows.

Heavy modules (Prefect, pandera, WeasyPrint) are imported inside the commands
that need them, so ``billing --help`` stays fast. Exit codes: 0 success,
1 business error (a Russian message, no traceback), 2 bad usage.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.workspace import BillingError, Workspace

app = typer.Typer(
    help="Биллинг ЖКХ: реестры, начисления, платежи, квитанции.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
payments_app = typer.Typer(help="Платежи банков и почты.", no_args_is_help=True)
app.add_typer(payments_app, name="payments")


def default_home() -> Path:
    return Path(os.environ.get("BILLING_HOME") or "./billing-home")


HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Рабочее пространство (по умолчанию BILLING_HOME или ./billing-home)."),
]


#: The workspace of the command being run, for auditing its failure (see :func:`main`).
_CURRENT: dict[str, Workspace] = {}


def _ws(home: Path | None) -> Workspace:
    ws = Workspace((home or default_home()).resolve())
    _CURRENT["ws"] = ws
    return ws


@app.callback()
def _owner_only() -> None:
    """Files a command creates are the owner's only (0600/0700): registers and receipts hold
    names, birth dates and debts."""
    os.umask(0o077)


def _say(text: str) -> None:
    typer.echo(text)


def _rub(kop: int) -> str:
    from pipeline.money import rubles_text

    return rubles_text(kop)


def _audit(ws: Workspace, command: str, **details: Any) -> None:
    from pipeline.workspace import audit

    if ws.audit.is_dir():
        audit(ws, command, **details)


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Каталог нового рабочего пространства.")]) -> None:
    """Создать пустое рабочее пространство с правилами по умолчанию."""
    from pipeline.workspace import init_workspace

    ws = init_workspace(directory.resolve())
    _audit(ws, "init", outputs=[str(ws.home)])
    _say(f"Рабочее пространство создано: {ws.home}")
    _say(f"  правила: {ws.rules}\n  реестры кладите в: {ws.registers}\n  платежи — в: {ws.inbox}")


@app.command()
def ingest(
    home: HomeOpt = None,
    accept_removals: Annotated[bool, typer.Option(
        "--accept-removals", help="Разрешить исчезновение многих лицевых счетов, помещений или "
        "проживающих прошлой загрузки (settings.toml, раздел ingest, max_removed_share).")] = False,
    drop: Annotated[list[str] | None, typer.Option(
        "--drop", metavar="РЕЕСТР", help="Реестр прошлой загрузки, файл которого удалён из registers/ "
        "намеренно (можно повторять).")] = None,
) -> None:
    """Проверить реестры registers/ и загрузить их в хранилище."""
    from pipeline.ingest.registers import ingest as run_ingest

    ws = _ws(home).require()
    result = run_ingest(ws, accept_removals=accept_removals, drop=drop or [])
    _audit(ws, "ingest", inputs={"accept_removals": accept_removals, "drop": drop or []},
           outputs={"version": result.version, "loaded": result.loaded,
                    "rejected": result.rejected, "kept": result.kept,
                    "rejects": str(result.rejects_path or "")})
    if result.unchanged:
        _say(f"Реестры не изменились с последней загрузки ({result.version}): ничего не сделано.")
        return
    _say(f"Реестры загружены ({result.version}):")
    for name, count in result.loaded.items():
        _say(f"  {name:<18} принято строк: {count}")
    if result.total_rejected:
        _say(f"Отклонено строк: {result.total_rejected}; отчёт: {result.rejects_path}")
    else:
        _say("Отклонённых строк нет.")
    if result.kept:
        _say("Оставлены прежние версии записей, чьи строки отклонены: "
             + ", ".join(f"{name} — {count}" for name, count in result.kept.items()))


@app.command("close")
def close_cmd(
    period: Annotated[str, typer.Option("--period", help="Период ГГГГ-ММ.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Рассчитать без закрытия периода.")] = False,
    no_receipts: Annotated[
        bool, typer.Option("--no-receipts", help="Не формировать PDF (для замеров).")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Закрыть период: начисления, платежи, сальдо, квитанции."""
    from pipeline.dates import Period

    try:
        Period.parse(period)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--period") from None
    ws = _ws(home).require()
    summary = run_close(ws, period, dry_run=dry_run, receipts=not no_receipts)
    _print_close(summary, dry_run)


def run_close(ws: Workspace, period: str, dry_run: bool = False, receipts: bool = True) -> dict:
    """Run the ``monthly_close`` flow (also used by ``demo``); audit the outcome."""
    from flows import configure_prefect, run_flow
    from pipeline.close import check_can_close
    from pipeline.dates import Period

    check_can_close(ws, Period.parse(period))
    configure_prefect(ws.home)
    from flows.monthly_close import monthly_close

    started = time.perf_counter()
    summary = run_flow(monthly_close, period=period, home=str(ws.home), dry_run=dry_run,
                       receipts=receipts)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    _audit(ws, "close", period=period, dry_run=dry_run, outputs=summary)
    return summary


def _print_close(s: dict, dry_run: bool) -> None:
    head = "Пробный расчёт (период не закрыт)" if dry_run else "Период закрыт"
    _say(f"{head}: {s['period']} за {s['seconds']} с")
    _say(f"  лицевых счетов с начислениями: {s['accounts']}, строк начислений: {s['charge_lines']}")
    _say("  способы расчёта: " + ", ".join(f"{k} {v}" for k, v in s["methods"].items()))
    _say(f"  входящее сальдо: {_rub(s['opening_kop'])}")
    _say(f"  начислено:       {_rub(s['charged_kop'])}")
    if s.get("recalculated_kop"):
        _say(f"  перерасчёты:     {_rub(s['recalculated_kop'])}")
    if s.get("penalty_kop"):
        _say(f"  пени:            {_rub(s['penalty_kop'])}")
    _say(f"  оплачено:        {_rub(s['allocated_kop'])} (платежей: {s['payments']})")
    _say(f"  исходящее сальдо: {_rub(s['closing_kop'])}")
    if s.get("due_date"):
        _say(f"  срок оплаты: {s['due_date']}")
    if s["reading_issues"]:
        _say(f"  показаний не принято: {s['reading_issues']} (таблица reading_issues)")
    if s.get("period_dir"):
        _say(f"  результаты: {s['period_dir']}")


@payments_app.command("import")
def payments_import(
    files: Annotated[list[Path], typer.Argument(help="Файлы реестров платежей.")],
    fmt: Annotated[str | None, typer.Option(
        "--format", help="Формат: sber, vtb или csv (по умолчанию определяется сам).")] = None,
    home: HomeOpt = None,
) -> None:
    """Загрузить реестры платежей; повторная загрузка ничего не меняет."""
    from pipeline.ingest.payments import import_payment_file

    ws = _ws(home).require()
    for path in files:
        r = import_payment_file(ws, path.resolve(), fmt)
        _audit(ws, "payments import", inputs={"file": str(path), "sha256": r.sha256, "format": r.format},
               outputs={"accepted": r.accepted, "accepted_kop": r.accepted_kop, "suspense": r.suspense,
                        "duplicates": r.duplicates, "rejected": r.rejected, "readings": r.readings})
        if r.already_imported:
            _say(f"{r.file}: уже загружен ранее — пропущен.")
            continue
        _say(f"{r.file} ({r.format}): принято платежей {r.accepted} на {_rub(r.accepted_kop)}"
             + (f", невыясненных {r.suspense}" if r.suspense else "")
             + (f", повторных пропущено {r.duplicates}" if r.duplicates else "")
             + (f", показаний счётчиков {r.readings}" if r.readings else "")
             + (f", отклонено {r.rejected} (отчёт: {r.rejects_path})" if r.rejected else ""))


@payments_app.command("match")
def payments_match(
    payment_id: Annotated[str, typer.Argument(help="Код невыясненного платежа.")],
    account: Annotated[str, typer.Argument(help="Лицевой счёт, на который его зачесть.")],
    agent: Annotated[str | None, typer.Option("--agent", help="Агент, если код неоднозначен.")] = None,
    home: HomeOpt = None,
) -> None:
    """Зачесть невыясненный платёж на лицевой счёт."""
    from pipeline.ingest.payments import match_payment

    ws = _ws(home).require()
    row = match_payment(ws, payment_id, account, agent)
    _audit(ws, "payments match", inputs={"payment_id": payment_id, "agent": row["agent"][0]},
           outputs={"account_id": account, "was": row["account_id"][0]})
    _say(f"Платёж {payment_id} ({row['agent'][0]}, {row['paid_on'][0]:%d.%m.%Y}, "
         f"{row['amount'][0]} ₽) зачтён на лицевой счёт {account}; "
         "он войдёт в ближайшее закрытие периода.")


@payments_app.command("suspense")
def payments_suspense(home: HomeOpt = None) -> None:
    """Список невыясненных платежей."""
    from pipeline.ingest.payments import load_suspense

    ws = _ws(home).require()
    frame = load_suspense(ws).select("agent", "payment_id", "paid_on", "account_id", "amount", "reason")
    _say(str(frame) if frame.height else "Невыясненных платежей нет.")


@app.command()
def explain(
    account: Annotated[str, typer.Argument(help="Лицевой счёт.")],
    period: Annotated[str, typer.Option("--period", help="Период ГГГГ-ММ.")],
    home: HomeOpt = None,
) -> None:
    """Показать каждое начисление счёта: способ, формулу и исходные данные."""
    from pipeline.explain import explain_account

    ws = _ws(home).require()
    text = explain_account(ws, account, period)
    _audit(ws, "explain", inputs={"account": account, "period": period})
    _say(text)


@app.command()
def statement(
    account: Annotated[str, typer.Argument(help="Лицевой счёт.")],
    until: Annotated[str, typer.Option("--until", help="Дата расчёта ГГГГ-ММ-ДД (для суда — дата решения).")],
    out: Annotated[Path | None, typer.Option("--out", help="Каталог (по умолчанию HOME/statements).")] = None,
    home: HomeOpt = None,
) -> None:
    """Расчёт задолженности и пени для суда (PDF и XLSX) по закрытым периодам."""
    from datetime import date

    from pipeline.penalties.court import account_statement

    try:
        day = date.fromisoformat(until)
    except ValueError:
        raise typer.BadParameter("дата в виде ГГГГ-ММ-ДД", param_hint="--until") from None
    ws = _ws(home).require()
    pdf, xlsx = account_statement(ws, account, day, out)
    _audit(ws, "statement", inputs={"account": account, "until": until},
           outputs=[str(pdf), str(xlsx)])
    _say(f"Расчёт задолженности и пени: {pdf}\n                            {xlsx}")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="Запрос SQL (DuckDB).")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv или json.")] = "table",
    home: HomeOpt = None,
) -> None:
    """SQL по хранилищу и закрытым периодам (DuckDB)."""
    from pipeline.analytics import run_sql

    ws = _ws(home).require()
    text = run_sql(ws, query, fmt)
    _audit(ws, "sql", inputs={"query": query})
    _say(text)


@app.command()
def verify(home: HomeOpt = None) -> None:
    """Сверить каждый файл закрытых периодов с manifest.json (контрольные суммы)."""
    from pipeline.verify import verify_all

    ws = _ws(home).require()
    report = verify_all(ws)
    _audit(ws, "verify", outputs={"periods": report.periods, "files": report.files})
    if not report.periods:
        _say("Закрытых периодов нет: проверять нечего.")
        return
    _say(f"Проверено периодов: {report.periods}, файлов: {report.files} — всё совпадает")


@app.command()
def demo(
    home: HomeOpt = None,
    accounts: Annotated[int, typer.Option("--accounts", min=10, help="Число лицевых счетов.")] = 1000,
    months: Annotated[int, typer.Option("--months", min=1, max=24, help="Сколько месяцев закрыть.")] = 3,
    start: Annotated[str, typer.Option("--start", help="Первый период ГГГГ-ММ.")] = "2026-12",
    receipts: Annotated[bool, typer.Option("--receipts/--no-receipts", help="Формировать PDF.")] = True,
    seed: Annotated[int, typer.Option("--seed", help="Зерно генератора.")] = 2026,
    heating: Annotated[str, typer.Option(
        "--heating", help="Оплата отопления: even — равномерно, in_season — в сезон.")] = "even",
) -> None:
    """Построить синтетический город и закрыть несколько месяцев от начала до конца."""
    from pipeline.demo import run_demo

    if heating not in ("even", "in_season"):
        raise BillingError("--heating: допустимо «even» или «in_season»")
    ws = _ws(home)
    run_demo(ws, accounts=accounts, months=months, start=start, receipts=receipts, seed=seed,
             say=_say, heating=heating)


@app.command()
def serve(home: HomeOpt = None) -> None:
    """Зарегистрировать расписание ночного импорта платежей на сервере Prefect и выполнять его."""
    from flows import configure_prefect

    ws = _ws(home).require()
    if not os.environ.get("PREFECT_API_URL"):
        raise BillingError(
            "Не задан PREFECT_API_URL. Запустите сервер: «prefect server start» и укажите "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (расписания на временном сервере не работают)."
        )
    configure_prefect(ws.home)
    from prefect.schedules import Cron

    from flows.nightly_payment_import import nightly_payment_import

    schedule = ws.settings().get("schedule", {})
    cron = str(schedule.get("nightly_import_cron", "30 2 * * *"))
    tz = str(schedule.get("timezone", "Europe/Moscow"))
    _audit(ws, "serve", outputs={"deployment": "nightly_payment_import/nightly-payment-import",
                                 "cron": cron, "timezone": tz})
    _say(f"Ночной импорт платежей: «{cron}» ({tz}), сервер {os.environ['PREFECT_API_URL']}")
    # pause_on_shutdown=False: a restart of this process must not silently pause the
    # schedule (stack-notes.md §1.3).
    nightly_payment_import.serve(
        name="nightly-payment-import",
        schedules=[Cron(cron, timezone=tz)],
        parameters={"home": str(ws.home)},
        pause_on_shutdown=False,
    )


@app.command()
def bench(
    accounts: Annotated[int, typer.Option("--accounts", min=10)] = 100_000,
    months: Annotated[int, typer.Option("--months", min=1, max=24)] = 1,
    payments: Annotated[int, typer.Option(
        "--payments", min=0, help="Замерить ночь из N банковских платежей (импорт и распределение).")] = 0,
    home: HomeOpt = None,
) -> None:
    """Замер: синтетический город, загрузка и закрытие периодов без PDF (время и память)."""
    from pipeline.demo import run_bench, run_payment_bench

    if payments:
        report = run_payment_bench(accounts=accounts, payments=payments, say=_say)
    else:
        report = run_bench(accounts=accounts, months=months, ws=_ws(home) if home else None, say=_say)
    _say(json.dumps(report, ensure_ascii=False, indent=1))


def _register_penalty() -> None:
    from pipeline.penalties.calculator import register

    register(app)


_register_penalty()


def _audit_failure(error: BaseException) -> None:
    """A failed command is audited too: what was asked and why it failed."""
    ws = _CURRENT.get("ws")
    if ws is None or not ws.audit.is_dir():
        return
    words = [a for a in sys.argv[1:3] if not a.startswith("-")]
    command = " ".join(words[:2] if words[:1] in (["payments"],) else words[:1]) or "billing"
    with contextlib.suppress(OSError):
        _audit(ws, command, status="error", argv=sys.argv[1:],
               error=str(error) if isinstance(error, BillingError) else repr(error))


def main() -> None:
    try:
        app()
    except BillingError as err:
        _audit_failure(err)
        typer.echo(f"Ошибка: {err}", err=True)
        sys.exit(1)
    except Exception as err:
        _audit_failure(err)
        raise


if __name__ == "__main__":
    main()
