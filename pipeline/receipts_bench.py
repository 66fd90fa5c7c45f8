"""``billing bench --receipts N``: receipts a second through the pipeline against a bare loop.

:func:`receipts_bench` builds ``N`` demo receipts from a real close of a synthetic city
(:func:`demo_receipts`: generate, ingest, compute one month, :func:`build_receipts`, no
seal), then, in the same run and with the same pool size, renders them twice:

- the pipeline: :func:`pipeline.render.receipts.render_receipts` (``batches=False``);
- the bare loop: the same receipts' finished HTML (QR codes included, made before the
  clock starts) through ``weasyprint.HTML(string=…).write_pdf()`` with the receipt's CSS
  parsed on every call, default user-agent stylesheet and font configuration, in a
  ``forkserver`` pool of the same size — what a naive user would write.

Both clocks include the pool's start-up (forkserver, worker start, WeasyPrint import
in the worker), as ``render_receipts`` cannot be timed without it; with one worker both
run in this process, WeasyPrint already imported. Peak memory per worker is the
``VmHWM`` of the pool's processes, polled from ``/proc`` every 0.1 s while they run
(:class:`_PeakWatch`), with their CPU seconds; in this process (one worker) it is this
process's ``VmHWM`` after resetting it through ``/proc/self/clear_refs`` (``None`` where
that is refused) and its ``getrusage`` CPU time.

:func:`profile_receipt` splits one receipt's time in one process into templating, QR
codes, HTML parsing, style + layout and PDF writing (wall milliseconds, no profiler),
with cProfile's view of the style/box/layout split (CPU time of this process).
"""

from __future__ import annotations

import cProfile
import multiprocessing
import os
import pstats
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from pipeline.render.receipts import CSS_PATH, TEMPLATES_DIR, Receipt, render_html, render_receipts

__all__ = ["demo_receipts", "profile_receipt", "receipts_bench", "receipts_summary"]

Say = Callable[[str], None]

#: Fewer accounts make a city too small to show every kind of receipt.
MIN_CITY_ACCOUNTS = 60


def _quiet(_: str) -> None:
    pass


def demo_receipts(n: int, home: Path | None = None, say: Say = _quiet) -> list[Receipt]:
    """The first ``n`` receipts of the first month of a synthetic city, as a close builds them.

    The city has ``max(n + n // 5, 60)`` accounts (organization payers get invoices, not
    receipts); it is built in ``home`` (which must be empty or an earlier demo) or in a
    temporary folder removed afterwards. Raises ``ValueError`` when the city gives fewer.
    """
    from pipeline.close import compute, load_inputs
    from pipeline.dates import Period
    from pipeline.demo import fresh_demo_home
    from pipeline.ingest.registers import ingest
    from pipeline.render.build import workspace_receipts
    from pipeline.synth import generate_city
    from pipeline.workspace import Workspace

    tmp = None
    if home is None:
        tmp = Path(tempfile.mkdtemp(prefix="billing-rcptbench-"))
        home = tmp / "home"
    try:
        ws = fresh_demo_home(Workspace(home))
        first = Period(2026, 8)
        accounts = max(n + n // 5, MIN_CITY_ACCOUNTS)
        say(f"демо-город: лицевых счетов {accounts}, закрытие {first} без PDF")
        generate_city(ws.home, accounts=accounts, start=first, months=1)
        ingest(ws)
        inputs = load_inputs(ws, first)
        result = compute(inputs)
        regs = inputs.registers()
        receipts = list(islice(workspace_receipts(
            ws, result, regs, inputs.rules.services, inputs.rules.legal_thresholds), n))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if len(receipts) < n:
        raise ValueError(f"в демо-городе только {len(receipts)} квитанций, нужно {n}")
    return receipts


# --------------------------------------------------------------------------- bare loop


def _bare_render(job: tuple[str, str]) -> str:
    """One bare render: HTML string → PDF, CSS parsed per call, WeasyPrint's defaults."""
    import weasyprint

    html, path = job
    weasyprint.HTML(string=html, base_url=str(TEMPLATES_DIR) + os.sep).write_pdf(
        path, stylesheets=[weasyprint.CSS(filename=str(CSS_PATH))])
    return path


def _bare_loop(jobs: Sequence[tuple[str, str]], workers: int) -> None:
    if workers <= 1:
        for job in jobs:
            _bare_render(job)
        return
    context = multiprocessing.get_context("forkserver")
    with context.Pool(workers) as pool:
        for _ in pool.imap_unordered(_bare_render, jobs):
            pass


# --------------------------------------------------------------------------- memory


def _hwm_kb(pid: int | str) -> int | None:
    """``VmHWM`` (peak resident set) of a process, KiB; ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _proc_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (``fields[1]`` is the ppid)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: the state follows the last ")"
    return stat[stat.rfind(")") + 2:].split()


def _cpu_ticks(pid: int | str) -> int | None:
    """User + system CPU of a process so far, clock ticks; ``None`` if it is gone."""
    fields = _proc_stat(pid)
    return int(fields[11]) + int(fields[12]) if fields and len(fields) > 12 else None


def _grandchildren(root: int) -> set[int]:
    """Processes whose parent is a child of ``root`` (forkserver pool workers)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _proc_stat(entry)) and len(fields) > 1:
            parents[int(entry)] = int(fields[1])
    children = {pid for pid, ppid in parents.items() if ppid == root}
    return {pid for pid, ppid in parents.items() if ppid in children}


