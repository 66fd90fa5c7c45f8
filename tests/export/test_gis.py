"""ГИС ЖКХ export: every message valid against the official schemas, split, figures to the kopeck."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.app import run_close
from pipeline.dates import Period
from pipeline.export import exports_dir, read_exports_manifest, write_exports
from pipeline.export.gis import (
    SKIPPED_NAME,
    GisFrames,
    Limits,
    build_files,
    gis_files,
    load_limits,
    read_frames,
)
from pipeline.export.gis_schema import schema
from pipeline.ingest.payments import import_payment_file
from pipeline.ingest.registers import ingest
from pipeline.sealed import read_table
from pipeline.workspace import BillingError, Workspace, init_workspace
from tests.conftest import TOWN, write_registers

PERIOD = "2026-08"
NS = {"bills": "http://dom.gosuslugi.ru/schema/integration/bills/",
      "base": "http://dom.gosuslugi.ru/schema/integration/base/",
      "ab": "http://dom.gosuslugi.ru/schema/integration/account-base/",
      "dm": "http://dom.gosuslugi.ru/schema/integration/device-metering/",
      "mdb": "http://dom.gosuslugi.ru/schema/integration/metering-device-base/",
      "nsi": "http://dom.gosuslugi.ru/schema/integration/nsi-base/"}

GUID_A1 = "22222222-2222-4222-8222-222222222221"
GUID_A2 = "22222222-2222-4222-8222-222222222222"
GIS = {
    # A3 has its ЕЛС but no AccountGuid yet: left out of the ПД and reported.
    "gis_ids": f"""\
account_id,service_id,els,izhku,from,account_guid
A1,,75da533315,,2020-01-01,{GUID_A1}
A2,,75da533316,,2020-01-01,{GUID_A2}
A3,,75da533317,,2020-01-01,
""",
    "gis_meter_ids": """\
meter_id,device_guid,value_kind,from
M1,77777777-7777-4777-8777-777777777771,,2020-01-01
""",
    "gis_nsi": """\
kind,service_id,supplier_id,code,guid,name,from
municipal,cold_water,,1.1,33333333-3333-4333-8333-333333333331,Холодное водоснабжение,2020-01-01
municipal,sewerage,,1.2,33333333-3333-4333-8333-333333333332,Водоотведение,2020-01-01
municipal,heating,,1.3,33333333-3333-4333-8333-333333333333,Отопление,2020-01-01
housing,maintenance,,2,33333333-3333-4333-8333-333333333334,Содержание & ремонт <общего> имущества,2020-01-01
penalty,,,1,44444444-4444-4444-8444-444444444444,Пени,2020-01-01
resource,cold_water,,1,88888888-8888-4888-8888-888888888888,Холодная вода,2020-01-01
""",
}


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The town with its ГИС identifiers, A1 paying in advance, closed for 2026-08."""
    ws = init_workspace(tmp_path_factory.mktemp("gis") / "home")
    write_registers(ws, {**TOWN, **GIS})
    assert ingest(ws).total_rejected == 0
    pay = ws.home.parent / "pay.csv"
    pay.write_text("payment_id,paid_on,account_id,amount,period,agent\n"
                   "p1,2026-08-10,A1,9000.00,2026-08,sber\n", encoding="utf-8")
    import_payment_file(ws, pay)
    run_close(ws, PERIOD, receipts=False)
    return ws


@pytest.fixture(scope="module")
def files(sealed: Workspace) -> list:
    return list(build_files(sealed, PERIOD))


def _docs(data: bytes) -> list[ET.Element]:
    return ET.fromstring(data).findall("bills:PaymentDocument", NS)


def _text(elem: ET.Element, path: str) -> str:
    """The text of the element at ``path`` (it must be there)."""
    found = elem.find(path, NS)
    assert found is not None and found.text is not None, path
    return found.text


def _el(elem: ET.Element, path: str) -> ET.Element:
    found = elem.find(path, NS)
    assert found is not None, path
    return found


def _rub(elem: ET.Element, path: str) -> Decimal:
    return Decimal(_text(elem, path)) if elem.find(path, NS) is not None else Decimal(0)


def _skipped(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))


# ------------------------------------------------------------------ a sealed period


