"""A close that failed after rendering is run again: only changed receipts are laid out."""

from __future__ import annotations

import pytest

from pipeline.app import run_close
from pipeline.ingest.registers import ingest
from pipeline.render.build import receipt_cache_dir
from pipeline.workspace import BillingError, Workspace
from tests.conftest import ACCOUNTS, write_registers

PERIOD = "2026-08"


def test_failed_close_rerun_reuses_its_receipts(town: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                ) -> None:
    from pipeline.close import parts
    from pipeline.render.receipts import PdfEngine

    ingest(town)

    def broken(*args: object, **kwargs: object) -> None:
        raise BillingError("сбой при записи манифеста (тест)")

    with monkeypatch.context() as m:
        m.setattr(parts, "finish", broken)
        with pytest.raises(BillingError, match="тест"):
            run_close(town, PERIOD)
    cache = receipt_cache_dir(town, PERIOD)
    assert len(list(cache.rglob("*.pdf"))) == 3  # the three receipts laid out before the failure
    assert not town.period_dir(PERIOD).exists()

    # one register mended before the second run: that payer's receipt alone is laid out again
    write_registers(town, {"accounts": ACCOUNTS.replace("Сидоров Пётр Ильич", "Сидоров Пётр Ильич (наследник)")})
    ingest(town)
    laid_out: list[str] = []
    document = PdfEngine.document

    def counted(self: PdfEngine, html: str) -> object:
        laid_out.append(html)
        return document(self, html)

    monkeypatch.setattr(PdfEngine, "document", counted)  # one house, one task: in this process
    run_close(town, PERIOD)
    assert len(laid_out) == 1 and "(наследник)" in laid_out[0]
    assert (town.period_dir(PERIOD) / "receipts" / "A3.pdf").is_file()
    assert not cache.exists()  # sealed: the receipts are the record, the cache is dropped
