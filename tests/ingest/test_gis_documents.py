"""The ИПД ГИС ЖКХ gives our payment documents (``billing import gis-documents FILE --period P``).

The answer is ``bills:getStateResult``, validated against the official schema; its results are
matched to our documents by their TransportGUID, and a duplicate printed afterwards shows the ИПД.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest

from pipeline.export import write_exports
from pipeline.export.gis import build_files, document_guids
from pipeline.ingest.gis_documents import import_gis_documents, load_gis_documents, parse_results
from pipeline.workspace import BillingError, Workspace
from tests.export.test_gis import NS, PERIOD, sealed  # noqa: F401  (the module fixture)

IPD_A1 = "75da533315-01-8011"  # 18 characters; the layout is UNVERIFIED, only the length is
IPD_A1_AGAIN = "75da533315-01-8012"


def _answer(results: list[str]) -> bytes:
    body = "".join(f"<bills:ImportResult>{r}</bills:ImportResult>" for r in results)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<bills:getStateResult xmlns:bills="http://dom.gosuslugi.ru/schema/integration/bills/" '
        'xmlns:base="http://dom.gosuslugi.ru/schema/integration/base/" base:version="10.0.1.1">'
        "<base:RequestState>3</base:RequestState>"
        "<base:MessageGUID>9b8f0c3e-1d2a-4c5b-8e7f-0a1b2c3d4e5f</base:MessageGUID>"
        f"{body}</bills:getStateResult>").encode()


def _ok(transport: str, number: str, at: str = "2026-09-03T10:15:00") -> str:
    return (f"<base:GUID>aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee</base:GUID>"
            f"<base:TransportGUID>{transport}</base:TransportGUID>"
            f"<base:UniqueNumber>{number}</base:UniqueNumber><base:UpdateDate>{at}</base:UpdateDate>")


def _refused(transport: str) -> str:
    return (f"<base:TransportGUID>{transport}</base:TransportGUID><base:Error>"
            "<base:ErrorCode>SRV008001</base:ErrorCode>"
            "<base:Description>Лицевой счёт не найден</base:Description></base:Error>")


@pytest.fixture(scope="module")
def exported(sealed: Workspace) -> dict[str, str]:  # noqa: F811
    """The TransportGUID of each document of the period's export, by account (from the files)."""
    write_exports(sealed, PERIOD, "gis", build_files(sealed, PERIOD))
    found: dict[str, str] = {}
    for path in sorted((sealed.period_dir(PERIOD) / "exports" / "gis" / "pd").glob("*.xml")):
        for doc in ET.fromstring(path.read_bytes()).findall("bills:PaymentDocument", NS):
            number = doc.find("{http://dom.gosuslugi.ru/schema/integration/bills-base/}PaymentDocumentNumber")
            assert number is not None and number.text
            transport = doc.find("base:TransportGUID", NS)
            assert transport is not None and transport.text
            found[number.text.split("-")[0]] = transport.text
    return found


def test_the_guids_are_those_of_the_exported_documents(sealed: Workspace, exported: dict[str, str]) -> None:  # noqa: F811
    accounts = sorted(exported)
    assert accounts == ["A1", "A2"]  # A3 has no AccountGuid: no document
    assert document_guids(PERIOD, pl.Series(accounts)).to_list() == [exported[a] for a in accounts]