def test_messages_validate_and_figures_equal_the_sealed_tables(sealed: Workspace, files: list) -> None:
    pd = [f for f in files if f.name.startswith("pd/")]
    md = [f for f in files if f.name.startswith("readings/")]
    assert [f.name for f in pd] == ["pd/importPaymentDocumentRequest_2026-08_0001.xml"]
    assert all(schema("bills").is_valid(f.data) for f in pd)
    assert all(schema("device-metering").is_valid(f.data) for f in md)
    folder = sealed.period_dir(PERIOD)
    charges = read_table(folder, "charges").group_by("account_id").agg(pl.col("amount").sum())
    recalcs = read_table(folder, "recalculations").group_by("account_id").agg(pl.col("amount").sum())
    balances = read_table(folder, "balances").group_by("account_id").agg(
        pl.col("closing").sum(), (pl.col("opening") - pl.col("paid")).sum().alias("debt"))
    want_charges = {r["account_id"]: r["amount"] for r in charges.iter_rows(named=True)}
    for r in recalcs.iter_rows(named=True):
        want_charges[r["account_id"]] = want_charges.get(r["account_id"], Decimal(0)) + r["amount"]
    guid_of = {GUID_A1: "A1", GUID_A2: "A2"}
    seen = {}
    for doc in _docs(pd[0].data):
        account = guid_of[_text(doc, "ab:AccountGuid")]
        lines = sum((Decimal(t.text or "") for t in doc.iterfind("bills:ChargeInfo/*/bills:TotalPayable", NS)),
                    Decimal(0))
        seen[account] = (lines, _rub(doc, "bills:TotalPayableByChargeInfo"),
                         _rub(doc, "bills:TotalPayableByPDWithDebtAndAdvance"),
                         _rub(doc, "bills:DebtPreviousPeriods") - _rub(doc, "bills:AdvanceBllingPeriod"))
    want = {r["account_id"]: (want_charges[r["account_id"]], want_charges[r["account_id"]], r["closing"],
                              r["debt"]) for r in balances.iter_rows(named=True) if r["account_id"] != "A3"}
    assert seen == want
    assert want["A1"][3] < 0  # A1 paid ahead: its advance is in AdvanceBllingPeriod
    assert pd[0].total_kop == sum(int(v[2] * 100) for v in want.values()) and pd[0].rows == 2
    left_out = next(f for f in files if f.name == SKIPPED_NAME).extra["left_out_kop"]
    assert pd[0].total_kop + left_out == int(balances["closing"].sum() * 100)
    # the accepted reading, as the close sealed it
    reading = _el(ET.fromstring(md[0].data), "dm:MeteringDevicesValues")
    volumes = read_table(folder, "meter_volumes").row(0, named=True)
    assert Decimal(_text(reading, ".//mdb:MeteringValue")) == volumes["curr_value"]
    assert _text(reading, ".//dm:DateValue") == str(volumes["curr_read_on"])
    # dictionary names only when asked for ([limits] service_names); the text escaped, not broken
    assert "nsi:Name" not in pd[0].data.decode() + md[0].data.decode()
    named = gis_files(Period.parse(PERIOD), read_frames(sealed, PERIOD), Limits(service_names=True))
    assert "Содержание &amp; ремонт &lt;общего&gt; имущества" in named[0].data.decode()
    assert schema("bills").is_valid(named[0].data)
    assert schema("device-metering").is_valid(next(f for f in named if f.name.startswith("readings/")).data)
    with pytest.raises(ValueError, match="service_names"):
        Limits(service_names="да")  # type: ignore[arg-type]


