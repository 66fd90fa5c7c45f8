"""``billing``: the command line, the thinnest layer over the stages and flows.

Heavy modules (Prefect, pandera, WeasyPrint) are imported inside the commands
that need them, so ``billing --help`` stays fast. Exit codes: 0 success,
1 business error (a Russian message, no traceback), 2 bad usage.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

# Plain help pages: typer's rich formatting costs ≈ 0.1 s of the ≈ 0.3 s `billing --help`
# took; the text (Russian) is the same. TYPER_USE_RICH=1 brings the framed pages back.
os.environ.setdefault("TYPER_USE_RICH", "0")

import typer  # after the setting above, which typer reads at import
import typer.core

from pipeline.app import close_summary_lines, run_close
from pipeline.cliargs import (
    DAY_FORMS,
    DAY_METAVAR,
    OPTIONS_METAVAR,
    PERIOD_FORMS,
    PERIOD_METAVAR,
    SUBCOMMAND_METAVAR,
    day_option,
    install_russian_help,
    period_option,
)
from pipeline.progress import seconds_text
from pipeline.workspace import BillingError, Workspace, default_home

install_russian_help()
app = typer.Typer(
    help="Биллинг ЖКХ: реестры, начисления, платежи, квитанции.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    options_metavar=OPTIONS_METAVAR,
    subcommand_metavar=SUBCOMMAND_METAVAR,
)
payments_app = typer.Typer(help="Платежи банков и почты.", no_args_is_help=True,
                           options_metavar=OPTIONS_METAVAR, subcommand_metavar=SUBCOMMAND_METAVAR)
app.add_typer(payments_app, name="payments")


class _ReportGroup(typer.core.TyperGroup):
    """``billing report NAME``: osv, card, list, or a report file — built-in (pipeline/report_sql/)
    or the workspace's own (HOME/reports/NAME.sql), each run by the hidden generic command."""

    def list_commands(self, ctx: Any) -> list[str]:
        from pipeline.sqlreports import reports

        own = [n for n in super().list_commands(ctx) if n != _SQL_REPORT]
        return own + [n for n in reports(default_home()).reports if n not in own]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        import copy

        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name.startswith("-") or cmd_name == _SQL_REPORT:
            return found
        from pipeline.sqlreports import reports

        base = super().get_command(ctx, _SQL_REPORT)
        if base is None:
            return None
        generic = copy.copy(base)
        spec = reports(default_home()).reports.get(cmd_name)
        generic.name, generic.hidden = cmd_name, False
        if spec is not None:
            own = "".join(f"\n\n--param {p.name}=…: {p.about} (по умолчанию {p.default})."
                          for p in spec.params)
            generic.help = f"{spec.title}.\n\n{spec.about}{own}"
            generic.short_help = spec.title
        return generic


#: The hidden command every SQL report runs as (:class:`_ReportGroup` names it after the report).
_SQL_REPORT = "_sql"
report_app = typer.Typer(help="Отчёты по закрытым периодам: ОСВ, карточка лицевого счёта и отчёты SQL "
                         "(встроенные и свои — HOME/reports/ИМЯ.sql; список: billing report list).",
                         cls=_ReportGroup, no_args_is_help=True, options_metavar=OPTIONS_METAVAR,
                         subcommand_metavar=SUBCOMMAND_METAVAR)
app.add_typer(report_app, name="report")
migrate_app = typer.Typer(help="Переход из прежней системы: история, сверка, параллельный расчёт.",
                          no_args_is_help=True, options_metavar=OPTIONS_METAVAR,
                          subcommand_metavar=SUBCOMMAND_METAVAR)
app.add_typer(migrate_app, name="migrate")
receipts_app = typer.Typer(help="Квитанции закрытых периодов: дубликаты, рассылка по e-mail.",
                           no_args_is_help=True, options_metavar=OPTIONS_METAVAR,
                           subcommand_metavar=SUBCOMMAND_METAVAR)
app.add_typer(receipts_app, name="receipts")
export_app = typer.Typer(help="Выгрузки закрытого периода: банкам, почте, в ГИС ЖКХ, соцзащите.",
                         no_args_is_help=True, options_metavar=OPTIONS_METAVAR,
                         subcommand_metavar=SUBCOMMAND_METAVAR)
app.add_typer(export_app, name="export")
import_app = typer.Typer(help="Ответы получателей выгрузок: ГИС ЖКХ, соцзащита.",
                         no_args_is_help=True, options_metavar=OPTIONS_METAVAR,
                         subcommand_metavar=SUBCOMMAND_METAVAR)
app.add_typer(import_app, name="import")
collect_app = typer.Typer(help="Работа с должниками: предупреждения, ограничение, судебный приказ, "
                          "претензии.",
                          no_args_is_help=True, options_metavar=OPTIONS_METAVAR,
                          subcommand_metavar=SUBCOMMAND_METAVAR)
app.add_typer(collect_app, name="collect")


HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", metavar="КАТАЛОГ",
                 help="Рабочее пространство (по умолчанию BILLING_HOME или ./billing-home)."),
]
ProgressOpt = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress",
                 help="Печатать этапы и время в stderr (по умолчанию — когда stderr — терминал)."),
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
def init(directory: Annotated[Path, typer.Argument(
        metavar="КАТАЛОГ", help="Каталог нового рабочего пространства.")]) -> None:
    """Создать пустое рабочее пространство с правилами по умолчанию."""
    from pipeline.workspace import init_workspace

    ws = init_workspace(directory.resolve())
    _audit(ws, "init", outputs=[str(ws.home)])
    _say(f"Рабочее пространство создано: {ws.home}")
    _say(f"  правила: {ws.rules}\n  реестры кладите в: {ws.registers}\n  платежи — в: {ws.inbox}")
    _say("  в registers/ — пустые шаблоны реестров (строка заголовка): допишите строки; столбцы, "
         "допустимые значения и примеры — docs/registers.md")


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
    for line in result.warnings:
        _say(line)
    if result.unchanged:
        _say(f"Реестры не изменились с последней загрузки ({result.version}): ничего не сделано "
             "(таблицы правил проверены).")
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
    period: Annotated[str, typer.Option("--period", metavar=PERIOD_METAVAR, help=f"Период: {PERIOD_FORMS}.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Рассчитать без закрытия периода.")] = False,
    no_receipts: Annotated[
        bool, typer.Option("--no-receipts", help="Не формировать PDF (для замеров).")
    ] = False,
    workers: Annotated[int | None, typer.Option(
        "--workers", metavar="N", min=1,
        help="Считать части закрытия на локальном кластере Dask из N процессов.")] = None,
    cluster: Annotated[str | None, typer.Option(
        "--cluster", metavar="АДРЕС",
        help="Считать части закрытия на кластере Dask по адресу планировщика, например "
             "tcp://10.0.0.5:8786 (рабочее пространство должно быть видно всем узлам).")] = None,
    show_progress: ProgressOpt = None,
    home: HomeOpt = None,
) -> None:
    """Закрыть период: начисления, платежи, сальдо, квитанции."""
    from pipeline import progress

    period = period_option(period, "--period")
    if workers and cluster:
        raise BillingError("Укажите либо --workers, либо --cluster, но не оба сразу.")
    if cluster is not None and not re.fullmatch(r"(tcp|tls|ucx|inproc)://\S+", cluster):
        raise BillingError(f"--cluster {cluster}: нужен адрес планировщика Dask вида tcp://узел:8786.")
    ws = _ws(home).require()
    with progress.reporting(progress.wanted(show_progress)):
        summary = run_close(ws, period, dry_run=dry_run, receipts=not no_receipts, workers=workers,
                            cluster=cluster)
    _print_close(summary, dry_run)


def _print_close(s: dict, dry_run: bool) -> None:
    for line in close_summary_lines(s, dry_run):
        _say(line)