class _PeakWatch:
    """Polls ``VmHWM`` and CPU time of this process's grandchildren (pool workers) while it runs."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self.ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-watch", daemon=True)

    def _poll(self) -> None:
        for pid in _grandchildren(os.getpid()):
            kb, ticks = _hwm_kb(pid), _cpu_ticks(pid)
            if kb is not None:
                self.peaks[pid] = max(kb, self.peaks.get(pid, 0))
            if ticks is not None:
                self.ticks[pid] = max(ticks, self.ticks.get(pid, 0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def __enter__(self) -> _PeakWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _reset_own_peak() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ≥ 4.0); ``False`` if refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def _worker_usage(workers: int, out: dict[str, Any], key: str) -> Iterator[None]:
    """Put the peak RSS per worker (MB, the largest worker's), the workers seen and their
    CPU seconds in ``out`` as ``{key}_peak_rss_mb``, ``{key}_workers_seen``, ``{key}_cpu_seconds``."""
    if workers <= 1:
        ok = _reset_own_peak()
        cpu0 = _own_cpu()
        yield
        kb = _hwm_kb("self") if ok else None
        out[f"{key}_cpu_seconds"] = round(_own_cpu() - cpu0, 2)
        out[f"{key}_peak_rss_mb"] = None if kb is None else round(kb / 1024, 1)
        out[f"{key}_workers_seen"] = 0
        return
    with _PeakWatch() as watch:
        yield
    peaks = [kb for pid, kb in watch.peaks.items() if pid != os.getpid()]
    out[f"{key}_cpu_seconds"] = round(sum(watch.ticks.values()) / os.sysconf("SC_CLK_TCK"), 2)
    out[f"{key}_peak_rss_mb"] = round(max(peaks) / 1024, 1) if peaks else None
    out[f"{key}_workers_seen"] = len(peaks)


# --------------------------------------------------------------------------- bench


def _pages(path: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(path).pages)


def receipts_bench(n: int, workers: int, home: Path | None = None, say: Say = _quiet) -> dict[str, Any]:
    """Render ``n`` demo receipts through the pipeline and through the bare loop; the report.

    Keys: ``n``, ``workers``, ``pipeline_seconds``, ``pipeline_per_second``,
    ``bare_seconds``, ``bare_per_second``, ``ratio`` (pipeline rate over bare rate),
    ``pipeline_peak_rss_mb`` and ``bare_peak_rss_mb`` (largest worker's ``VmHWM``; with
    one worker this process's), ``pipeline_pdfs``/``bare_pdfs`` (files written),
    ``pages_per_receipt``, ``html_seconds`` (the bare loop's HTML, made beforehand),
    ``startup`` (what both clocks include), ``pipeline_cpu_seconds``/``bare_cpu_seconds``
    (user + system CPU of the workers, or of this process with one worker) and
    ``cpu_ratio`` (bare CPU over pipeline CPU: steadier than ``ratio`` on a shared machine).
    ``home`` is where the demo city is built.
    """
    if n < 1 or workers < 1:
        raise ValueError("n и workers должны быть ≥ 1")
    from pipeline.render.receipts import check_pdf_stack

    check_pdf_stack()  # WeasyPrint imported here before either clock, for one worker
    receipts = demo_receipts(n, home=home, say=say)
    tmp = Path(tempfile.mkdtemp(prefix="billing-rcptbench-"))
    report: dict[str, Any] = {"n": n, "workers": workers}
    try:
        t = time.perf_counter()
        htmls = [render_html(r) for r in receipts]
        report["html_seconds"] = round(time.perf_counter() - t, 3)
        bare_dir = tmp / "bare"
        bare_dir.mkdir()
        jobs = [(html, str(bare_dir / f"{r.account_id}.pdf"))
                for r, html in zip(receipts, htmls, strict=True)]
        del htmls

        say(f"конвейер: квитанций {n}, процессов {workers}")
        with _worker_usage(workers, report, "pipeline"):
            t = time.perf_counter()
            rendered = render_receipts(receipts, tmp / "pipe", workers=workers, batches=False)
            pipe_s = time.perf_counter() - t
        say(f"простой цикл WeasyPrint: квитанций {n}, процессов {workers}")
        with _worker_usage(workers, report, "bare"):
            t = time.perf_counter()
            _bare_loop(jobs, workers)
            bare_s = time.perf_counter() - t

        pipe_pdfs = sorted((tmp / "pipe").glob("*.pdf"))
        bare_pdfs = sorted(bare_dir.glob("*.pdf"))
        pages = [_pages(p) for p in pipe_pdfs]
        report.update(
            pipeline_seconds=round(pipe_s, 3),
            pipeline_per_second=round(n / pipe_s, 2),
            bare_seconds=round(bare_s, 3),
            bare_per_second=round(n / bare_s, 2),
            ratio=round(bare_s / pipe_s, 2),
            cpu_ratio=round(report["bare_cpu_seconds"] / report["pipeline_cpu_seconds"], 2)
            if report["pipeline_cpu_seconds"] else None,
            pipeline_pdfs=len(pipe_pdfs),
            pipeline_count=rendered.count,
            bare_pdfs=len(bare_pdfs),
            pages_per_receipt=round(sum(pages) / len(pages), 2) if pages else 0.0,
            startup="included" if workers > 1 else "in-process",
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _decimal(value: float, places: int = 1) -> str:
    return f"{value:.{places}f}".replace(".", ",")


def receipts_summary(report: dict[str, Any]) -> list[str]:
    """The Russian lines ``billing bench --receipts`` prints."""
    workers = report["workers"]
    processes = "1 процесс" if workers == 1 else (
        f"{workers} процесса" if 2 <= workers % 10 <= 4 and not 12 <= workers % 100 <= 14
        else f"{workers} процессов")
    lines = [
        f"Квитанции: конвейер {_decimal(report['pipeline_per_second'])} в секунду, простой цикл "
        f"WeasyPrint {_decimal(report['bare_per_second'])} в секунду, отношение "
        f"{_decimal(report['ratio'])} ({processes})",
        f"  квитанций {report['n']}, страниц в квитанции {_decimal(report['pages_per_receipt'], 2)}; "
        f"конвейер {_decimal(report['pipeline_seconds'], 2)} с, простой цикл "
        f"{_decimal(report['bare_seconds'], 2)} с "
        + ("(с запуском процессов)" if report.get("startup") == "included" else "(в этом процессе)"),
    ]
    if report.get("cpu_ratio"):
        lines.append(f"  процессорное время: конвейер {_decimal(report['pipeline_cpu_seconds'], 2)} с, "
                     f"простой цикл {_decimal(report['bare_cpu_seconds'], 2)} с, отношение "
                     f"{_decimal(report['cpu_ratio'])}")
    peaks = [(label, report.get(f"{key}_peak_rss_mb")) for label, key in
             (("конвейер", "pipeline"), ("простой цикл", "bare"))]
    if any(mb is not None for _, mb in peaks):
        where = "процесса" if workers == 1 else "процесса-исполнителя"
        lines.append(f"  пик памяти {where}: " + ", ".join(
            f"{label} {'—' if mb is None else _decimal(mb, 0)} МБ" for label, mb in peaks))
    return lines


# --------------------------------------------------------------------------- profile


#: WeasyPrint functions whose cumulative cProfile time splits ``HTML.render``.
_RENDER_PARTS = {
    "style (cascade)": ("css/__init__.py", "get_all_computed_styles"),
    "boxes": ("formatting_structure/build.py", "build_formatting_structure"),
    "layout": ("layout/__init__.py", "layout_document"),
}


def profile_receipt(receipts: Sequence[Receipt], out_dir: Path, repeat: int = 1) -> dict[str, Any]:
    """Where one receipt's time goes, in this process, warm: CPU milliseconds per receipt.

    Every receipt of ``receipts`` is rendered ``repeat`` times (after one warm-up render)
    with :mod:`pipeline.render.receipts`'s own engine, phase by phase: ``html`` (view and
    template, QR codes excluded), ``qr`` (``qr_data_uri``), ``parse`` (``HTML(string=…)``),
    ``render`` (style, boxes and layout), ``write_pdf``. Then one more pass under cProfile
    gives ``render_split``: the shares of ``render`` in style, boxes and layout.

    The clock is this process's CPU time (``time.process_time``; rendering is one thread):
    on a shared machine wall time mostly measures the other processes. ``wall_ms`` is the
    wall time per receipt of the same passes, for comparison.
    """
    from pipeline.render import receipts as rmod

    clock = time.process_time
    engine = rmod.pdf_engine()
    base_url = str(TEMPLATES_DIR) + os.sep
    qr_seconds = [0.0]
    real_qr = rmod.qr_data_uri

    def timed_qr(*args: Any, **kwargs: Any) -> str:
        t = clock()
        try:
            return real_qr(*args, **kwargs)
        finally:
            qr_seconds[0] += clock() - t

    totals = dict.fromkeys(("html", "qr", "parse", "render", "write_pdf"), 0.0)
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(receipt: Receipt) -> None:
        qr_seconds[0] = 0.0
        t0 = clock()
        html = render_html(receipt)
        t1 = clock()
        doc = engine.html_cls(string=html, base_url=base_url)
        t2 = clock()
        document = doc.render(stylesheets=[engine.css], font_config=engine.font_config)
        t3 = clock()
        document.write_pdf(out_dir / f"{receipt.account_id}.pdf")
        t4 = clock()
        totals["qr"] += qr_seconds[0]
        totals["html"] += t1 - t0 - qr_seconds[0]
        totals["parse"] += t2 - t1
        totals["render"] += t3 - t2
        totals["write_pdf"] += t4 - t3

    rmod.qr_data_uri = timed_qr  # restored below
    wall = 0.0
    try:
        with rmod.relaxed_gc():
            one(receipts[0])  # warm-up: template compile, font loading
            totals = dict.fromkeys(totals, 0.0)
            wall = time.perf_counter()
            for _ in range(repeat):
                for receipt in receipts:
                    one(receipt)
            wall = time.perf_counter() - wall
            measured = dict(totals)  # the profiled pass below adds to ``totals``: not counted
            profiler = cProfile.Profile()
            profiler.enable()
            for receipt in receipts:
                one(receipt)
            profiler.disable()
    finally:
        rmod.qr_data_uri = real_qr
    count = len(receipts) * repeat
    ms = {k: round(v * 1000 / count, 1) for k, v in measured.items()}
    ms["total"] = round(sum(measured.values()) * 1000 / count, 1)
    stats = pstats.Stats(profiler)
    cum: dict[str, float] = {}
    render_cum = 0.0
    for (filename, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        if name == "render" and filename.endswith("weasyprint/__init__.py"):
            render_cum += row[3]
        for label, (suffix, func) in _RENDER_PARTS.items():
            if name == func and filename.endswith(suffix):
                cum[label] = cum.get(label, 0.0) + row[3]
    split = {label: round(cum.get(label, 0.0) / render_cum, 2) if render_cum else 0.0
             for label in _RENDER_PARTS}
    return {"receipts": len(receipts), "repeat": repeat, "ms_per_receipt": ms,
            "wall_ms": round(wall * 1000 / count, 1), "render_split": split}