def test_an_increasing_coefficient_is_a_multiplying_factor_with_the_receipt_s_excess(
        sealed: Workspace, files: list) -> None:
    """A2's cold water is charged by the norm × 3: its MunicipalService carries MultiplyingFactor
    (43/пр: the coefficient and the excess it caused) with the receipt's figure, in its place."""
    pd = next(f for f in files if f.name.startswith("pd/"))
    assert schema("bills").is_valid(pd.data)
    doc = next(d for d in _docs(pd.data) if _text(d, "ab:AccountGuid") == GUID_A2)
    line = read_table(sealed.period_dir(PERIOD), "charges").filter(
        (pl.col("account_id") == "A2") & (pl.col("service_id") == "cold_water")).row(0, named=True)
    assert line["method"] == "norm_increased" and line["coefficient"] == 3
    base = (line["volume"] * line["tariff"]).quantize(Decimal("0.01"), ROUND_HALF_UP)
    factors = doc.findall("bills:ChargeInfo/bills:MunicipalService/bills:MultiplyingFactor", NS)
    assert [(_text(f, "bills:Ratio"), _text(f, "bills:AmountOfExcessFees")) for f in factors
            if _text(f, "bills:Ratio") == "3"] == [("3", str(line["amount"] - base))]
    # after Consumption (the schema's order), and none on A1's metered lines
    municipal = [el for el in doc.iterfind("bills:ChargeInfo/bills:MunicipalService", NS)
                 if el.find("bills:MultiplyingFactor", NS) is not None]
    assert all([c.tag.split("}")[1] for c in el][-1] == "MultiplyingFactor" for el in municipal)
    a1 = next(d for d in _docs(pd.data) if _text(d, "ab:AccountGuid") == GUID_A1)
    assert a1.find(".//bills:MultiplyingFactor", NS) is None


def test_missing_account_guid_goes_to_the_report(files: list) -> None:
    report = next(f for f in files if f.name == SKIPPED_NAME)
    rows = _skipped(report.data)
    assert [(r["что"], r["лицевой счёт"]) for r in rows] == [("платёжный документ", "A3")]
    assert "account_guid" in rows[0]["причина"] and rows[0]["сумма к оплате, руб."] != "0,00"
    assert report.rows == 1 and report.total_kop == 0 and report.extra["left_out_kop"] > 0


def test_written_once_and_deterministic(sealed: Workspace, files: list) -> None:
    again = list(build_files(sealed, PERIOD))
    assert [f.data for f in again] == [f.data for f in files]
    report = write_exports(sealed, PERIOD, "gis", files)
    assert f"gis/{SKIPPED_NAME}" in report.written
    # What was left out is kept apart from what is sent (A3's document is in the report only).
    sent = [f for f in files if f.name != SKIPPED_NAME]
    skipped = next(f for f in files if f.name == SKIPPED_NAME)
    assert report.rows == sum(f.rows for f in sent) and report.total_kop == sum(f.total_kop for f in sent)
    assert report.left_out == {"documents": 1, "meters": 0, "left_out_kop": skipped.extra["left_out_kop"]}
    assert report.left_out_file == f"gis/{SKIPPED_NAME}"
    listed = read_exports_manifest(sealed, PERIOD)["files"]
    pd = listed["gis/pd/importPaymentDocumentRequest_2026-08_0001.xml"]
    assert pd["recipient"] == "ГИС ЖКХ" and pd["extra"]["message_guid"]
    assert (exports_dir(sealed, PERIOD) / "gis" / "readings").is_dir()


def test_a_tiny_limit_gives_several_valid_messages_with_every_document_once(sealed: Workspace) -> None:
    frames = read_frames(sealed, PERIOD)
    one_each = gis_files(Period.parse(PERIOD), frames, Limits(documents_per_message=1))
    pd = [f for f in one_each if f.name.startswith("pd/")]
    assert [f.name[-8:] for f in pd] == ["0001.xml", "0002.xml"]
    assert all(schema("bills").is_valid(f.data) for f in pd)
    guids = [_text(d, "ab:AccountGuid") for f in pd for d in _docs(f.data)]
    assert sorted(guids) == [GUID_A1, GUID_A2]
    # each message names only the payees its documents refer to, each once
    for f in pd:
        keys = ET.fromstring(f.data).findall("bills:PaymentInformation/base:TransportGUID", NS)
        assert len({k.text for k in keys}) == len(keys) > 0
    # a byte cap that holds one document but not two splits the same way
    whole = next(f for f in gis_files(Period.parse(PERIOD), frames) if f.name.startswith("pd/"))
    by_bytes = [f for f in gis_files(Period.parse(PERIOD), frames, Limits(max_bytes=len(whole.data) - 10))
                if f.name.startswith("pd/")]
    assert len(by_bytes) == 2 and all(len(f.data) <= len(whole.data) - 10 for f in by_bytes)
    assert sum(f.total_kop for f in by_bytes) == whole.total_kop
    with pytest.raises(BillingError, match="больше предела"):
        gis_files(Period.parse(PERIOD), frames, Limits(max_bytes=2000))