@payments_app.command("import")
def payments_import(
    files: Annotated[list[Path], typer.Argument(metavar="ФАЙЛ", help="Файлы реестров платежей.")],
    fmt: Annotated[str | None, typer.Option(
        "--format", metavar="ФОРМАТ", help="Формат: sber, vtb, csv или 1c — выписка банка в формате 1С "
        "(по умолчанию определяется сам).")
    ] = None,
    agent: Annotated[str | None, typer.Option(
        "--agent", metavar="ИМЯ", help="Платёжный агент файла CSV без столбца agent (и строк с пустым "
        "agent), например post.")] = None,
    show_progress: ProgressOpt = None,
    home: HomeOpt = None,
) -> None:
    """Загрузить реестры платежей; повторная загрузка ничего не меняет."""
    from pipeline import progress
    from pipeline.ingest.payments import import_payment_file, suspense_lines

    ws = _ws(home).require()
    for path in files:
        with progress.reporting(progress.wanted(show_progress)):  # the time of each file from its start
            r = import_payment_file(ws, path.resolve(), fmt, agent=agent)
        _audit(ws, "payments import", inputs={"file": str(path), "sha256": r.sha256, "format": r.format,
                                              "agent": agent},
               outputs={"accepted": r.accepted, "accepted_kop": r.accepted_kop, "suspense": r.suspense,
                        "duplicates": r.duplicates, "rejected": r.rejected, "readings": r.readings,
                        "receipts": r.receipts, "receipts_rejected": r.receipts_rejected})
        if r.already_imported:
            _say(f"{r.file}: уже загружен ранее — пропущен.")
            continue
        _say(f"{r.file} ({r.format}): принято платежей {r.accepted} на {_rub(r.accepted_kop)}"
             + (f", невыясненных {r.suspense}" if r.suspense else "")
             + (f", повторных пропущено {r.duplicates}" if r.duplicates else "")
             + (f", показаний счётчиков {r.readings}" if r.readings else "")
             + (f", кассовых чеков {r.receipts}" if r.receipts else "")
             + (f", чеков отклонено {r.receipts_rejected}" if r.receipts_rejected else "")
             + (f", отклонено {r.rejected}" if r.rejected else "")
             + (f" (отчёт: {r.rejects_path})" if r.rejects_path else ""))
        for line in r.notes:
            _say(f"  {line}")
        for line in suspense_lines(r, _home_hint(home)):
            _say(f"  {line}")


@payments_app.command("fiscal")
def payments_fiscal(
    file: Annotated[Path, typer.Argument(
        metavar="ФАЙЛ", help="Файл кассовых чеков агента или ОФД (CSV: payment_id, agent, fn, fd, fp, "
        "issued_at, amount или русские заголовки выгрузки ОФД).")],
    agent: Annotated[str | None, typer.Option(
        "--agent", metavar="ИМЯ", help="Платёжный агент файла без столбца agent (и строк с пустым "
        "agent), например sber.")] = None,
    home: HomeOpt = None,
) -> None:
    """Загрузить данные кассовых чеков (ФН, ФД, ФП) к загруженным платежам; повторная загрузка
    ничего не меняет."""
    from pipeline.ingest.fiscal import import_fiscal_file

    ws = _ws(home).require()
    r = import_fiscal_file(ws, file.resolve(), agent=agent)
    _audit(ws, "payments fiscal", inputs={"file": str(file), "sha256": r.sha256, "agent": agent},
           outputs={"accepted": r.accepted, "duplicates": r.duplicates, "rejected": r.rejected,
                    "already_imported": r.already_imported})
    if r.already_imported:
        _say(f"{r.file}: уже загружен ранее — пропущен.")
        return
    _say(f"{r.file}: принято чеков {r.accepted}"
         + (f", повторных пропущено {r.duplicates}" if r.duplicates else "")
         + (f", отклонено {r.rejected} (отчёт: {r.rejects_path})" if r.rejected else ""))


def _home_hint(home: Path | None) -> str:
    """`` --home DIR`` for a suggested command when the user named the workspace."""
    import shlex

    return f" --home {shlex.quote(str(home))}" if home else ""


@payments_app.command("match")
def payments_match(
    payment_id: Annotated[str, typer.Argument(metavar="ПЛАТЁЖ", help="Код невыясненного платежа.")],
    account: Annotated[str, typer.Argument(metavar="СЧЁТ", help="Лицевой счёт, на который его зачесть.")],
    agent: Annotated[str | None, typer.Option(
        "--agent", metavar="АГЕНТ", help="Агент, если код неоднозначен.")] = None,
    home: HomeOpt = None,
) -> None:
    """Зачесть невыясненный платёж на лицевой счёт."""
    from pipeline.ingest.payments import match_payment

    ws = _ws(home).require()
    row = match_payment(ws, payment_id, account, agent)
    _audit(ws, "payments match", inputs={"payment_id": payment_id, "agent": row["agent"][0]},
           outputs={"account_id": account, "was": row["account_id"][0]})
    _say(f"Платёж {payment_id} ({row['agent'][0]}, {row['paid_on'][0]:%d.%m.%Y}, "
         f"{_rub(int(row['amount'][0] * 100))}) зачтён на лицевой счёт {account}; "
         "он войдёт в ближайшее закрытие периода.")


SUSPENSE_TITLES = {"payment_id": "Платёж", "agent": "Агент", "paid_on": "Дата", "account_id": "Лицевой счёт",
                   "amount": "Сумма, ₽", "reason": "Причина", "source_file": "Файл", "source_row": "Строка"}


@payments_app.command("suspense")
def payments_suspense(home: HomeOpt = None) -> None:
    """Список невыясненных платежей."""
    from pipeline.ingest.payments import load_suspense
    from pipeline.tables import render_table

    ws = _ws(home).require()
    frame = load_suspense(ws).sort("paid_on", "agent", "payment_id", nulls_last=True).select(
        "payment_id", "agent", "paid_on", "account_id", "amount", "reason", "source_file", "source_row")
    if not frame.height:
        _say("Невыясненных платежей нет.")
        return
    _say(f"Невыясненные платежи: {frame.height} на {_rub(int(frame['amount'].sum() * 100))}")
    _say(render_table(frame, SUSPENSE_TITLES))
    _say(f"Зачесть платёж на лицевой счёт: billing payments match ПЛАТЁЖ СЧЁТ{_home_hint(home)} "
         "(--agent АГЕНТ, если код платежа есть у нескольких агентов)")


@payments_app.command("revert")
def payments_revert(
    file: Annotated[str, typer.Argument(metavar="ФАЙЛ", help="Загруженный файл: путь, имя или SHA-256 "
                                        "(store/imported_files.parquet).")],
    home: HomeOpt = None,
) -> None:
    """Отменить загрузку файла платежей, пока его платежи не вошли в закрытый период."""
    from pipeline.ingest.payments import revert_payment_file

    ws = _ws(home).require()
    r = revert_payment_file(ws, file)
    _audit(ws, "payments revert", inputs={"file": file, "sha256": r.sha256},
           outputs={"file": r.file, "payments": r.payments, "amount_kop": r.amount_kop,
                    "suspense": r.suspense, "readings": r.readings})
    _say(f"Загрузка файла {r.file} отменена: убрано платежей {r.payments} на {_rub(r.amount_kop)}"
         + (f", невыясненных {r.suspense}" if r.suspense else "")
         + (f", показаний счётчиков {r.readings}" if r.readings else "")
         + ". Файл можно загрузить снова (billing payments import).")


@receipts_app.command("print")
def receipts_print(
    period: Annotated[str, typer.Option("--period", metavar=PERIOD_METAVAR, help=f"Период: {PERIOD_FORMS}.")],
    accounts: Annotated[list[str] | None, typer.Option(
        "--account", metavar="СЧЁТ", help="Лицевой счёт (можно несколько раз; по умолчанию — все).")] = None,
    home: HomeOpt = None,
) -> None:
    """Напечатать квитанции закрытого периода ещё раз (дубликаты) по его закрытым данным."""
    from pipeline.render.reprint import reprint_receipts

    period = period_option(period, "--period")
    ws = _ws(home).require()
    report = reprint_receipts(ws, period, accounts)
    _audit(ws, "receipts print", inputs={"period": period, "accounts": accounts or []},
           outputs={"count": report.count, "out_dir": str(report.out_dir)})
    _say(f"Дубликаты квитанций за {period}: {report.count} в {report.out_dir}")


