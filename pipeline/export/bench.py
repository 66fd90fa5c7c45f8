"""``billing bench --exports --accounts N``: every export of a sealed month of a synthetic city, timed.

A city of ``N`` accounts is generated, given ГИС ЖКХ identifiers (every account an
``AccountGuid`` and ЕЛС, every meter a device GUID, every service a dictionary entry — synthetic,
so that every document is built and validated, not left out), ingested and its first month
closed without PDFs (as ``billing bench`` does); the workspace gets a Sber-layout and a
CSV-layout bank agent. Then each
export (banks, post, gis, welfare) is built and written as ``billing export KIND`` does, with wall
and CPU seconds and the peak RSS so far.

Machines of one kind differ by about 2× and are shared, so each export's time is given beside a
bare baseline measured in the same run: the sealed ``balances`` table read with Polars and written
as CSV to memory (the least any export of that period does), and its ratio to that. Beside each
export also the second floor, the disk's: its own number of files of its own sizes written and
flushed (``fsync``) by the writer's threads, with nothing built — what a large export cannot go
below on that machine.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.workspace import Workspace

__all__ = ["KINDS", "exports_bench", "exports_summary"]

#: The exports timed, in order.
KINDS = ("banks", "post", "gis", "welfare")

Say = Callable[[str], None]


def _agents(ws: Workspace) -> None:
    """Two bank agents for the bench: the Sber layout for the manager, a CSV for the post."""
    import polars as pl

    orgs = pl.read_csv(ws.registers / "organizations.csv", infer_schema=False)
    managers = orgs.filter(pl.col("role") == "management")["org_id"].to_list()
    org = managers[0] if managers else orgs["org_id"][0]
    with open(ws.settings_path, "a", encoding="utf-8") as fh:
        fh.write(f'\n[[banks.agents]]\ncode = "sber"\nlayout = "sber"\norg_id = "{org}"\n'
                 '\n[[banks.agents]]\ncode = "post"\nlayout = "csv"\n')


#: gis_nsi kind of each services.csv kind in the bench's synthetic dictionary (capital repair is
#: charged by its own block of the form, not written yet: as an additional service here).
_NSI_KIND = {"area": "housing", "fixed": "additional", "metered": "municipal", "sewerage": "municipal",
             "heating": "municipal", "per_person": "municipal", "common_property": "municipal"}


def _gis_ids(ws: Workspace) -> None:
    """Synthetic ГИС ЖКХ identifiers for every account, meter and service of the city."""
    import uuid

    import polars as pl

    ns = uuid.UUID("8d1c7c43-5d2b-4f4e-9a52-0c1b8a7e6f10")

    def guid(kind: str) -> pl.Expr:
        return pl.col("key").map_elements(lambda k: str(uuid.uuid5(ns, f"{kind}/{k}")),
                                          return_dtype=pl.String)

    accounts = pl.read_csv(ws.registers / "accounts.csv", infer_schema=False).select(
        pl.col("account_id").alias("key"))
    accounts.select(
        pl.col("key").alias("account_id"), pl.lit("").alias("service_id"),
        pl.col("key").hash(1).cast(pl.String).str.slice(0, 10).str.zfill(10).alias("els"),
        pl.lit("").alias("izhku"), pl.lit("2020-01-01").alias("from"), guid("account").alias("account_guid"),
    ).write_csv(ws.registers / "gis_ids.csv")
    meters = pl.read_csv(ws.registers / "meters.csv", infer_schema=False)
    meters.filter(pl.col("premise_id").fill_null("") != "").select(
        pl.col("meter_id").alias("key"), pl.col("service_id")).select(
        pl.col("key").alias("meter_id"), guid("meter").alias("device_guid"),
        pl.when(pl.col("service_id").str.starts_with("electricity")).then(pl.lit("electric"))
        .otherwise(pl.lit("one_rate")).alias("value_kind"), pl.lit("2020-01-01").alias("from"),
    ).write_csv(ws.registers / "gis_meter_ids.csv")
    services = pl.read_csv(ws.rules / "services.csv", infer_schema=False).select("service_id", "name", "kind")
    rows = [{"kind": _NSI_KIND.get(s["kind"], "additional"), "service_id": s["service_id"],
             "supplier_id": "", "code": str(n), "name": s["name"]}
            for n, s in enumerate(services.iter_rows(named=True), start=1)]
    rows += [{"kind": "resource", "service_id": s["service_id"], "supplier_id": "", "code": str(n),
              "name": s["name"]} for n, s in enumerate(services.iter_rows(named=True), start=1)
             if s["kind"] == "metered"]
    rows.append({"kind": "penalty", "service_id": "", "supplier_id": "", "code": "1", "name": "Пени"})
    pl.DataFrame(rows).with_columns(pl.concat_str("kind", pl.lit("/"), "service_id").alias("key")).select(
        "kind", "service_id", "supplier_id", "code", guid("nsi").alias("guid"), "name",
        pl.lit("2020-01-01").alias("from"),
    ).write_csv(ws.registers / "gis_nsi.csv")


def _bare(ws: Workspace, period: str) -> float:
    """Seconds to read the period's balances and write them as CSV to memory."""
    from pipeline.sealed import read_internal

    started = time.perf_counter()
    read_internal(ws.period_dir(period), "balances").write_csv()
    return time.perf_counter() - started