def test_answer_is_matched_refused_and_printed(sealed: Workspace, exported: dict[str, str],  # noqa: F811
                                               tmp_path: Path) -> None:
    a3 = document_guids(PERIOD, pl.Series(["A3"]))[0]
    answer = tmp_path / "answer.xml"
    answer.write_bytes(_answer([
        _ok(exported["A1"], IPD_A1),
        _refused(exported["A2"]),
        _ok("00000000-0000-4000-8000-000000000000", IPD_A1),
        _ok(a3, "123"),
    ]))
    result = import_gis_documents(sealed, answer, PERIOD)
    assert (result.read, result.accepted, result.duplicates, result.rejected) == (4, 1, 0, 3)
    assert result.rejects_path is not None
    report = pl.read_csv(result.rejects_path, separator=";", infer_schema=False)
    assert report.select("row", "column", "reason").rows() == [
        ("2", "Error", "ГИС ЖКХ не принял платёжный документ лицевого счёта A2: SRV008001 Лицевой счёт не найден"),
        ("3", "TransportGUID", "нет такого платёжного документа за 2026-08: транспортный идентификатор не из "
                               "нашей выгрузки этого периода (billing export gis)"),
        ("4", "UniqueNumber", "это не ИПД: идентификатор платёжного документа — 18 знаков"),
    ]
    stored = load_gis_documents(sealed)
    assert stored.select("period", "account_id", "ipd").rows() == [(PERIOD, "A1", IPD_A1)]

    # The same answer again stores nothing; a later placement of the document replaces its ИПД.
    again = import_gis_documents(sealed, answer, PERIOD)
    assert (again.accepted, again.duplicates) == (0, 1)
    later = tmp_path / "later.xml"
    later.write_bytes(_answer([_ok(exported["A1"], IPD_A1_AGAIN, "2026-09-20T08:00:00")]))
    assert import_gis_documents(sealed, later, PERIOD).accepted == 1
    older = tmp_path / "older.xml"
    older.write_bytes(_answer([_ok(exported["A1"], IPD_A1, "2026-09-01T08:00:00")]))
    assert (import_gis_documents(sealed, older, PERIOD).duplicates,
            load_gis_documents(sealed)["ipd"].to_list()) == (1, [IPD_A1_AGAIN])

    # A duplicate printed now carries the ИПД beside the account.
    from pipeline.render.reprint import reprint_receipts

    reprint_receipts(sealed, PERIOD, ["A1", "A2"])
    folder = sealed.home / "duplicates" / PERIOD
    text = {a: subprocess.run(["pdftotext", str(folder / f"{a}.pdf"), "-"], check=True, capture_output=True,
                              text=True).stdout for a in ("A1", "A2")}
    assert f"ИПД {IPD_A1_AGAIN}" in " ".join(text["A1"].split())
    assert "ИПД" not in text["A2"]


def test_refused_answers(sealed: Workspace, tmp_path: Path) -> None:  # noqa: F811
    bad = tmp_path / "bad.xml"
    bad.write_bytes(_answer([]))
    # A copy of the workspace without the period's ГИС export: nothing to match an answer to.
    copy = Workspace(tmp_path / "copy")
    shutil.copytree(sealed.home, copy.home)
    shutil.rmtree(copy.period_dir(PERIOD) / "exports" / "gis", ignore_errors=True)
    with pytest.raises(BillingError, match="в ГИС ЖКХ не выгружались"):
        import_gis_documents(copy, bad, PERIOD)
    if not (sealed.period_dir(PERIOD) / "exports" / "gis").is_dir():  # this test run alone
        write_exports(sealed, PERIOD, "gis", build_files(sealed, PERIOD))
    bad.write_bytes(_answer(["<base:TransportGUID>not-a-guid</base:TransportGUID>"]))
    with pytest.raises(BillingError, match="не соответствует схеме ГИС ЖКХ"):
        import_gis_documents(sealed, bad, PERIOD)
    whole = _answer([]).replace(b"</bills:getStateResult>", (
        "<base:ErrorMessage><base:ErrorCode>INT002012</base:ErrorCode><base:Description>Нет прав"
        "</base:Description></base:ErrorMessage></bills:getStateResult>").encode())
    with pytest.raises(BillingError, match="не принял сообщение целиком: INT002012 Нет прав"):
        parse_results("whole.xml", whole)
    with pytest.raises(BillingError, match="Период 2026-09 не закрыт"):
        import_gis_documents(sealed, bad, "2026-09")


def test_an_answer_for_another_period_is_refused_naming_it(sealed: Workspace, exported: dict[str, str],  # noqa: F811
                                                           tmp_path: Path) -> None:
    from pipeline.app import run_close

    copy = Workspace(tmp_path / "copy")
    shutil.copytree(sealed.home, copy.home)
    run_close(copy, "2026-09", receipts=False)
    write_exports(copy, "2026-09", "gis", build_files(copy, "2026-09"))
    answer = tmp_path / "august.xml"
    answer.write_bytes(_answer([_ok(exported["A1"], IPD_A1), _refused(exported["A2"])]))
    with pytest.raises(BillingError, match=r"august\.xml: это ответ ГИС ЖКХ на платёжные документы за "
                                           r"2026-08, а не за 2026-09.*--period 2026-08"):
        import_gis_documents(copy, answer, "2026-09")
    assert load_gis_documents(copy).filter(pl.col("period") == "2026-09").height == 0
    # The documents of no period at all stay row by row in the report, as before.
    stray = tmp_path / "stray.xml"
    stray.write_bytes(_answer([_ok("00000000-0000-4000-8000-000000000000", IPD_A1)]))
    assert import_gis_documents(copy, stray, "2026-09").rejected == 1
