"""Reading a large CSV in pieces (readers.iter_table) gives the rows one read gives."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.ingest.readers import iter_table, read_table
from pipeline.workspace import BillingError

ROWS = ["Счёт;Сумма;Причина"] + [f"{i};{i},50;" + ('"перенос\nстроки; и ""кавычки"""' if i % 7 == 0 else "ок")
                                  for i in range(400)]


@pytest.mark.parametrize("encoding", ["cp1251", "utf-8", "utf-8-sig"])
def test_pieces_are_the_whole_file(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes("\n".join(ROWS).encode(encoding) + b"\n")
    whole = read_table(path)
    pieces = list(iter_table(path, chunk_bytes=500))
    assert len(pieces) > 10
    assert pl.concat(pieces).equals(whole)
    assert whole.height == 400 and whole["Причина"][7] == 'перенос\nстроки; и "кавычки"'
    assert whole["source_row"].to_list() == list(range(2, 402))


def test_a_file_of_two_encodings_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    lines = [r.replace("\n", " ") for r in ROWS]
    path.write_bytes("\n".join(lines[:300]).encode() + b"\n" + "\n".join(lines[300:]).encode("cp1251"))
    with pytest.raises(BillingError, match=r"mixed.csv: файл в смешанной кодировке: .*со строки 301 — Windows-1251"):
        list(iter_table(path, chunk_bytes=500))