def _bare_write(folder: Path, sizes: list[int]) -> float:
    """Seconds to write files of ``sizes`` bytes into ``folder`` and flush each to disk, with the
    threads of :func:`pipeline.export.write_exports`; the files are removed after."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.export import WRITER_THREADS

    block = os.urandom(1 << 20)  # incompressible, as a disk of a host may compress
    folder.mkdir(parents=True, exist_ok=True)

    def put(n: int, size: int) -> None:
        with open(folder / f".bare-{n}.tmp", "wb") as fh:
            for start in range(0, size, len(block)):
                fh.write(block[:min(len(block), size - start)])
            fh.flush()
            os.fsync(fh.fileno())

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(WRITER_THREADS) as pool:
            list(pool.map(put, range(len(sizes)), sizes))
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _tree_cpu(own: Callable[[], float]) -> float:
    """CPU seconds of this process, its children and the ``forkserver``'s finished workers (a pool's
    workers are the forkserver's children: :func:`pipeline.bench.cpu_seconds` misses them until it
    exits). Linux ``/proc``; elsewhere only ``own()``."""
    import os
    from multiprocessing import forkserver

    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    extra = 0.0
    if pid:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            extra = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
        except (OSError, ValueError, IndexError):
            extra = 0.0
    return own() + extra


def _gis_with(ws: Workspace, period: str, mode: str) -> Any:
    """The ГИС ЖКХ files as ``billing export gis`` makes them, but validated as ``mode`` says."""
    from dataclasses import replace

    from pipeline.export.gis import build_files, load_limits

    return build_files(ws, period, replace(load_limits(ws.rules), validate=mode))


def exports_bench(accounts: int, ws: Workspace | None = None, say: Say = lambda _: None,
                  gis_modes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Close one month of an ``accounts``-account city and time every export of it.

    ``gis_modes``: the ГИС ЖКХ export again with each of these ``[limits] validate`` modes
    (``all``, ``shapes``, ``sample``), written beside the first (``exports/gis-MODE/``), each a
    row of its own; the ``gis`` row is the workspace's own setting (``validate`` in the row).
    """
    from pipeline.bench import cpu_seconds, peak_rss_mb
    from pipeline.demo import run_bench
    from pipeline.export import write_exports
    from pipeline.export.gis import load_limits

    tmp = None
    if ws is None:
        tmp = Path(tempfile.mkdtemp(prefix="billing-exportbench-"))
        ws = Workspace(tmp / "home")
    try:
        closed = run_bench(accounts=accounts, months=1, ws=ws, say=say, prepare=_gis_ids)
        period = "2026-08"
        _agents(ws)
        bare = min(_bare(ws, period) for _ in range(3))
        say(f"голый CSV остатков: {bare:.2f} с")
        rows: list[dict[str, Any]] = []
        runs: list[tuple[str, Callable[[], Any]]] = [
            (kind, partial(importlib.import_module(f"pipeline.export.{kind}").build_files, ws, period))
            for kind in KINDS]
        runs[KINDS.index("gis") + 1:KINDS.index("gis") + 1] = [
            (f"gis-{mode}", partial(_gis_with, ws, period, mode)) for mode in gis_modes]
        for kind, make in runs:
            wall, cpu = time.perf_counter(), _tree_cpu(cpu_seconds)
            report = write_exports(ws, period, kind, make())
            seconds = time.perf_counter() - wall
            names = [*report.written, *report.unchanged]
            used = _tree_cpu(cpu_seconds) - cpu
            sizes = [(report.folder.parent / n).stat().st_size for n in names]
            size = sum(sizes)
            disk = _bare_write(report.folder.parent / f".bare-{kind}.tmp", sizes)
            row = {"kind": kind, "seconds": round(seconds, 2), "cpu_seconds": round(used, 2),
                   "files": len(names), "rows": report.rows, "bytes": size,
                   "peak_rss_mb": round(peak_rss_mb()), "ratio": round(seconds / bare, 1) if bare else None,
                   "disk_seconds": round(disk, 2), "disk_ratio": round(seconds / disk, 1) if disk else None}
            if kind.startswith("gis"):
                row["validate"] = kind[4:] or load_limits(ws.rules).validate
            rows.append(row)
            say(f"выгрузка {kind}: {seconds:.1f} с, файлов {len(names)}, записей {report.rows}, "
                f"{row['ratio']} × голого CSV; запись тех же байтов на диск — {disk:.1f} с")
        return {"accounts": accounts, "period": period, "close_seconds": closed.get("close_seconds"),
                "bare_csv_seconds": round(bare, 3), "exports": rows}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def exports_summary(report: dict[str, Any]) -> list[str]:
    """What ``billing bench --exports`` prints (Russian)."""
    lines = [f"Выгрузки закрытого месяца: лицевых счетов {report['accounts']}, "
             f"голый CSV остатков {report['bare_csv_seconds']} с"]
    for row in report["exports"]:
        mode = f" (проверка по схеме: {row['validate']})" if "validate" in row else ""
        lines.append(f"  {row['kind']:<10} {row['seconds']:>7.1f} с (ЦП {row['cpu_seconds']:.1f} с){mode}, "
                     f"{row['ratio']} × голого, файлов {row['files']}, записей {row['rows']}, "
                     f"{row['bytes'] / 1e6:.1f} МБ, пик памяти {row['peak_rss_mb']} МБ; "
                     f"запись тех же байтов на диск {row['disk_seconds']:.1f} с ({row['disk_ratio']} ×)")
    return lines