def test_limits_come_from_the_rules_file_and_respect_the_schema(tmp_path: Path) -> None:
    assert load_limits(tmp_path) == Limits()
    (tmp_path / "gis_gkh.toml").write_text("[limits]\ndocuments_per_message = 501\n", encoding="utf-8")
    with pytest.raises(BillingError, match="допустимо 1–500"):
        load_limits(tmp_path)
    defaults = Path(__file__).resolve().parents[2] / "rules" / "defaults"
    assert load_limits(defaults) == Limits()


# ------------------------------------------------------------------ frames written inline

GUID = "00000000-0000-4000-8000-{:012d}"


def _frames(**changes: pl.DataFrame) -> GisFrames:
    """Two accounts of one payee: X1 with a debt, penalties and a recalculation; X2 plain."""
    s = pl.String
    base = GisFrames(
        charges=pl.DataFrame({
            "account_id": ["X1", "X1", "X1", "X2", "X2"],
            "service_id": ["water", "water", "upkeep", "upkeep", "intercom"],
            "supplier_id": ["ORG"] * 5, "method": ["meter", "meter", "area", "area", "per_person"],
            "volume_micro": [2_000_000, 1_500_000, 40_000_000, 30_000_000, 2_000_000],
            "price_kop": [5000, 5100, 3150, 3150, 2500], "amount_kop": [10000, 7650, 126000, 94500, 5000],
            "line_to": [date(2026, 8, 15)] + [date(2026, 8, 31)] * 4}),
        recalculations=pl.DataFrame({
            "account_id": ["X1", "X2"], "service_id": ["water", "upkeep"], "supplier_id": ["ORG", "ORG"],
            "amount_kop": [-1234, -500], "reason": ["перерасчёт за июль: показания", "площадь"]}),
        penalties=pl.DataFrame({"account_id": ["X1"], "supplier_id": ["ORG"], "amount_kop": [567],
                                "scheme": ["standard"]}),
        balances=pl.DataFrame({
            "account_id": ["X1", "X2"], "supplier_id": ["ORG", "ORG"], "opening_kop": [50000, 0],
            "charged_kop": [143650, 99500], "recalculated_kop": [-1234, -500], "paid_kop": [20000, 0],
            "penalty_kop": [567, 0], "closing_kop": [50000 + 143650 - 1234 - 20000 + 567, 99000]}),
        meter_volumes=pl.DataFrame({
            "meter_id": ["MW", "ME", "MX"], "service_id": ["water", "power", "water"],
            "method": ["meter"] * 3, "prev_read_on": [date(2026, 7, 20)] * 3,
            "curr_read_on": [date(2026, 8, 20)] * 3, "curr_value_micro": [12_345_600, 4512_300_000, 1_000_000]}),
        organizations=pl.DataFrame({"org_id": ["ORG"], "name": ["ООО «Дом»"], "bik": ["044525225"],
                                    "account": ["40702810200000000001"]}),
        gis_ids=pl.DataFrame({"account_id": ["X1", "X2"], "service_id": [None, None], "els": ["a", "b"],
                              "izhku": [None, None], "from": [date(2020, 1, 1)] * 2,
                              "account_guid": [GUID.format(1), GUID.format(2)]}, schema_overrides={
                                  "service_id": s, "izhku": s}),
        gis_meter_ids=pl.DataFrame({"meter_id": ["MW", "ME"], "device_guid": [GUID.format(11), GUID.format(12)],
                                    "value_kind": ["one_rate", "electric"], "from": [date(2020, 1, 1)] * 2}),
        gis_nsi=pl.DataFrame({
            "kind": ["municipal", "housing", "penalty", "resource", "additional"],
            "service_id": ["water", "upkeep", None, "water", "intercom"], "supplier_id": [None] * 5,
            "code": ["1", "2", "3", "1", "7"], "guid": [GUID.format(n) for n in (21, 22, 23, 24, 25)],
            "name": ["ХВС", "Содержание", "Пени", "Холодная вода", None], "from": [date(2020, 1, 1)] * 5},
            schema_overrides={"supplier_id": s}),
        services=pl.DataFrame({"service_id": ["water", "upkeep", "power", "intercom"],
                               "name": ["ХВС", "Содержание", "Свет", "Домофон"],
                               "kind": ["metered", "area", "metered", "per_person"]}),
    )
    return replace(base, **changes)


