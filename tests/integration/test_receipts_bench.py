"""``billing bench --receipts``: the report of pipeline against bare loop (no timing asserted)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.receipts_bench import _bare_loop, _grandchildren, receipts_bench, receipts_summary
from pipeline.render.receipts import check_pdf_stack

try:
    check_pdf_stack()
except RuntimeError as exc:  # pragma: no cover - the CI image has the stack
    pytest.skip(f"WeasyPrint stack missing: {exc}", allow_module_level=True)

KEYS = {
    "n", "workers", "pipeline_seconds", "pipeline_per_second", "bare_seconds", "bare_per_second",
    "ratio", "pipeline_peak_rss_mb", "bare_peak_rss_mb", "pipeline_pdfs", "bare_pdfs",
    "pages_per_receipt", "startup", "pipeline_cpu_seconds", "bare_cpu_seconds", "cpu_ratio",
}


def test_bench_renders_n_pdfs_each_way(tmp_path: Path) -> None:
    report = receipts_bench(n=3, workers=1, home=tmp_path / "city")
    assert set(report) >= KEYS
    assert (report["n"], report["workers"]) == (3, 1)
    assert report["pipeline_pdfs"] == report["bare_pdfs"] == report["pipeline_count"] == 3
    assert report["pages_per_receipt"] >= 1
    assert report["pipeline_seconds"] > 0 and report["bare_seconds"] > 0
    # the ratio is the rates' quotient, whatever the rates are
    expected = report["pipeline_per_second"] / report["bare_per_second"]
    assert report["ratio"] == pytest.approx(expected, rel=0.02)
    assert report["startup"] == "in-process"
    assert report["pipeline_cpu_seconds"] > 0 and report["bare_cpu_seconds"] > 0
    lines = receipts_summary(report)
    assert lines[0].startswith("Квитанции: конвейер ") and "(1 процесс)" in lines[0]


def test_bare_loop_in_a_pool_writes_every_pdf(tmp_path: Path) -> None:
    html = "<html><body><p>Квитанция {}</p></body></html>"
    jobs = [(html.format(i), str(tmp_path / f"{i}.pdf")) for i in range(3)]
    _bare_loop(jobs, workers=2)
    assert sorted(p.name for p in tmp_path.glob("*.pdf")) == ["0.pdf", "1.pdf", "2.pdf"]
    assert all(p.read_bytes().startswith(b"%PDF-") for p in tmp_path.glob("*.pdf"))


def test_grandchildren_are_the_workers_of_a_forkserver_pool() -> None:
    import multiprocessing

    assert os.getpid() not in _grandchildren(os.getpid())
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        workers = {p.pid for p in pool._pool}  # type: ignore[attr-defined]
        assert len(workers) == 2
        assert workers <= _grandchildren(os.getpid())


@pytest.mark.parametrize(("workers", "tail"), [(1, "(1 процесс)"), (2, "(2 процесса)"),
                                                (5, "(5 процессов)"), (12, "(12 процессов)")])
def test_summary_is_russian_with_decimal_commas(workers: int, tail: str) -> None:
    report = {"n": 60, "workers": workers, "pipeline_per_second": 12.34, "bare_per_second": 5.06,
              "ratio": 2.44, "pipeline_seconds": 4.862, "bare_seconds": 11.857, "pages_per_receipt": 2.0,
              "pipeline_peak_rss_mb": 140.46, "bare_peak_rss_mb": None}
    lines = receipts_summary(report)
    assert lines[0] == ("Квитанции: конвейер 12,3 в секунду, простой цикл WeasyPrint 5,1 в секунду, "
                        f"отношение 2,4 {tail}")
    assert "конвейер 140 МБ, простой цикл — МБ" in lines[-1]
