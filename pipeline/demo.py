"""``billing demo`` and ``billing bench``: a synthetic city billed month after month.

Both build a city with :mod:`pipeline.synth`, ingest it and close consecutive
months; between closes the payers pay what their last receipt asked (a
deterministic share of them partly or not at all), through an agent file in
``inbox/`` imported like a night's payments. ``demo`` goes through the Prefect
flow and renders receipts; ``bench`` calls the stages directly, skips PDFs and
reports time and peak memory per step.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.dates import Period, month_periods
from pipeline.workspace import BillingError, Workspace, audit, init_workspace

DEMO_MARKER = ".billing-demo"

Say = Callable[[str], None]


def _fresh_demo_home(ws: Workspace) -> Workspace:
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
    agents' as a plain CSV, as they would in production.
    """
    from pipeline.ingest.bank_formats import write_sber_register
    from pipeline.ingest.registers import load_store
    from pipeline.synth import generate_payments, write_payments_csv

    balances = ws.period_dir(str(bill)) / "balances.parquet"
    due = pl.read_parquet(balances).group_by("account_id").agg(
        (pl.col("closing").sum() * 100).cast(pl.Int64).alias("to_pay")
    )
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
    return path


def _pay_and_import(ws: Workspace, bill: Period) -> None:
    from pipeline.ingest.payments import import_inbox

    _pay_last_bill(ws, bill, 2026)
    import_inbox(ws)


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_demo(ws: Workspace, accounts: int, months: int, start: str, receipts: bool, seed: int,
             say: Say) -> None:
    from pipeline.cli import _print_close, run_close
    from pipeline.ingest.payments import import_inbox
    from pipeline.ingest.registers import ingest
    from pipeline.synth import generate_city

    first = Period.parse(start)
    started = time.perf_counter()
    ws = _fresh_demo_home(ws)
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
    for period in month_periods(first, months):
        if period != first:
            path = _pay_last_bill(ws, period.shift(-1), seed)
            if path is not None:
                for info in import_inbox(ws):
                    audit(ws, "payments import", outputs=info)
                    say(f"  платежи {info['file']}: принято {info.get('accepted', 0)}"
                        + (f", невыясненных {info['suspense']}" if info.get("suspense") else ""))
        summary = run_close(ws, str(period), receipts=receipts)
        _print_close(summary, dry_run=False)
    last = month_periods(first, months)[-1]
    example = pl.read_parquet(ws.period_dir(str(last)) / "charges.parquet").filter(
        pl.col("method") == "norm_increased"
    )["account_id"]
    say("")
    say(f"Готово за {time.perf_counter() - started:.0f} с. Где что лежит:")
    say(f"  закрытые периоды: {ws.periods}/ГГГГ-ММ (таблицы Parquet, manifest.json)")
    if receipts:
        say(f"  квитанции: {ws.period_dir(str(last))}/receipts/ (PDF на каждый счёт, "
            "пачки для печати в receipts/batches/)")
    say(f"  отклонённые строки: {ws.rejects}")
    say(f"  журнал операций: {ws.audit}/log.jsonl")
    say("Попробуйте:")
    say(f"  billing sql --home {ws.home} \"select period, method, count(*), sum(amount) "
        "from charges group by all order by all\"")
    if example.len():
        say(f"  billing explain {example[0]} --period {last} --home {ws.home}")


def run_bench(accounts: int, months: int, ws: Workspace | None, say: Say) -> dict[str, Any]:
    """Generate, ingest and close ``months`` periods without PDFs; time every step."""
    from pipeline.close import compute, load_inputs, seal
    from pipeline.ingest.registers import ingest
    from pipeline.synth import generate_city

    tmp = None
    if ws is None:
        tmp = Path(tempfile.mkdtemp(prefix="billing-bench-"))
        ws = Workspace(tmp / "home")
    ws = _fresh_demo_home(ws)
    first = Period(2026, 8)
    report: dict[str, Any] = {"accounts": accounts, "months": months, "steps": []}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        report["steps"].append({"step": name, "seconds": round(time.perf_counter() - t, 2),
                                "peak_rss_mb": _peak_mb()})
        say(f"  {name}: {report['steps'][-1]['seconds']} с")
        return out

    try:
        step("generate_city", partial(generate_city, ws.home, accounts=accounts, start=first,
                                      months=months))
        step("ingest", partial(ingest, ws))
        for period in month_periods(first, months):
            if period != first:
                step(f"payments {period}", partial(_pay_and_import, ws, period.shift(-1)))
            inputs = step(f"load {period}", partial(load_inputs, ws, period))
            result = step(f"compute {period}", partial(compute, inputs))
            step(f"seal {period}", partial(seal, ws, result, inputs))
            report.setdefault("charge_lines", []).append(result.lines.height)
        report["peak_rss_mb"] = _peak_mb()
        close_steps = [s for s in report["steps"] if s["step"].split()[0] in ("load", "compute", "seal")]
        report["close_seconds_per_month"] = round(sum(s["seconds"] for s in close_steps) / months, 2)
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
    from pipeline.ingest.bank_formats import write_sber_register
    from pipeline.ingest.payments import import_payment_file
    from pipeline.ingest.registers import ingest
    from pipeline.synth import generate_city

    tmp = Path(tempfile.mkdtemp(prefix="billing-paybench-"))
    ws = _fresh_demo_home(Workspace(tmp / "home"))
    report: dict[str, Any] = {"accounts": accounts, "payments": payments}
    try:
        first = Period(2026, 8)
        generate_city(ws.home, accounts=accounts, start=first, months=2)
        ingest(ws)
        inputs = load_inputs(ws, first)
        seal(ws, compute(inputs), inputs)
        due = pl.read_parquet(ws.period_dir(str(first)) / "balances.parquet").group_by(
            "account_id").agg((pl.col("closing").sum() * 100).cast(pl.Int64).alias("to_pay"))
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
        t = time.perf_counter()
        apply_period(inputs.open_items, out.lines, inputs.payments, str(first.shift(1)))
        report["allocation_seconds"] = round(time.perf_counter() - t, 2)
        report["peak_rss_mb"] = _peak_mb()
        say(f"  импорт {result.accepted} платежей: {report['import_seconds']} с; "
            f"распределение: {report['allocation_seconds']} с")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report