@receipts_app.command("send")
def receipts_send(
    period: Annotated[str, typer.Option("--period", metavar=PERIOD_METAVAR, help=f"Период: {PERIOD_FORMS}.")],
    home: HomeOpt = None,
) -> None:
    """Разослать квитанции периода по e-mail тем, кто согласился; повторный запуск
    досылает неотправленные и не шлёт отправленное второй раз."""
    from pipeline.render.mail import journal_path, send_receipts

    period = period_option(period, "--period")
    ws = _ws(home).require()
    r = send_receipts(ws, period)
    _audit(ws, "receipts send", inputs={"period": period},
           outputs={"sent": r.sent, "failed": r.failed, "already_sent": r.already_sent,
                    "gave_up": r.gave_up, "no_receipt": r.no_receipt})
    _say(f"Квитанции за {period} по e-mail: отправлено {r.sent}"
         + (f", уже были отправлены {r.already_sent}" if r.already_sent else "")
         + (f", не удалось {r.failed}" if r.failed else "")
         + (f", попытки исчерпаны {r.gave_up}" if r.gave_up else "")
         + (f", нет квитанции {r.no_receipt}" if r.no_receipt else "") + ".")
    for account, reason in list(r.failures.items())[:20]:
        _say(f"  ЛС {account}: {reason}")
    if r.stopped:
        _say("Рассылка остановлена: сервер недоступен. Остальные письма будут отправлены при следующем "
             "запуске команды.")
    elif r.failed:
        _say("Неотправленные письма будут отправлены повторно при следующем запуске команды.")
    _say(f"Журнал доставки: {journal_path(ws, period)}")
    if r.failed:
        raise typer.Exit(1)


@app.command()
def explain(
    account: Annotated[str, typer.Argument(metavar="СЧЁТ", help="Лицевой счёт.")],
    period: Annotated[str, typer.Option("--period", metavar=PERIOD_METAVAR, help=f"Период: {PERIOD_FORMS}.")],
    home: HomeOpt = None,
) -> None:
    """Показать каждое начисление счёта: способ, формулу и исходные данные."""
    from pipeline.explain import explain_account

    period = period_option(period, "--period")
    ws = _ws(home).require()
    text = explain_account(ws, account, period)
    _audit(ws, "explain", inputs={"account": account, "period": period})
    _say(text)


@app.command()
def statement(
    account: Annotated[str, typer.Argument(metavar="СЧЁТ", help="Лицевой счёт.")],
    until: Annotated[str, typer.Option(
        "--until", metavar=DAY_METAVAR, help=f"Дата расчёта (для суда — дата решения): {DAY_FORMS}.")],
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="КАТАЛОГ", help="Каталог (по умолчанию HOME/statements).")] = None,
    supplier: Annotated[str | None, typer.Option(
        "--supplier", metavar="ПОСТАВЩИК",
        help="Взыскатель: код поставщика (без него — отдельный расчёт на каждого поставщика).")] = None,
    home: HomeOpt = None,
) -> None:
    """Расчёт задолженности и пени для суда (PDF и XLSX) по закрытым периодам, на одного взыскателя."""
    day = day_option(until, "--until")
    from pipeline.penalties.court import StatementFiles, account_statement, account_statements

    ws = _ws(home).require()
    if supplier is not None:
        pdf, xlsx = account_statement(ws, account, day, out, supplier_id=supplier)
        files = [StatementFiles(supplier, pdf, xlsx)]
    else:
        files = account_statements(ws, account, day, out)
    _audit(ws, "statement", inputs={"account": account, "until": until, "supplier": supplier},
           outputs=[str(p) for f in files for p in (f.pdf, f.xlsx)])
    lines = []
    if supplier is None and len(files) > 1:
        lines.append(f"Долги нескольким поставщикам ({', '.join(f.supplier_id for f in files)}): "
                     "расчёт для суда — отдельный на каждого взыскателя.")
    for f in files:
        lines.append(f"Расчёт задолженности и пени ({f.supplier_id}): {f.pdf}\n"
                     f"{' ' * 30}{f.xlsx}")
    _say("\n".join(lines))


@app.command()
def extract(
    account: Annotated[str, typer.Argument(metavar="СЧЁТ", help="Лицевой счёт.")],
    period: Annotated[str, typer.Option(
        "--period", metavar=PERIOD_METAVAR, help=f"Первый (или единственный) период: {PERIOD_FORMS}.")],
    to: Annotated[str | None, typer.Option(
        "--to", metavar=PERIOD_METAVAR, help=f"Последний период диапазона: {PERIOD_FORMS}.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="КАТАЛОГ", help="Каталог (по умолчанию HOME/statements).")] = None,
    home: HomeOpt = None,
) -> None:
    """Выписка по лицевому счёту (PDF) за закрытые периоды: помесячно, по поставщикам."""
    first = period_option(period, "--period")
    last = period_option(to, "--to") if to is not None else None
    from pipeline.render.extract import write_extract

    ws = _ws(home).require()
    path = write_extract(ws, account, first, last, out)
    _audit(ws, "extract", inputs={"account": account, "period": first, "to": last}, outputs=[str(path)])
    _say(f"Выписка по лицевому счёту: {path}")


@app.command()
def nodebt(
    account: Annotated[str, typer.Argument(metavar="СЧЁТ", help="Лицевой счёт.")],
    period: Annotated[str | None, typer.Option(
        "--period", metavar=PERIOD_METAVAR,
        help=f"Закрытый период, на конец которого выдаётся справка (по умолчанию последний): {PERIOD_FORMS}.")
    ] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="КАТАЛОГ", help="Каталог (по умолчанию HOME/statements).")] = None,
    home: HomeOpt = None,
) -> None:
    """Справка об отсутствии задолженности (PDF) на конец закрытого периода."""
    chosen = period_option(period, "--period") if period is not None else None
    from pipeline.render.extract import write_nodebt

    ws = _ws(home).require()
    path = write_nodebt(ws, account, chosen, out)
    _audit(ws, "nodebt", inputs={"account": account, "period": chosen}, outputs=[str(path)])
    _say(f"Справка об отсутствии задолженности: {path}")


@app.command()
def sql(
    query: Annotated[str | None, typer.Argument(
        metavar="[ЗАПРОС]", help="Запрос SQL (DuckDB); без него — интерактивная оболочка.")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", metavar="ФОРМАТ", help="table, csv, json или xlsx (xlsx — только с --out).")] = "table",
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="ФАЙЛ", help="Записать результат в файл (для csv, json и xlsx).")] = None,
    db: Annotated[Path | None, typer.Option(
        "--db", metavar="ФАЙЛ.duckdb", help="Записать базу DuckDB с представлениями (по абсолютным путям к "
        "Parquet рабочего пространства) для DBeaver, Jupyter, Superset.")] = None,
    org: Annotated[str | None, typer.Option(
        "--org", metavar="ОРГАНИЗАЦИЯ", help="Только одна организация (код из organizations): дома, которыми "
        "она управляет, и её услуги.")] = None,
    home: HomeOpt = None,
) -> None:
    """SQL по хранилищу и закрытым периодам (DuckDB); без запроса — интерактивная оболочка."""
    from datetime import datetime

    from pipeline.analytics import query_frame, run_sql

    formats = ("table", "csv", "json", "xlsx")
    if fmt not in formats:
        raise typer.BadParameter(f"допустимо: {', '.join(formats)}", param_hint="--format")
    if db is not None and (query is not None or out is not None):
        raise typer.BadParameter("--db записывает базу представлений: без запроса и без --out",
                                 param_hint="--db")
    if fmt == "xlsx" and out is None and db is None:
        raise typer.BadParameter("книга XLSX — двоичный файл: укажите, куда её записать, --out ФАЙЛ.xlsx",
                                 param_hint="--out")
    if fmt == "table" and out is not None:
        raise typer.BadParameter("в файл записываются csv, json и xlsx: укажите --format",
                                 param_hint="--out")
    ws = _ws(home).require()
    if db is not None:
        from pipeline.analytics import write_database

        count = write_database(ws, db, org)
        _audit(ws, "sql", inputs={"db": True, "org": org}, outputs=[str(db.resolve())])
        _say(f"База DuckDB: представлений {count}{f' (организация {org})' if org else ''} — {db.resolve()}\n"
             "Представления читают файлы рабочего пространства; после закрытия периода запишите базу заново.")
        return
    if query is None:
        if out is not None:
            raise typer.BadParameter("в файл записывается результат запроса: укажите ЗАПРОС",
                                     param_hint="--out")
        from pipeline.analytics import shell

        interactive = sys.stdin.isatty()
        if interactive:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (line editing and history for input())

        def read_line(prompt: str) -> str | None:
            try:
                return input(prompt) if interactive else _read_piped(prompt)
            except EOFError:
                return None

        _audit(ws, "sql", inputs={"shell": True, "org": org})
        failed = shell(ws, org, read_line, _say)
        if failed and not interactive:
            raise typer.Exit(1)
        return
    if out is None:
        text = run_sql(ws, query, fmt, org)
        _audit(ws, "sql", inputs={"query": query, "format": fmt, "org": org})
        _say(text)
        return
    from pipeline.workspace import atomic_write_bytes

    frame = query_frame(ws, query, org)
    if frame is None:
        raise BillingError("Запрос не вернул таблицы: записывать в файл нечего.")
    if fmt == "xlsx":
        from pipeline.tables import xlsx_bytes

        data = xlsx_bytes(frame, datetime.now().replace(microsecond=0), sheet="Запрос")
    else:
        data = (frame.write_csv() if fmt == "csv" else frame.write_json()).encode()
    atomic_write_bytes(out.resolve(), data)
    _audit(ws, "sql", inputs={"query": query, "format": fmt, "org": org}, outputs=[str(out.resolve())])
    _say(f"Записано строк: {frame.height} — {out}")


