"""The receipts' content cache: a re-run lays out only the receipts whose content changed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pypdf import PdfReader

from pipeline.render.receipts import content_key, render_html, render_receipts
from tests.render.test_render import make_receipt


def test_rerun_copies_unchanged_receipts_and_lays_out_the_changed_one(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    receipts = [make_receipt(f"100000{i}") for i in range(3)]
    first = render_receipts(receipts, tmp_path / "one", workers=1, cache=cache)
    assert (first.count, first.reused) == (3, 0)
    assert len(list(cache.rglob("*.pdf"))) == 3 and not list(cache.rglob("*.tmp"))

    changed = [receipts[0], replace(receipts[1], payer_name="Петрова-Водкина Анна"), receipts[2]]
    again = render_receipts(changed, tmp_path / "two", workers=1, cache=cache)
    assert (again.count, again.reused, again.batches) == (3, 2, 1)
    for r in (receipts[0], receipts[2]):  # copied: the very bytes a fresh layout writes
        assert (tmp_path / "two" / f"{r.account_id}.pdf").read_bytes() == \
            (tmp_path / "one" / f"{r.account_id}.pdf").read_bytes()
    text = PdfReader(tmp_path / "two" / "1000001.pdf").pages[0].extract_text()
    assert "Петрова-Водкина" in text
    # the print batch is assembled from copies and new layouts alike, every page in it
    batch = PdfReader(tmp_path / "two" / "batches" / "B001.pdf")
    assert len(batch.pages) == sum(len(PdfReader(tmp_path / "two" / f"{r.account_id}.pdf").pages)
                                   for r in changed)
    assert len(list(cache.rglob("*.pdf"))) == 4


def test_key_follows_the_html() -> None:
    receipt = make_receipt()
    assert content_key(render_html(receipt)) == content_key(render_html(receipt))
    assert content_key(render_html(receipt)) != content_key(render_html(replace(receipt, total_area=None)))
