"""The pictures of docs/receipts.md: one page of each kind of payment document, rendered for real.

Builds the three-flat town of the tests plus a shop (an organization payer), closes August to
October 2026 — A1 by its meter pays part of August, A2 by the norm with the coefficient pays
nothing (penalties from October), A3 by the norm (no meter can be fitted) is away in September
(a recalculation in October) and pays nothing either, the shop gets an
invoice — and writes PNG pages to ``docs/img/``:

    .venv/bin/python scripts/receipt_pages.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.app import run_close  # noqa: E402
from pipeline.ingest.payments import import_payment_file  # noqa: E402
from pipeline.ingest.registers import ingest  # noqa: E402
from pipeline.workspace import init_workspace  # noqa: E402
from tests.conftest import ACCOUNTS, PREMISES, TOWN, write_registers  # noqa: E402

OUT = ROOT / "docs" / "img"


def _page(pdf: Path, page: int, name: str) -> Path:
    target = OUT / name
    subprocess.run(["pdftoppm", "-r", "90", "-png", "-singlefile", "-f", str(page), "-l", str(page),
                    str(pdf), str(target.with_suffix(""))], check=True)
    return target


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ws = init_workspace(Path(tmp) / "home")
        write_registers(ws, {
            **TOWN,
            "premises": PREMISES + "P4,B1,4,nonresidential,120.00,,true\n",
            "accounts": ACCOUNTS + "A4,P4,organization,ООО «Магазин у дома»,1,1,2020-01-01,,\n",
            "readings": "meter_id,read_on,value,source\nM1,2026-07-20,100.000,lk\nM1,2026-08-20,107.500,lk\n"
                        "M1,2026-09-20,113.250,lk\nM1,2026-10-20,118.000,lk\n",
        })
        ingest(ws)
        run_close(ws, "2026-08")
        payments = ws.home / "payments.csv"
        payments.write_text("payment_id,paid_on,account_id,amount,period,agent\n"
                            "p1,2026-09-05,A1,1000.00,2026-08,sber\np2,2026-09-12,A1,234.56,2026-08,sber\n",
                            encoding="utf-8")
        import_payment_file(ws, payments, today=date(2026, 9, 30))
        run_close(ws, "2026-09")
        write_registers(ws, {"absences": "person_id,from,to\nR4,2026-09-01,2026-09-20\n"})
        ingest(ws)
        run_close(ws, "2026-10")
        receipts = ws.period_dir("2026-10") / "receipts"
        written = [
            _page(ws.period_dir("2026-09") / "receipts" / "A1.pdf", 1, "epd-meters-front.png"),
            _page(ws.period_dir("2026-09") / "receipts" / "A1.pdf", 2, "epd-meters-back.png"),
            _page(receipts / "A3.pdf", 1, "epd-norm-penalty-front.png"),
            _page(receipts / "A3.pdf", 2, "epd-norm-penalty-back.png"),
        ]
        invoice = sorted((ws.period_dir("2026-10") / "invoices").glob("*.pdf"))[0]
        written += [_page(invoice, 1, "invoice.png"), _page(invoice, 2, "act.png")]
    for path in written:
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
