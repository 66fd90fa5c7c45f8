"""Payment files are taken only when complete; impossible payment dates wait in suspense.

A CSV cut mid-line is refused (never 12 ₽ under the agent «unknown»), a bank
register without its footer waits, and the nightly import leaves a file that is
not complete yet in ``inbox/`` until its rule (``settings.toml`` ``[inbox.complete]``)
says it is: ``settle`` (unchanged for ``settle_seconds``), ``done`` (a marker
``NAME.done``) or ``footer``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from pipeline.ingest.bank_formats import sber_register_bytes
from pipeline.ingest.payments import (
    import_inbox,
    import_payment_file,
    inbox_rules,
    load_imported_files,
    load_payments,
    load_suspense,
    match_payment,
)
from pipeline.ingest.registers import ingest
from pipeline.workspace import BillingError, IncompleteFileError, Workspace

HEADER = "payment_id;paid_on;account_id;amount;period;agent\n"
LINES = [
    "p1;2026-09-05;A1;100.00;2026-08;sber\n",
    "p2;2026-09-06;A2;200.50;2026-08;post\n",
    "p3;2026-09-07;A3;0.01;;post\n",
    "p4;2026-09-08;A1;10.00;2026-08;sber\n",
    "p5;2026-09-15;A1;1234.56;2026-08;sber\n",
]
WHOLE = HEADER + "".join(LINES)
#: The same file while it is being written: the last line cut after «12».
CUT = WHOLE[:WHOLE.index("1234.56") + 2]
WHOLE_KOP = 10000 + 20050 + 1 + 1000 + 123456


@pytest.fixture
def ws(town: Workspace) -> Workspace:
    ingest(town)
    return town


def age(path: Path, seconds: float = 3600) -> None:
    """Set the file's modification time ``seconds`` into the past (it has settled)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def archived(ws: Workspace, outcome: str) -> list[str]:
    return sorted(p.name for p in (ws.inbox / "archive").glob(f"*/{outcome}/*"))


def sber(rows: list[tuple[str, str, int]]) -> bytes:
    return sber_register_bytes(pl.DataFrame(
        [{"payment_id": p, "paid_on": date(2026, 9, 10), "account_id": a, "amount_kop": k,
          "period": "2026-08", "payer_name": "Иванов И. И.", "address": "г. Энск"} for p, a, k in rows]))