def test_debt_penalties_recalculations_and_readings_from_frames() -> None:
    out = gis_files(Period(2026, 8), _frames())
    pd = next(f for f in out if f.name.startswith("pd/"))
    md = next(f for f in out if f.name.startswith("readings/"))
    assert schema("bills").is_valid(pd.data) and schema("device-metering").is_valid(md.data)
    x1 = _docs(pd.data)[0]
    water = _el(x1, "bills:ChargeInfo/bills:MunicipalService")
    assert _text(water, "bills:Rate") == "51.000000"  # the period's last tariff
    assert _text(water, "bills:AccountingPeriodTotal") == "176.50"
    assert _text(water, "bills:TotalPayable") == "164.16"
    assert _text(water, "bills:PaymentRecalculation/bills:sum") == "-12.34"
    assert _text(water, "bills:Consumption/bills:Volume") == "3.5000000"
    assert _text(x1, "bills:PenaltiesAndCourtCosts/bills:TotalPayable") == "5.67"
    assert _text(x1, "bills:DebtPreviousPeriods") == "300.00"
    assert x1.find("bills:AdvanceBllingPeriod", NS) is None
    total = _rub(x1, "bills:TotalPayableByPDWithDebtAndAdvance")
    assert total == Decimal(50000 + 143650 - 1234 - 20000 + 567) / 100
    assert total == (_rub(x1, "bills:TotalPayableByChargeInfo") + _rub(x1, "bills:DebtPreviousPeriods")
                     + _rub(x1, "bills:TotalByPenaltiesAndCourtCosts"))
    x2 = _docs(pd.data)[1]  # a housing service recalculated, an additional service with a volume
    assert _text(x2, "bills:ChargeInfo/bills:HousingService/bills:PaymentRecalculation/bills:sum") == "-5.00"
    assert _text(x2, "bills:ChargeInfo/bills:AdditionalService/bills:Consumption/bills:Volume") == "2.0000000"
    assert _rub(x2, "bills:TotalPayableByPDWithDebtAndAdvance") == Decimal("990.00")
    values = ET.fromstring(md.data).findall("dm:MeteringDevicesValues", NS)
    assert values[0].find("dm:ElectricDeviceValue", NS) is not None  # ME: electricity, T1
    assert _text(values[0], ".//mdb:MeteringValueT1") == "4512.3"
    assert _text(values[1], ".//mdb:MeteringValue") == "12.3456"
    rows = _skipped(out[-1].data)
    assert [(r["прибор учёта"], "gis_meter_ids" in r["причина"]) for r in rows] == [("MX", True)]
    # an account with nothing in the period (all its balances zero, no line) gets no document
    frames = _frames()
    quiet = pl.concat([frames.balances, frames.balances.head(1).with_columns(
        pl.lit("X3").alias("account_id"), *[pl.lit(0, pl.Int64).alias(c) for c in frames.balances.columns
                                             if c.endswith("_kop")])])
    again = gis_files(Period(2026, 8), replace(frames, balances=quiet))
    assert [f.data for f in again] == [f.data for f in out]


def test_unmapped_service_and_payee_without_bank_details_are_reported() -> None:
    frames = _frames()
    no_upkeep = frames.gis_nsi.filter(pl.col("service_id") != "upkeep")
    out = gis_files(Period(2026, 8), replace(frames, gis_nsi=no_upkeep))
    assert not any(f.name.startswith("pd/") for f in out)
    rows = _skipped(out[-1].data)
    assert {r["лицевой счёт"] for r in rows if r["что"] == "платёжный документ"} == {"X1", "X2"}
    assert all("«Содержание» поставщика ORG не сопоставлена" in r["причина"] for r in rows if r["лицевой счёт"])
    no_bank = frames.organizations.with_columns(pl.lit(None, pl.String).alias("account"))
    rows = _skipped(gis_files(Period(2026, 8), replace(frames, organizations=no_bank))[-1].data)
    assert any("не указаны БИК или расчётный счёт" in r["причина"] for r in rows if r["лицевой счёт"] == "X2")


def test_an_invalid_message_is_refused_naming_the_account() -> None:
    frames = _frames()
    huge = frames.balances.with_columns(
        pl.when(pl.col("account_id") == "X2").then(10 ** 13).otherwise(pl.col("opening_kop")).alias("opening_kop"))
    with pytest.raises(BillingError, match=r"лицевой счёт X2: .*Файлы не записаны"):
        gis_files(Period(2026, 8), replace(frames, balances=huge))