def _read_piped(prompt: str) -> str:
    """A line of piped input, the prompt printed as a terminal would show it."""
    sys.stdout.write(prompt)
    line = sys.stdin.readline()
    if not line:
        sys.stdout.write("\n")
        raise EOFError
    return line.rstrip("\n")


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
    accounts: Annotated[int, typer.Option(
        "--accounts", min=10, metavar="ЧИСЛО", help="Число лицевых счетов (не меньше 10).")] = 1000,
    months: Annotated[int, typer.Option(
        "--months", min=1, max=24, metavar="ЧИСЛО", help="Сколько месяцев закрыть (1–24).")] = 3,
    start: Annotated[str, typer.Option(
        "--start", metavar=PERIOD_METAVAR, help=f"Первый период: {PERIOD_FORMS}.")] = "2026-12",
    receipts: Annotated[bool, typer.Option("--receipts/--no-receipts", help="Формировать PDF.")] = True,
    seed: Annotated[int, typer.Option("--seed", metavar="ЧИСЛО", help="Зерно генератора.")] = 2026,
    heating: Annotated[str, typer.Option(
        "--heating", metavar="СПОСОБ", help="Оплата отопления: even — равномерно, in_season — в сезон."
    )] = "even",
) -> None:
    """Построить синтетический город и закрыть несколько месяцев от начала до конца.

    Этапы и время печатаются в stderr, итоги — в stdout."""
    from pipeline import progress
    from pipeline.demo import run_demo

    if heating not in ("even", "in_season"):
        raise BillingError("--heating: допустимо «even» или «in_season»")
    start = period_option(start, "--start")
    ws = _ws(home)
    with progress.reporting():
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
    from pipeline.settings import Schedule, load_section

    schedule = load_section(ws.settings_path, Schedule)
    cron, tz = schedule.nightly_import_cron, schedule.timezone
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
    accounts: Annotated[int, typer.Option(
        "--accounts", min=10, metavar="ЧИСЛО", help="Число лицевых счетов синтетического города.")] = 100_000,
    months: Annotated[int, typer.Option(
        "--months", min=1, max=24, metavar="ЧИСЛО", help="Сколько месяцев закрыть (1–24).")] = 1,
    payments: Annotated[int, typer.Option(
        "--payments", min=0, metavar="ЧИСЛО",
        help="Замерить ночь из N банковских платежей (импорт и распределение).")] = 0,
    partition_accounts: Annotated[int | None, typer.Option(
        "--partition-accounts", min=1, metavar="ЧИСЛО",
        help="Лицевых счетов в части закрытия (по умолчанию — из settings.toml, [close]).")] = None,
    history: Annotated[int, typer.Option(
        "--history", min=0, max=120, metavar="МЕСЯЦЕВ",
        help="Замерить перенос из прежней системы: выгрузка за N месяцев и billing migrate load.")] = 0,
    receipts: Annotated[int, typer.Option(
        "--receipts", min=0, metavar="ЧИСЛО",
        help="Замерить отрисовку N демо-квитанций: конвейер против простого цикла WeasyPrint.")] = 0,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, metavar="ЧИСЛО",
        help="Процессов отрисовки для --receipts (по умолчанию — по числу ядер).")] = None,
    exports: Annotated[bool, typer.Option(
        "--exports", help="Замерить выгрузки (банки, почта, ГИС ЖКХ, соцзащита) закрытого месяца "
        "города из --accounts счетов против голой записи CSV.")] = False,
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Отчёт одним объектом JSON в последней строке stdout.")] = False,
) -> None:
    """Замер: синтетический город, загрузка и закрытие периодов без PDF (время, ЦП, память).

    Этапы печатаются в stderr; в stdout — сводка (время, процессорное время, пик памяти
    и строк в секунду по этапам, закрытие первого месяца против голого соединения Polars
    тех же строк начислений) или с --json — отчёт JSON одной строкой."""
    from pipeline import progress
    from pipeline.demo import bench_summary, run_bench, run_migration_bench, run_payment_bench
    from pipeline.receipts_bench import receipts_bench, receipts_summary

    with progress.reporting():
        if exports:
            from pipeline.export.bench import exports_bench

            report = exports_bench(accounts, ws=_ws(home) if home else None, say=progress.stage)
        elif receipts:
            report = receipts_bench(receipts, workers or os.cpu_count() or 1,
                                    home=_ws(home).home if home else None, say=progress.stage)
        elif history:
            report = run_migration_bench(accounts=accounts, months=history, ws=_ws(home) if home else None,
                                         say=progress.stage)
        elif payments:
            report = run_payment_bench(accounts=accounts, payments=payments, say=progress.stage)
        else:
            report = run_bench(accounts=accounts, months=months, ws=_ws(home) if home else None,
                               say=progress.stage, partition_accounts=partition_accounts)
    if as_json:
        _say(json.dumps(report, ensure_ascii=False))
    elif exports:
        from pipeline.export.bench import exports_summary

        for line in exports_summary(report):
            _say(line)
    elif receipts:
        for line in receipts_summary(report):
            _say(line)
    elif payments or history:
        _say(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        for line in bench_summary(report):
            _say(line)


REPORT_FORMATS = ("table", "csv", "xlsx")
ReportPeriodOpt = Annotated[str, typer.Option(
    "--period", metavar=PERIOD_METAVAR, help=f"Первый (или единственный) период: {PERIOD_FORMS}.")]
ReportToOpt = Annotated[str | None, typer.Option(
    "--to", metavar=PERIOD_METAVAR, help=f"Последний период диапазона: {PERIOD_FORMS}.")]
ReportOrgOpt = Annotated[str | None, typer.Option(
    "--org", metavar="ОРГАНИЗАЦИЯ", help="Только одна организация (код из organizations): дома, которыми "
    "она управляет, и её услуги.")]
ReportFormatOpt = Annotated[str, typer.Option(
    "--format", metavar="ФОРМАТ", help="table — таблица на экране, csv — для Excel («;», десятичная "
    "запятая, UTF-8 с BOM), xlsx — книга Excel.")]
ReportOutOpt = Annotated[Path | None, typer.Option(
    "--out", metavar="ФАЙЛ", help="Куда записать csv или xlsx (по умолчанию HOME/reports/…).")]


def _report_periods(period: str, to: str | None, fmt: str) -> list[str]:
    from pipeline.reports import period_range

    if fmt == "png":
        raise typer.BadParameter("формат png пока не поддерживается: table, csv или xlsx",
                                 param_hint="--format")
    if fmt not in REPORT_FORMATS:
        raise typer.BadParameter(f"допустимо: {', '.join(REPORT_FORMATS)}", param_hint="--format")
    first = period_option(period, "--period")
    return period_range(first, period_option(to, "--to") if to else None)


def _report_out(ws: Workspace, command: str, frame: Any, titles: dict[str, str], fmt: str,
                out: Path | None, name: str, periods: list[str], inputs: dict[str, Any]) -> None:
    """Print the report (``table``) or write it as CSV or XLSX; audit either way."""
    from datetime import datetime
    from datetime import time as day_time

    from pipeline.dates import Period
    from pipeline.tables import excel_csv_bytes, render_table, xlsx_bytes
    from pipeline.workspace import atomic_write_bytes

    if fmt == "table":
        _audit(ws, command, inputs=inputs, outputs={"rows": frame.height})
        _say(render_table(frame, titles))
        return
    path = (out or ws.home / "reports" / f"{name}.{fmt}").resolve()
    if fmt == "csv":
        data = excel_csv_bytes(frame, titles)
    else:  # stamped with the last period's last day: the same data gives the same bytes
        created = datetime.combine(Period.parse(periods[-1]).last, day_time())
        data = xlsx_bytes(frame, created, sheet=name[:31], titles=titles)
    atomic_write_bytes(path, data)
    _audit(ws, command, inputs=inputs, outputs=[str(path)])
    _say(f"Записано строк: {frame.height} — {path}")


#: ``billing export KIND``: the module of ``pipeline.export`` that builds its files.
_EXPORTS = {
    "banks": "Реестры начислений для банков и платёжных агентов",
    "post": "Реестр квитанций для доставки Почтой России",
    "gis": "Платёжные документы и показания для ГИС ЖКХ",
    "welfare": "Реестр для органов социальной защиты",
}


def _export(kind: str, period: str, home: Path | None) -> None:
    import importlib

    from pipeline.app import left_out_text
    from pipeline.export import sealed_manifest, write_exports

    period = period_option(period, "--period")
    ws = _ws(home).require()
    sealed_manifest(ws, period)  # refuses an open or damaged period before building anything
    module = importlib.import_module(f"pipeline.export.{kind}")
    files = module.build_files(ws, period)
    report = write_exports(ws, period, kind, files)
    _audit(ws, f"export {kind}", inputs={"period": period},
           outputs={"written": list(report.written), "unchanged": list(report.unchanged),
                    "rows": report.rows, "total_kop": report.total_kop})
    count = len(report.written) + len(report.unchanged)
    _say(f"{_EXPORTS[kind]} за {period}: {count} файл(ов), записей {report.rows}, "
         f"сумма {_rub(report.total_kop)} — {report.folder}")
    for rel in report.written:
        _say(f"  записан {rel}")
    if report.unchanged:
        _say(f"  уже были выгружены без изменений: {len(report.unchanged)}")
    left = left_out_text(report.left_out, report.left_out_file)
    if left:
        _say(f"  {left}")


@export_app.command("banks")
def export_banks(
    period: Annotated[str, typer.Option("--period", metavar=PERIOD_METAVAR, help=f"Период: {PERIOD_FORMS}.")],
    home: HomeOpt = None,
) -> None:
    """Реестры начислений закрытого периода для банков и агентов (по их форматам из настроек)."""
    _export("banks", period, home)


@export_app.command("post")
def export_post(
    period: Annotated[str, typer.Option("--period", metavar=PERIOD_METAVAR, help=f"Период: {PERIOD_FORMS}.")],
    home: HomeOpt = None,
) -> None:
    """Реестр бумажных квитанций для доставки почтой (CSV и XLSX), по индексу и адресу."""
    _export("post", period, home)


@export_app.command("gis")
def export_gis(
    period: Annotated[str, typer.Option("--period", metavar=PERIOD_METAVAR, help=f"Период: {PERIOD_FORMS}.")],
    home: HomeOpt = None,
) -> None:
    """Платёжные документы и показания приборов учёта для загрузки в ГИС ЖКХ (XML по схемам 16.3.0.0)."""
    _export("gis", period, home)


@export_app.command("welfare")
def export_welfare(
    period: Annotated[str, typer.Option("--period", metavar=PERIOD_METAVAR, help=f"Период: {PERIOD_FORMS}.")],
    home: HomeOpt = None,
) -> None:
    """Реестр получателей льгот и субсидий для органов социальной защиты."""
    _export("welfare", period, home)


@import_app.command("gis-payments")
def import_gis_payments(
    file: Annotated[Path, typer.Argument(
        metavar="ФАЙЛ",
        help="XML извещений о приёме платежей (importNotificationsOfOrderExecutionRequest).")],
    days: Annotated[int, typer.Option(
        "--days", metavar="ДНЕЙ", help="Допустимое расхождение дат платежа в ГИС и у нас, дней.")] = 0,
    agent: Annotated[str | None, typer.Option(
        "--agent", metavar="ИМЯ",
        help="Сверять только с платежами этого агента (банка-отправителя).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="КАТАЛОГ", help="Куда записать отчёт (по умолчанию HOME/reconciliation/gis/ИМЯ/).")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Сверить извещения ГИС ЖКХ о платежах с загруженными платежами (платежи не добавляются)."""
    from pipeline.ingest.gis import reconcile_payments

    ws = _ws(home).require()
    r = reconcile_payments(ws, file.resolve(), days=days, agent=agent, out=out.resolve() if out else None)
    _audit(ws, "import gis-payments", inputs={"file": str(file), "days": days, "agent": agent},
           outputs={"notices": r.notices, "notices_kop": r.notices_kop, "counts": r.counts,
                    "files": [str(r.csv_path), str(r.xlsx_path)]})
    for line in r.lines():
        _say(line)


@import_app.command("gis-readings")
def import_gis_readings_cmd(
    file: Annotated[Path, typer.Argument(
        metavar="ФАЙЛ", help="XML показаний из ГИС ЖКХ (exportMeteringDeviceHistoryResult или "
        "importMeteringDeviceValuesRequest).")],
    home: HomeOpt = None,
) -> None:
    """Загрузить показания, внесённые жителями в ГИС ЖКХ; повторная загрузка ничего не меняет."""
    from pipeline.ingest.gis import import_gis_readings

    ws = _ws(home).require()
    r = import_gis_readings(ws, file.resolve())
    _audit(ws, "import gis-readings", inputs={"file": str(file), "sha256": r.sha256},
           outputs={"read": r.read, "accepted": r.accepted, "duplicates": r.duplicates,
                    "rejected": r.rejected})
    _say(r.line())


@import_app.command("gis-documents")
def import_gis_documents_cmd(
    file: Annotated[Path, typer.Argument(
        metavar="ФАЙЛ", help="Ответ ГИС ЖКХ на загрузку платёжных документов (bills:getStateResult "
        "с ImportResult по каждому документу).")],
    period: Annotated[str, typer.Option("--period", metavar=PERIOD_METAVAR,
                                        help=f"Период выгруженных документов: {PERIOD_FORMS}.")],
    home: HomeOpt = None,
) -> None:
    """Загрузить идентификаторы (ИПД), которые ГИС ЖКХ присвоил платёжным документам периода;
    повторная загрузка ничего не меняет."""
    from pipeline.ingest.gis_documents import import_gis_documents

    period = period_option(period, "--period")
    ws = _ws(home).require()
    r = import_gis_documents(ws, file.resolve(), period)
    _audit(ws, "import gis-documents", inputs={"file": str(file), "sha256": r.sha256, "period": r.period},
           outputs={"read": r.read, "accepted": r.accepted, "duplicates": r.duplicates,
                    "rejected": r.rejected})
    _say(r.line())


@import_app.command("welfare")
def import_welfare(
    file: Annotated[Path, typer.Argument(
        metavar="ФАЙЛ", help="Ответ соцзащиты (CSV или XLSX): период, лицевой счёт и/или код гражданина, "
        "услуга, суммы ЕДК и субсидий.")],
    home: HomeOpt = None,
) -> None:
    """Загрузить ответ органа соцзащиты (ЕДК и субсидии) для графы льгот ЕПД; повторная загрузка
    ничего не меняет."""
    from pipeline.ingest.welfare import import_welfare_file

    ws = _ws(home).require()
    r = import_welfare_file(ws, file.resolve())
    _audit(ws, "import welfare", inputs={"file": str(file), "sha256": r.sha256},
           outputs={"accepted": r.accepted, "accepted_kop": r.accepted_kop, "duplicates": r.duplicates,
                    "rejected": r.rejected, "receipt_periods": list(r.receipt_periods),
                    "already_imported": r.already_imported})
    if r.already_imported:
        _say(f"{r.file}: уже загружен ранее — пропущен.")
        return
    _say(f"{r.file}: принято сумм {r.accepted} на {_rub(r.accepted_kop)}"
         + (f" (в квитанции за {', '.join(r.receipt_periods)})" if r.receipt_periods else "")
         + (f", повторных пропущено {r.duplicates}" if r.duplicates else "")
         + (f", отклонено строк {r.rejected} (отчёт: {r.rejects_path})" if r.rejected else ""))


CollectOnOpt = Annotated[str | None, typer.Option(
    "--on", metavar=DAY_METAVAR,
    help=f"День, на который выполняется шаг (по умолчанию сегодня): {DAY_FORMS}.")]


def _collect_on(on: str | None) -> Any:
    return day_option(on, "--on") if on else None


@collect_app.command("list")
def collect_list_cmd(
    period: Annotated[str | None, typer.Option(
        "--period", metavar=PERIOD_METAVAR,
        help=f"Закрытый период (по умолчанию последний): {PERIOD_FORMS}.")] = None,
    stage: Annotated[str | None, typer.Option(
        "--stage", metavar="СТАДИЯ", help="Показать только дела этой стадии (debtor, warned, restriction, "
        "court, order_issued, order_cancelled, lawsuit, enforcement, claim, arbitration).")] = None,
    supplier: Annotated[str | None, typer.Option(
        "--supplier", metavar="ПОСТАВЩИК", help="Показать только дела этого поставщика (org_id).")] = None,
    on: CollectOnOpt = None,
    home: HomeOpt = None,
) -> None:
    """Найти новых должников по закрытому периоду, обновить долг по делам, закрыть погашенные; показать дела.

    Должник — по правилам rules/collection.csv: коммунальные услуги — долг больше 2 месячных начислений по
    нормативу (п.118 Правил 354), содержание, капремонт и организации — сумма и срок долга.
    """
    from pipeline.collect.cases import STAGES
    from pipeline.collect.summary import CASE_TITLES, SUMMARY_TITLES, case_table, summary_table
    from pipeline.collect.workflow import collect_list
    from pipeline.tables import render_table

    if stage and stage not in STAGES:
        raise typer.BadParameter(f"допустимо: {', '.join(STAGES)}", param_hint="--stage")
    ws = _ws(home).require()
    r = collect_list(ws, period_option(period, "--period") if period else None, _collect_on(on))
    _say(f"Период {r.period}, на {r.on:%d.%m.%Y}: новых дел {r.opened}, погашено {r.paid}, приостановлено "
         f"{r.paused}, возобновлено {r.resumed}, долг изменился по {r.updated}")
    for problem in r.problems:
        _say(f"  Внимание: {problem}")
    shown = case_table(r.cases, stage, supplier, r.service_names)
    if shown.height:
        _say(render_table(shown, CASE_TITLES))
    else:
        _say("Дел нет.")
    _say("Итоги по стадиям:")
    _say(render_table(summary_table(r.cases), SUMMARY_TITLES))


@collect_app.command("warn")
def collect_warn_cmd(
    period: Annotated[str | None, typer.Option(
        "--period", metavar=PERIOD_METAVAR,
        help=f"Закрытый период долга (по умолчанию последний): {PERIOD_FORMS}.")] = None,
    account: Annotated[list[str] | None, typer.Option(
        "--account", metavar="СЧЁТ", help="Только эти лицевые счета (можно несколько раз).")] = None,
    send: Annotated[bool, typer.Option(
        "--send", help="Отправить предупреждения по e-mail тем, у кого он указан.")] = False,
    on: CollectOnOpt = None,
    home: HomeOpt = None,
) -> None:
    """Предупреждения (п.119 Правил 354) по делам граждан на стадии «должник выявлен» — PDF.

    PDF — для вручения под подпись или письма; с --send — ещё и по e-mail.

    День --on — день доставки предупреждения: с него отсчитываются дни на погашение (20).
    """
    from pipeline.collect.workflow import collect_warn

    ws = _ws(home).require()
    r = collect_warn(ws, period_option(period, "--period") if period else None, account or None,
                     _collect_on(on), send)
    _say(f"Предупреждений составлено: {len(r.documents)}"
         + (f", отправлено по e-mail: {len(r.sent)}" if send else ""))
    for case_id, path in r.documents.items():
        _say(f"  {case_id}: {path}" + (f" → {r.sent[case_id]}" if case_id in r.sent else ""))
    for case_id, why in r.skipped.items():
        _say(f"  {case_id}: пропущено — {why}")


@collect_app.command("restrict")
def collect_restrict_cmd(
    supplier: Annotated[str | None, typer.Option(
        "--supplier", metavar="ПОСТАВЩИК", help="Только этот поставщик (org_id).")] = None,
    on: CollectOnOpt = None,
    home: HomeOpt = None,
) -> None:
    """Списки на ограничение и приостановление услуг для поставщиков (CSV и XLSX).

    В списки попадают дела, по которым после предупреждения прошли дни на погашение. Отопление и
    холодная вода в многоквартирном доме не ограничиваются (п.122 Правил 354).
    """
    from pipeline.collect.workflow import collect_restrict

    ws = _ws(home).require()
    r = collect_restrict(ws, _collect_on(on), supplier)
    if not r.files:
        _say("Дел для ограничения нет.")
    for sup, paths in r.files.items():
        count = r.rows.filter(r.rows["supplier_id"] == sup).height
        _say(f"Поставщик {sup}: строк {count} — " + ", ".join(str(p) for p in paths))


def _package_said(r: Any) -> None:
    kinds = {"court": "Заявление о вынесении судебного приказа с расчётом", "claim": "Претензия",
             "arbitration": "Исковое заявление в арбитражный суд с расчётом"}
    _say(f"{kinds[r.kind]} по делу {r.case_id}: {r.path}")
    _say(f"  долг {_rub(r.debt_kop)}, пени {_rub(r.penalty_kop)}"
         + (f", госпошлина {_rub(r.duty_kop)}" if r.duty_kop else ""))


CaseOpt = Annotated[str, typer.Option("--case", metavar="ДЕЛО", help="Номер дела (billing collect list).")]


@collect_app.command("court")
def collect_court_cmd(
    case: CaseOpt,
    court: Annotated[str | None, typer.Option(
        "--court", metavar="СУД", help="Суд, как он пишется в шапке заявления (по умолчанию — строка "
        "для заполнения).")] = None,
    on: CollectOnOpt = None,
    home: HomeOpt = None,
) -> None:
    """Пакет для суда одним PDF: гражданин — заявление о вынесении судебного приказа (ГПК 124), организация —
    исковое заявление в арбитражный суд; с расчётом задолженности и пени.

    Не раньше, чем пройдут дни на погашение после предупреждения (гражданин) или претензии (организация).
    """
    from pipeline.collect.workflow import collect_court

    ws = _ws(home).require()
    _package_said(collect_court(ws, case, _collect_on(on), court))


@collect_app.command("claim")
def collect_claim_cmd(case: CaseOpt, on: CollectOnOpt = None, home: HomeOpt = None) -> None:
    """Претензия организации-должнику (30 дней на оплату до иска, АПК 4 ч.5)."""
    from pipeline.collect.workflow import collect_claim

    ws = _ws(home).require()
    _package_said(collect_claim(ws, case, _collect_on(on)))


@collect_app.command("arbitration")
def collect_arbitration_cmd(
    case: CaseOpt,
    court: Annotated[str | None, typer.Option("--court", metavar="СУД", help="Арбитражный суд.")] = None,
    on: CollectOnOpt = None,
    home: HomeOpt = None,
) -> None:
    """Исковое заявление в арбитражный суд с расчётом (то же, что billing collect court для организации)."""
    from pipeline.collect.cases import case_row, read_store
    from pipeline.collect.workflow import collect_court

    ws = _ws(home).require()
    if case_row(read_store(ws)[0], case)["payer_kind"] != "organization":
        raise BillingError(f"Дело {case} — гражданина: для него billing collect court (судебный приказ).")
    _package_said(collect_court(ws, case, _collect_on(on), court))


@collect_app.command("record")
def collect_record_cmd(
    case: CaseOpt,
    event: Annotated[str, typer.Option(
        "--event", metavar="СОБЫТИЕ", help="order_issued — приказ вынесен, order_cancelled — отменён, "
        "claim_filed — иск подан, enforcement — исполнительное производство, paid — погашено, "
        "closed — закрыто.")],
    on: Annotated[str, typer.Option("--on", metavar=DAY_METAVAR, help=f"Дата события: {DAY_FORMS}.")],
    reason: Annotated[str | None, typer.Option(
        "--reason", metavar="ТЕКСТ", help="Основание, комментарий.")] = None,
    number: Annotated[str | None, typer.Option(
        "--number", metavar="НОМЕР", help="Номер приказа, дела, листа.")] = None,
    home: HomeOpt = None,
) -> None:
    """Записать ответ суда или окончание дела (с датой; всё записывается в журнал дела)."""
    from pipeline.collect.cases import RECORDED, STAGE_NAMES, STATUS_NAMES
    from pipeline.collect.workflow import collect_record

    if event not in RECORDED:
        raise typer.BadParameter(f"допустимо: {', '.join(RECORDED)}", param_hint="--event")
    ws = _ws(home).require()
    done = collect_record(ws, case, event, day_option(on, "--on"), reason, number)
    _say(f"Дело {case}: {STAGE_NAMES[done['stage']]}, {STATUS_NAMES[done['status']]} ({on})")


@report_app.command("osv")
def report_osv(
    period: ReportPeriodOpt,
    to: ReportToOpt = None,
    by: Annotated[str, typer.Option(
        "--by", metavar="РАЗРЕЗ", help="Строки ведомости: account — лицевые счета, building — дома, "
        "supplier — поставщики.")] = "account",
    org: ReportOrgOpt = None,
    fmt: ReportFormatOpt = "table",
    out: ReportOutOpt = None,
    home: HomeOpt = None,
) -> None:
    """Оборотно-сальдовая ведомость по лицевым счетам, домам или поставщикам.

    Сальдо на начало — первого периода, обороты — за весь диапазон, сальдо на конец — последнего.
    """
    from pipeline.reports import OSV_KEYS, check_osv
    from pipeline.sqlreports import builtin_reports, for_output, run_report

    periods = _report_periods(period, to, fmt)
    if by not in OSV_KEYS:
        raise typer.BadParameter(f"допустимо: {', '.join(OSV_KEYS)}", param_hint="--by")
    ws = _ws(home).require()
    # The SQL sheet (pipeline/report_sql/osv-BY.sql) gives the same rows as reports.osv, byte for
    # byte, in seconds where the frames took a minute and 16 GB for a million accounts.
    result = run_report(ws, builtin_reports()[f"osv-{by}"], periods, org)
    check_osv(result.frame)
    frame, titles = for_output(result)
    span = result.span
    _report_out(ws, "report osv", frame, titles, fmt, out,
                f"osv-{by}-{span}" + (f"-{org}" if org else ""), periods,
                {"period": periods[0], "to": periods[-1], "by": by, "org": org, "format": fmt})


@report_app.command("card")
def report_card(
    account: Annotated[str, typer.Argument(metavar="СЧЁТ", help="Лицевой счёт.")],
    period: ReportPeriodOpt,
    to: ReportToOpt = None,
    org: ReportOrgOpt = None,
    fmt: ReportFormatOpt = "table",
    out: ReportOutOpt = None,
    home: HomeOpt = None,
) -> None:
    """Карточка лицевого счёта: движение по каждому периоду.

    Сальдо на начало, начисления по услугам, перерасчёты, пени, оплаты с датами, сальдо на конец.
    """
    from pipeline.reports import CARD_TITLES, account_card, check_card, read_sealed, report_rubles
    from rules import read_rule_table

    periods = _report_periods(period, to, fmt)
    ws = _ws(home).require()
    from pipeline.ingest.registers import load_store

    tables = read_sealed(ws, periods, org, account=account)
    services = dict(read_rule_table(ws.rules, "services").select("service_id", "name").iter_rows())
    card = account_card(account, tables, load_store(ws), services, periods)
    check_card(card)
    span = periods[0] if len(periods) == 1 else f"{periods[0]}_{periods[-1]}"
    _report_out(ws, "report card", report_rubles(card), CARD_TITLES, fmt, out,
                f"card-{account}-{span}" + (f"-{org}" if org else ""), periods,
                {"account": account, "period": periods[0], "to": periods[-1], "org": org, "format": fmt})


SQL_REPORT_FORMATS = ("table", "csv", "xlsx", "png")


@report_app.command(_SQL_REPORT, hidden=True)
def report_sql(
    ctx: typer.Context,
    period: ReportPeriodOpt,
    to: ReportToOpt = None,
    org: ReportOrgOpt = None,
    fmt: Annotated[str, typer.Option(
        "--format", metavar="ФОРМАТ", help="table — таблица на экране, csv — для Excel («;», десятичная "
        "запятая, UTF-8 с BOM), xlsx — книга Excel (по шаблону HOME/reports/ИМЯ.xlsx, если он есть), "
        "png — график (у отчётов с графиком).")] = "table",
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="ФАЙЛ",
        help="Куда записать csv, xlsx или png (по умолчанию HOME/reports/…).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", metavar="ИМЯ=ЗНАЧЕНИЕ", help="Параметр отчёта (их список — в справке отчёта); "
        "можно несколько раз.")] = None,
    home: HomeOpt = None,
) -> None:
    """Отчёт из файла SQL над представлениями billing sql."""
    from pipeline.reports import period_range
    from pipeline.sqlreports import csv_bytes, find_report, png_bytes, run_report, table_text, template_path

    name = ctx.info_name or _SQL_REPORT
    if fmt not in SQL_REPORT_FORMATS:
        raise typer.BadParameter(f"допустимо: {', '.join(SQL_REPORT_FORMATS)}", param_hint="--format")
    if fmt == "table" and out is not None:
        raise typer.BadParameter("в файл записываются csv, xlsx и png: укажите --format", param_hint="--out")
    given: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"ожидалось ИМЯ=ЗНАЧЕНИЕ, получено «{item}»", param_hint="--param")
        given[key.strip()] = value.strip()
    periods = period_range(period_option(period, "--period"), period_option(to, "--to") if to else None)
    ws = _ws(home).require()
    try:
        spec = find_report(ws.home, name)
    except BillingError as err:
        raise typer.BadParameter(str(err), param_hint="ОТЧЁТ") from None
    if fmt == "png" and spec.chart is None:
        raise typer.BadParameter(f"у отчёта «{name}» нет графика: table, csv или xlsx", param_hint="--format")
    result = run_report(ws, spec, periods, org, given)
    inputs = {"report": name, "file": str(spec.path), "period": periods[0], "to": periods[-1], "org": org,
              "format": fmt, "params": result.params}
    if fmt == "table":
        _audit(ws, "report", inputs=inputs, outputs={"rows": result.frame.height})
        _say(f"{spec.title}: {periods[0]}" + (f" — {periods[-1]}" if len(periods) > 1 else "")
             + (f", организация {org}" if org else ""))
        _say(table_text(result))
        return
    from datetime import datetime
    from datetime import time as day_time

    from pipeline.dates import Period
    from pipeline.workspace import atomic_write_bytes

    path = (out or ws.home / "reports" / f"{name}-{result.span}{f'-{org}' if org else ''}.{fmt}").resolve()
    if fmt == "csv":
        data = csv_bytes(result)
    elif fmt == "png":
        data = png_bytes(result)
    else:  # stamped with the last period's last day: the same data gives the same bytes
        from pipeline.sqlreports import xlsx_bytes

        created = datetime.combine(Period.parse(periods[-1]).last, day_time())
        data = xlsx_bytes(result, created, template_path(ws.home, name))
    atomic_write_bytes(path, data)
    _audit(ws, "report", inputs=inputs, outputs=[str(path)])
    _say(f"{spec.title}: записано строк {result.frame.height} — {path}")


@report_app.command("list")
def report_list(home: HomeOpt = None) -> None:
    """Список отчётов: встроенные и свои (HOME/reports/ИМЯ.sql) с названиями."""
    from pipeline.sqlreports import reports

    ws = _ws(home)
    catalogue = reports(ws.home)
    _say("Отчёты (billing report ИМЯ --period ГГГГ-ММ [--to ГГГГ-ММ] [--org ОРГАНИЗАЦИЯ]):")
    width = max([len(n) for n in catalogue.reports] + [4])
    _say(f"  {'osv'.ljust(width)}  Оборотно-сальдовая ведомость (--by account|building|supplier)")
    _say(f"  {'card'.ljust(width)}  Карточка лицевого счёта (billing report card СЧЁТ …)")
    for name, spec in catalogue.reports.items():
        where = "" if spec.builtin else f"  [{spec.path}]"
        chart = " (есть график: --format png)" if spec.chart else ""
        _say(f"  {name.ljust(width)}  {spec.title}{chart}{where}")
    for path in catalogue.ignored:
        _say(f"Файл {path} не используется: так называется встроенный отчёт — переименуйте файл.")


@migrate_app.command("load")
def migrate_load_cmd(
    directory: Annotated[Path | None, typer.Argument(
        metavar="КАТАЛОГ", help="Выгрузка прежней системы с mapping.toml (по умолчанию HOME/migration)."
    )] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Загрузить исправленную выгрузку заново (пока не закрыт ни один обычный период).")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Загрузить историю прежней системы, закрыть её месяцы как перенесённые и сверить сальдо."""
    from pipeline.migrate.run import migrate_load

    ws = _ws(home).require()
    r = migrate_load(ws, directory.resolve() if directory else None, replace=replace)
    _say(f"История перенесена{f' из «{r.source}»' if r.source else ''}: {r.months[0]} — {r.months[-1]} "
         f"(месяцев: {len(r.months)})")
    for name, count in r.rows.items():
        if count:
            _say(f"  {name:<24} строк: {count}")
    if r.rejected:
        _say(f"Отклонено строк: {r.rejected}; отчёт: {r.rejects_path}")
    _say(f"Закрыто перенесённых периодов: {len(r.periods)}")
    steps = {"read": "чтение", "seal": "месяцы", "save": "сохранение", "reconcile": "сверка"}
    _say("Время, с: " + ", ".join(f"{title} {seconds_text(r.seconds[k])}" for k, title in steps.items()
                                  if k in r.seconds))
    _migrate_verdict(r.differences, r.difference_kop, r.reports, home)


def _migrate_verdict(count: int, kop: int, reports: list[Path], home: Path | None) -> None:
    if not count:
        _say("Сверка: расхождений нет — можно закрывать первый период.")
        return
    _say(f"Сверка: расхождений {count} на {_rub(kop)} (по модулю); отчёты:")
    for path in reports:
        _say(f"  {path}")
    _say("Первое закрытие не начнётся, пока расхождения не устранены (исправьте выгрузку и "
         f"billing migrate load --replace{_home_hint(home)}) или не приняты с причиной "
         f"(billing migrate accept --reason \"…\"{_home_hint(home)}).")


@migrate_app.command("report")
def migrate_report(home: HomeOpt = None) -> None:
    """Повторить сверку перенесённой истории и переписать её отчёты."""
    from pipeline.migrate.reconcile import reconcile
    from pipeline.workspace import workspace_lock

    ws = _ws(home).require()
    with workspace_lock(ws, "migrate report"):
        found = reconcile(ws)
    _audit(ws, "migrate report", outputs={"differences": found.differences.height,
                                          "difference_kop": found.total_abs_kop, "counts": found.counts})
    _migrate_verdict(found.differences.height, found.total_abs_kop, [found.xlsx_path, found.pdf_path], home)


@migrate_app.command("accept")
def migrate_accept(
    reason: Annotated[str, typer.Option("--reason", metavar="ТЕКСТ", help="Почему расхождения принимаются.")],
    home: HomeOpt = None,
) -> None:
    """Принять расхождения сверки с причиной (записывается в журнал) — первое закрытие разрешено."""
    from pipeline.migrate.reconcile import accept
    from pipeline.workspace import workspace_lock

    ws = _ws(home).require()
    with workspace_lock(ws, "migrate accept"):
        done = accept(ws, reason)
    _say(f"Расхождения приняты ({done.get('differences', 0)}): {reason}")


@migrate_app.command("compare")
def migrate_compare(
    file: Annotated[Path, typer.Argument(metavar="ФАЙЛ", help="Начисления прежней системы за этот месяц.")],
    period: Annotated[str, typer.Option("--period", metavar=PERIOD_METAVAR, help=f"Период: {PERIOD_FORMS}.")],
    home: HomeOpt = None,
) -> None:
    """Параллельный расчёт: сравнить наше закрытие месяца с начислениями прежней системы построчно."""
    from pipeline.migrate.compare import KINDS, compare_period

    period = period_option(period, "--period")
    ws = _ws(home).require()
    found = compare_period(ws, period, file.resolve())
    diff = found.differences
    _audit(ws, "migrate compare", inputs={"period": period, "file": str(file)},
           outputs={"differences": diff.height, "report": str(found.report)})
    _say(f"Период {period}: строк у нас {found.lines_ours}, в прежней системе {found.lines_theirs}; "
         f"расхождений {diff.height}")
    if found.rejects.height:
        _say(f"  строк файла отклонено: {found.rejects.height} (не сравнивались)")
    for r in diff.head(20).iter_rows(named=True):
        ours = _rub(r["ours_kop"]) if r["ours_kop"] is not None else "—"
        theirs = _rub(r["theirs_kop"]) if r["theirs_kop"] is not None else "—"
        _say(f"  {r['account_id']} {r['service_id']} ({r['supplier_id']}): {KINDS[r['kind']]}; "
             f"у нас {ours}, в прежней системе {theirs}")
    if diff.height > 20:
        _say(f"  … и ещё {diff.height - 20}")
    _say(f"Отчёт с объяснением каждой строки: {found.report}")


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
    groups = (["payments"], ["report"], ["migrate"], ["collect"], ["receipts"], ["export"], ["import"])
    command = " ".join(words[:2] if words[:1] in groups else words[:1]) or "billing"
    with contextlib.suppress(OSError):
        _audit(ws, command, status="error", argv=sys.argv[1:],
               error=str(error) if isinstance(error, BillingError) else repr(error))


def main() -> None:
    # pandera imports hypothesis (≈ 0.1 s) to offer data strategies, which no command uses; it
    # is a test dependency and absent from a production install. Never for a process that
    # already has it (this guard runs only in the `billing` process itself).
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as err:
        err.show()
        sys.exit(err.exit_code)
    except UsageError as err:
        from pipeline.cliargs import usage_report

        typer.echo(usage_report(err), err=True)
        sys.exit(err.exit_code)
    except ClickException as err:
        typer.echo(f"Ошибка: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except typer.Abort:
        typer.echo("Прервано.", err=True)
        sys.exit(1)
    except BillingError as err:
        _audit_failure(err)
        typer.echo(f"Ошибка: {err}", err=True)
        sys.exit(1)
    except Exception as err:
        _audit_failure(err)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