def test_csv_cut_mid_line_is_refused_then_imported_whole_once(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "agent.csv"
    path.write_text(CUT, encoding="utf-8")
    assert CUT.endswith("p5;2026-09-15;A1;12")
    with pytest.raises(IncompleteFileError, match="файл обрывается на строке 6 без перевода строки — "
                                                  "похоже, он ещё записывается; загрузите его, когда "
                                                  "он будет полностью получен"):
        import_payment_file(ws, path)
    assert load_payments(ws).height == 0 and load_imported_files(ws).height == 0

    path.write_text(WHOLE, encoding="utf-8")
    result = import_payment_file(ws, path)
    assert (result.accepted, result.accepted_kop, result.suspense) == (5, WHOLE_KOP, 0)
    p5 = load_payments(ws).filter(pl.col("payment_id") == "p5").row(0, named=True)
    assert (str(p5["amount"]), p5["agent"], p5["period"]) == ("1234.56", "sber", "2026-08")
    assert import_payment_file(ws, path).already_imported
    files = load_imported_files(ws)
    assert files.height == 1 and files["accepted_kop"].to_list() == [WHOLE_KOP]
    assert load_payments(ws).height == 5


def test_cli_refuses_a_cut_csv_with_exit_code_1(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "agent.csv"
    path.write_text(CUT, encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", "payments", "import", str(path),
                          "--home", str(ws.home)], capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert "agent.csv: файл обрывается на строке 6 без перевода строки" in run.stderr
    assert load_payments(ws).height == 0 and load_imported_files(ws).height == 0


def test_ragged_row_refuses_the_file_naming_row_and_columns(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "agent.csv"
    path.write_text(HEADER + LINES[0] + "p2;2026-09-06;A2;200.50\n" + LINES[2], encoding="utf-8")
    with pytest.raises(BillingError, match=r"agent.csv: строка 3 неполная — полей 4, а в заголовке 6 "
                                           r"\(без значения остались бы столбцы period, agent\)") as err:
        import_payment_file(ws, path)
    assert not isinstance(err.value, IncompleteFileError)  # a damaged file, not one still written
    assert load_payments(ws).height == 0 and load_imported_files(ws).height == 0


def test_file_changing_while_read_is_refused_as_incomplete(
        ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.ingest import payments

    path = tmp_path / "agent.csv"
    path.write_text(HEADER + LINES[0], encoding="utf-8")
    real = payments.read_payment_file

    def read_then_grow(p: Path, fmt: str | None = None,  # type: ignore[no-untyped-def]
                       agent: str | None = None):
        out = real(p, fmt, agent)
        with open(p, "a", encoding="utf-8") as fh:
            fh.write(LINES[1])
        return out

    monkeypatch.setattr(payments, "read_payment_file", read_then_grow)
    with pytest.raises(IncompleteFileError, match="файл изменился, пока его читали"):
        import_payment_file(ws, path)
    assert load_payments(ws).height == 0 and load_imported_files(ws).height == 0


def test_nightly_import_waits_for_a_half_written_csv_and_takes_it_whole_once_settled(
        ws: Workspace) -> None:
    path = ws.inbox / "agent.csv"
    path.write_text(CUT, encoding="utf-8")
    [out] = import_inbox(ws)
    assert out["outcome"] == "waiting" and "settle_seconds" in str(out["reason"])
    assert path.read_text(encoding="utf-8") == CUT and not (ws.inbox / "archive").exists()

    age(path)  # settled but still cut: refused as incomplete, so it stays in the inbox
    [out] = import_inbox(ws)
    assert out["outcome"] == "waiting" and "обрывается на строке 6" in str(out["reason"])
    assert path.is_file() and not (ws.inbox / "archive").exists()

    path.write_text(WHOLE, encoding="utf-8")  # the writer finishes: fresh again
    assert import_inbox(ws)[0]["outcome"] == "waiting"
    assert import_inbox(ws, now=datetime.fromtimestamp(path.stat().st_mtime + 121))[0]["outcome"] == "imported"
    assert not path.exists() and archived(ws, "imported") == ["agent.csv"]
    assert int(load_payments(ws)["amount"].sum() * 100) == WHOLE_KOP
    assert load_imported_files(ws).height == 1


def test_done_marker_rule_and_patterns(ws: Workspace) -> None:
    settings = ws.home / "settings.toml"
    settings.write_text(settings.read_text(encoding="utf-8").replace(
        'csv = "settle"', 'csv = "settle"\n"post-*.csv" = "done"'), encoding="utf-8")
    post, other = ws.inbox / "POST-0915.csv", ws.inbox / "lk.csv"
    post.write_text(HEADER + LINES[1], encoding="utf-8")
    other.write_text(HEADER + LINES[0], encoding="utf-8")
    age(post)
    age(other)
    outcomes = {o["file"]: o for o in import_inbox(ws)}
    assert outcomes["lk.csv"]["outcome"] == "imported"  # csv: settle
    assert outcomes["POST-0915.csv"]["outcome"] == "waiting"  # the pattern: a marker is needed
    assert "нет файла-метки POST-0915.csv.done" in str(outcomes["POST-0915.csv"]["reason"])

    marker = ws.inbox / "POST-0915.csv.done"
    marker.write_bytes(b"")
    [out] = import_inbox(ws)
    assert (out["file"], out["outcome"], out["accepted_kop"]) == ("POST-0915.csv", "imported", 20050)
    assert archived(ws, "imported") == ["POST-0915.csv", "POST-0915.csv.done", "lk.csv"]
    assert list(ws.inbox.iterdir()) == [ws.inbox / "archive"]

    # A marker also lets a fresh settle file in at once; a file changed after its marker waits.
    fresh = ws.inbox / "night.csv"
    fresh.write_text(HEADER + LINES[2], encoding="utf-8")
    stale = ws.inbox / "night.csv.done"
    stale.write_bytes(b"")
    age(stale)
    assert "изменён после метки night.csv.done" in str(import_inbox(ws)[0]["reason"])
    stale.write_bytes(b"")
    assert import_inbox(ws)[0]["outcome"] == "imported"


def test_settings_of_the_inbox_are_checked(ws: Workspace) -> None:
    settings = ws.home / "settings.toml"
    text = settings.read_text(encoding="utf-8")
    assert inbox_rules(ws).complete == {"sber": "footer", "vtb": "footer", "csv": "settle", "1c": "footer"}
    for bad, message in (('csv = "footer"', "правило footer — только для реестров sber и vtb"),
                         ('csv = "later"', "правило «later» неизвестно"),
                         ('xls = "done"', "«xls» — не формат")):
        settings.write_text(text.replace('csv = "settle"', bad), encoding="utf-8")
        with pytest.raises(BillingError, match=message):
            inbox_rules(ws)
    settings.write_text(text.replace("settle_seconds = 120", "settle_seconds = -1"), encoding="utf-8")
    with pytest.raises(BillingError, match="settle_seconds: ожидается целое число"):
        import_inbox(ws)
    # A workspace made before [inbox] existed gets the defaults.
    settings.write_text(text[:text.index("[inbox]")], encoding="utf-8")
    assert inbox_rules(ws).settle_seconds == 120


def test_sber_register_without_footer_waits_in_the_inbox_until_the_footer_arrives(ws: Workspace) -> None:
    whole = sber([("1001", "A1", 123456), ("1002", "A2", 5001)])
    body = whole[:whole.index(b"\r\n=") + 2]
    path = ws.inbox / "17066_7707083893_40702810000000000001_009.txt"
    path.write_bytes(body)
    age(path)
    [out] = import_inbox(ws)
    assert out["outcome"] == "waiting" and "нет итоговой строки" in str(out["reason"])
    assert path.read_bytes() == body and not (ws.inbox / "archive").exists()

    path.write_bytes(whole[:-6])  # the footer line half written
    [out] = import_inbox(ws)
    assert out["outcome"] == "waiting" and "не завершена переводом строки" in str(out["reason"])

    path.write_bytes(whole)  # complete, and taken at once: the footer is the proof
    [out] = import_inbox(ws)
    assert (out["outcome"], out["format"], out["accepted"], out["accepted_kop"]) == ("imported", "sber", 2, 128457)
    assert archived(ws, "imported") == [path.name] and not archived(ws, "refused")


def test_sber_register_with_a_wrong_footer_is_archived_as_refused(ws: Workspace) -> None:
    data = sber([("1001", "A1", 123456)]).decode("cp1251").replace("=1;1234,56", "=2;1300,00")
    path = ws.inbox / "bad_001.txt"
    path.write_bytes(data.encode("cp1251"))
    [out] = import_inbox(ws)
    assert out["outcome"] == "refused" and "разница 1" in str(out["error"])
    assert archived(ws, "refused") == ["bad_001.txt"] and load_payments(ws).height == 0


def test_future_and_ancient_payment_dates_go_to_suspense(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "dates.csv"
    path.write_text(HEADER + "f1;2099-01-01;A1;10.00;;sber\n" + "f2;0001-01-01;A1;20.00;;sber\n"
                    + "f3;2026-09-30;X9;30.00;;sber\n" + "ok;2026-09-30;A2;40.00;;sber\n", encoding="utf-8")
    result = import_payment_file(ws, path, today=date(2026, 9, 30))
    assert (result.accepted, result.accepted_kop, result.suspense) == (1, 4000, 3)
    reasons = dict(load_suspense(ws).select("payment_id", "reason").iter_rows())
    assert reasons == {
        "f1": "дата платежа 01.01.2099 позже дня загрузки 30.09.2026",
        "f2": "дата платежа 01.01.0001 раньше открытия лицевого счёта 01.01.2020",
        "f3": "неизвестный лицевой счёт",
    }
    # match keeps refusing the impossible dates, and takes the future one once its day has come.
    with pytest.raises(BillingError, match=r"дата платежа 01\.01\.2099 позже сегодняшнего дня 30\.09\.2026"):
        match_payment(ws, "f1", "A1", today=date(2026, 9, 30))
    with pytest.raises(BillingError, match=r"дата платежа 01\.01\.0001 раньше открытия лицевого счёта A2 "
                                           r"01\.01\.2020"):
        match_payment(ws, "f2", "A2", today=date(2026, 9, 30))
    match_payment(ws, "f1", "A1", today=date(2099, 1, 1))
    assert sorted(load_payments(ws)["payment_id"]) == ["f1", "ok"]
    assert sorted(load_suspense(ws)["payment_id"]) == ["f2", "f3"]


def test_register_payment_dated_after_the_import_day_waits_in_suspense(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "17066_7707083893_40702810000000000001_001.txt"
    path.write_bytes(sber([("1001", "A1", 5000)]))
    result = import_payment_file(ws, path, today=date(2026, 9, 9))
    assert (result.accepted, result.suspense) == (0, 1)
    assert load_suspense(ws)["reason"].to_list() == ["дата платежа 10.09.2026 позже дня загрузки 09.09.2026"]