def test_built_a_slice_of_accounts_at_a_time_the_same_documents(sealed: Workspace,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.export import gis

    frames = read_frames(sealed, PERIOD)
    whole = gis_files(Period.parse(PERIOD), frames, Limits(documents_per_message=1))
    monkeypatch.setattr(gis, "CHUNK_MESSAGES", 1)  # one account a slice: a message per slice
    sliced = gis_files(Period.parse(PERIOD), frames, Limits(documents_per_message=1))
    assert [(f.name, f.data) for f in sliced] == [(f.name, f.data) for f in whole]
    sampled = gis_files(Period.parse(PERIOD), frames, Limits(documents_per_message=1, validate="sample"))
    assert [f.data for f in sampled] == [f.data for f in whole]
    with pytest.raises(ValueError, match="validate"):
        Limits(validate="none")


# ------------------------------------------------------------------ speed: pool, shapes, shorter text


def test_a_process_pool_gives_the_same_files_as_one_process(sealed: Workspace,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.export import gis

    frames = read_frames(sealed, PERIOD)
    limits = Limits(documents_per_message=1, readings_per_message=1)
    monkeypatch.setattr(gis, "CHUNK_MESSAGES", 1)  # a task per message: several tasks, so a pool
    here = gis_files(Period.parse(PERIOD), frames, limits, workers=1)
    pooled = gis_files(Period.parse(PERIOD), frames, limits, workers=2)
    assert len([f for f in here if f.name.startswith("pd/")]) == 2
    assert [(f.name, f.data, f.rows, f.total_kop, f.extra) for f in pooled] == [
        (f.name, f.data, f.rows, f.total_kop, f.extra) for f in here]


def test_a_pooled_export_is_written_by_the_workers_and_renamed_into_place(
        sealed: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a pool the workers write the messages (staged files); the export on disk is the
    same bytes as one process makes, listed with their sizes, and no scratch file stays —
    neither after it, nor after an export that fails half-way."""
    import shutil

    from pipeline.export import gis
    from pipeline.verify import verify_period

    shutil.copytree(sealed.home, tmp_path / "home")
    sealed = Workspace(tmp_path / "home")  # its own copy, without what the other tests exported
    shutil.rmtree(exports_dir(sealed, PERIOD), ignore_errors=True)
    limits = Limits(documents_per_message=1, readings_per_message=1)
    monkeypatch.setattr(gis, "CHUNK_MESSAGES", 1)
    monkeypatch.setattr(gis, "default_workers", lambda: 2)
    here = {f.name: f.data for f in gis_files(Period.parse(PERIOD), read_frames(sealed, PERIOD), limits,
                                             workers=1)}
    folder = exports_dir(sealed, PERIOD)

    def failing() -> Iterator[Any]:
        for n, f in enumerate(build_files(sealed, PERIOD, limits)):
            if n == 2:
                raise RuntimeError("сбой посреди выгрузки")
            yield f

    with pytest.raises(RuntimeError, match="посреди"):
        write_exports(sealed, PERIOD, "gis", failing())
    assert not [p for p in folder.rglob("*") if p.is_file() or p.name.startswith(".staging-")]

    staged = [f for f in build_files(sealed, PERIOD, limits) if f.staged is not None]
    assert staged and all(f.data == b"" for f in staged)  # each came as a file, not as bytes
    report = write_exports(sealed, PERIOD, "gis", build_files(sealed, PERIOD, limits))
    assert sorted(report.written) == sorted(f"gis/{n}" for n in here)
    listed = read_exports_manifest(sealed, PERIOD)["files"]
    for name, data in here.items():
        assert (folder / "gis" / name).read_bytes() == data
        assert listed[f"gis/{name}"]["bytes"] == len(data)
    assert not [p for p in folder.rglob("*") if p.name.startswith(".")]
    again = write_exports(sealed, PERIOD, "gis", build_files(sealed, PERIOD, limits))
    assert again.written == () and len(again.unchanged) == len(here)
    assert not [p for p in folder.rglob("*") if p.name.startswith(".")]
    verify_period(sealed, PERIOD)


def test_shapes_validates_each_new_document_shape_not_only_the_first_message() -> None:
    frames = _frames()
    huge = frames.balances.with_columns(  # X2's own shape (no penalty, no recalculated water) is bad
        pl.when(pl.col("account_id") == "X2").then(10 ** 13).otherwise(pl.col("opening_kop")).alias("opening_kop"))
    bad = replace(frames, balances=huge)
    one_each = Limits(documents_per_message=1, validate="sample")
    assert [f.name[-8:] for f in gis_files(Period(2026, 8), bad, one_each) if f.name.startswith("pd/")] == [
        "0001.xml", "0002.xml"]  # sample: X2's message, the second of its task, is not checked
    with pytest.raises(BillingError, match=r"лицевой счёт X2: .*Файлы не записаны"):
        gis_files(Period(2026, 8), bad, replace(one_each, validate="shapes"))
    with pytest.raises(BillingError, match=r"лицевой счёт X2"):
        gis_files(Period(2026, 8), bad, replace(one_each, validate="all"))
    # valid frames: the three modes write the same bytes
    out = {m: [f.data for f in gis_files(Period(2026, 8), frames, replace(one_each, validate=m))]
           for m in ("all", "shapes", "sample")}
    assert out["all"] == out["shapes"] == out["sample"]


def test_the_request_namespace_is_the_default_and_a_payee_zero_debt_is_left_out() -> None:
    from pipeline.ingest.gis import parse_readings

    out = gis_files(Period(2026, 8), _frames())
    pd = next(f for f in out if f.name.startswith("pd/"))
    text = pd.data.decode()
    assert text.count("<PaymentDocument>") == 2 and "bills:" not in text  # same elements, shorter tags
    x1, x2 = _docs(pd.data)
    debt = "bills:DetailsPaymentInformation/bills:DebtPreviousPeriodsOrAdvanceBillingPeriod"
    assert _text(x1, debt) == "300.00"  # X1 owes 500.00 − 200.00 paid
    assert x2.find(debt, NS) is None  # X2 owes nothing: no zero written (minOccurs="0")
    assert _text(x2, "bills:DetailsPaymentInformation/bills:TotalPayableWithDebtAndAdvance") == "990.00"
    md = next(f for f in out if f.name.startswith("readings/"))
    # our own importer of ГИС readings reads what we send
    assert sorted(parse_readings(md.name, md.data)["value"].to_list()) == ["12.3456", "4512.3"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(2 ** 63) + 1, max_value=2 ** 63 - 1), min_size=1, max_size=50),
       st.sampled_from([(2, 2), (2, 6), (6, 7), (0, 2)]))
def test_integer_units_are_printed_exactly_as_decimals(values: list[int], places: tuple[int, int]) -> None:
    """Kopecks and micro-units as the schemas' decimals: the same text as Python's Decimal gives."""
    from pipeline.export.gis import _scaled

    scale, digits = places
    got = pl.DataFrame({"k": values}, schema={"k": pl.Int64}).select(_scaled("k", scale, digits))["k"].to_list()
    want = [f"{Decimal(v).scaleb(-scale):.{digits}f}" for v in values]
    assert got == want


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=60), min_size=1, max_size=40))
def test_transport_guids_are_the_uuid5_of_their_keys(keys: list[str]) -> None:
    """The column-wide TransportGUIDs (DuckDB's SHA-1, cut by Polars) are exactly
    ``uuid.uuid5(NAMESPACE, key)``, Cyrillic and empty keys included."""
    import uuid

    from pipeline.export.gis import NAMESPACE, _guids

    keys = [k.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k in keys]
    got = _guids(pl.Series("t", keys, pl.String))
    assert got.name == "t"
    assert got.to_list() == [str(uuid.uuid5(NAMESPACE, k)) for k in keys]


def test_the_pool_s_scratch_folder_goes_and_takes_what_a_killed_export_left() -> None:
    """The shared tables' folder (in /dev/shm: memory) is removed at the end, and one a killed
    export left (its process gone) is removed by the next export; a live one's is not touched."""
    import os
    import tempfile

    from pipeline.export.gis import SCRATCH_PREFIX, _scratch

    with _scratch(1) as first:
        base = first.parent
    assert not first.exists()
    dead = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{2 ** 22 + 12345}-", dir=base))  # above pid_max
    alive = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=base))
    try:
        with _scratch(1) as folder:
            assert folder.is_dir() and folder.parent == base
            assert not dead.exists() and alive.is_dir()
    finally:
        for left in (dead, alive):
            if left.exists():
                left.rmdir()
