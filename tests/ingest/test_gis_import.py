"""ГИС ЖКХ answers coming back: payment notices reconciled, residents' readings joined.

The notices reconciliation finds a payment missing in ГИС, one only in ГИС and one whose
amount differs (issue 14); the readings residents entered in ГИС join the readings
register with ``source = gis``, unknown meters and bad values go to the rejects report,
and importing the same file again changes nothing.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from openpyxl import load_workbook

from pipeline.ingest.gis import (
    BOTH,
    DIFFERENT,
    ONLY_GIS,
    ONLY_OURS,
    OURS_SCHEMA,
    import_gis_readings,
    load_gis_readings,
    parse_notices,
    reconcile,
    reconcile_payments,
    resolve_accounts,
    with_gis_readings,
)
from pipeline.ingest.payments import import_payment_file, load_payments
from pipeline.ingest.registers import ingest, load_store
from pipeline.workspace import BillingError, Workspace, init_workspace
from tests.conftest import TOWN, write_registers

G1 = "77777777-7777-4777-8777-777777777777"  # M1's device GUID
G_UNKNOWN = "77777777-7777-4777-8777-000000000000"
ORDER = "0123456789abcdef0123456789abcdef"

GIS_IDS = """\
account_id,service_id,els,izhku,from
A1,,75DA533301,,2020-01-01
A2,cold_water,75DA533302,75DA533302-01,2020-01-01
A3,,75DA533303,,2020-01-01
"""

GIS_METER_IDS = f"""\
meter_id,device_guid,from
M1,{G1.upper()},2020-01-01
"""

PAYMENTS = (
    "payment_id;paid_on;account_id;amount;period;agent\n"
    "p1;2026-09-05;A1;100.00;2026-08;sber\n"     # in ГИС as is
    "p2;2026-09-06;A2;200.50;2026-08;sber\n"     # in ГИС for 205.00
    "p3;2026-09-07;A3;50.00;2026-08;sber\n"      # not in ГИС
    f"{ORDER};2026-09-07;A1;10.00;2026-08;sber\n"  # in ГИС by its order id only
)

NS = ('xmlns:pay="http://dom.gosuslugi.ru/schema/integration/payment/" '
      'xmlns:base="http://dom.gosuslugi.ru/schema/integration/base/" '
      'xmlns:bills-base="http://dom.gosuslugi.ru/schema/integration/bills-base/" '
      'xmlns:account-base="http://dom.gosuslugi.ru/schema/integration/account-base/" '
      'xmlns:payments-base="http://dom.gosuslugi.ru/schema/integration/payments-base/" '
      'xmlns:org-base="http://dom.gosuslugi.ru/schema/integration/organizations-base/"')

RECIPIENT = """<payments-base:RecipientInfo><org-base:INN>7707083893</org-base:INN>
<payments-base:Legal><org-base:KPP>770701001</org-base:KPP><payments-base:Name>ООО «УК Дом»</payments-base:Name>
</payments-base:Legal><payments-base:PaymentInformation>
<payments-base:RecipientINN>7707083893</payments-base:RecipientINN>
<payments-base:BankName>ПАО Сбербанк</payments-base:BankName>
<payments-base:PaymentRecipient>ООО «УК Дом»</payments-base:PaymentRecipient>
<payments-base:BankBIK>044525225</payments-base:BankBIK>
<payments-base:operatingAccountNumber>40702810200000000001</payments-base:operatingAccountNumber>
</payments-base:PaymentInformation></payments-base:RecipientInfo>"""


def notices_xml(notices: list[dict[str, str]]) -> bytes:
    """An ``importNotificationsOfOrderExecutionRequest`` as a bank sends it to ГИС."""
    body = []
    for n, item in enumerate(notices, start=1):
        ids = ""
        if "doc" in item:
            ids += f"<bills-base:PaymentDocumentNumber>{item['doc']}</bills-base:PaymentDocumentNumber>"
            ids += "<base:Year>2026</base:Year><base:Month>8</base:Month>"
        if "els" in item:
            ids += f"<account-base:UnifiedAccountNumber>{item['els']}</account-base:UnifiedAccountNumber>"
        if "izhku" in item:
            ids += (f"<payments-base:Service><account-base:ServiceID>{item['izhku']}</account-base:ServiceID>"
                    "</payments-base:Service>")
        body.append(
            f"<pay:NotificationOfOrderExecutionType>{RECIPIENT}<payments-base:OrderInfo>"
            f"<payments-base:OrderID>{item.get('order', f'{n:032d}')}</payments-base:OrderID>"
            f"<payments-base:OrderDate>{item['date']}</payments-base:OrderDate>"
            f"<payments-base:Amount>{item['kop']}</payments-base:Amount>"
            f"<payments-base:PaymentPurpose>Оплата ЖКУ за 08.2026</payments-base:PaymentPurpose>{ids}"
            f"</payments-base:OrderInfo><base:TransportGUID>aaaaaaaa-aaaa-4aaa-8aaa-{n:012d}"
            f"</base:TransportGUID></pay:NotificationOfOrderExecutionType>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<pay:importNotificationsOfOrderExecutionRequest '
            f'Id="signed-data-1" base:version="10.0.1.1" {NS}>{"".join(body)}'
            f'</pay:importNotificationsOfOrderExecutionRequest>').encode()


NOTICES = [
    {"date": "2026-09-05", "kop": "10000", "els": "75da533301"},  # p1, ЕЛС in lower case
    {"date": "2026-09-06", "kop": "20500", "izhku": "75DA533302-01"},  # p2 for another amount
    {"date": "2026-09-08", "kop": "3000", "doc": "A1-2026-08"},  # only in ГИС (found by ПД number)
    {"date": "2026-09-07", "kop": "1000", "order": ORDER},  # our ORDER, by OrderID alone
    {"date": "2026-09-07", "kop": "777", "els": "99ZZ999999"},  # only in ГИС, account unknown
]


def reading(guid: str, value: str, day: str, *, t2: str | None = None) -> str:
    if t2 is not None:
        return (f"<dm:exportMeteringDeviceHistoryResult><dm:MeteringDeviceRootGUID>{guid}"
                "</dm:MeteringDeviceRootGUID><dm:ElectricDeviceValue><dm:Values><dm:CurrentValue>"
                f"<mdb:MeteringValueT1>{value}</mdb:MeteringValueT1><mdb:MeteringValueT2>{t2}"
                "</mdb:MeteringValueT2><mdb:EnterIntoSystem>2026-09-20T10:00:00</mdb:EnterIntoSystem>"
                f"<dm:DateValue>{day}T00:00:00</dm:DateValue></dm:CurrentValue></dm:Values>"
                "</dm:ElectricDeviceValue></dm:exportMeteringDeviceHistoryResult>")
    return (f"<dm:exportMeteringDeviceHistoryResult><dm:MeteringDeviceRootGUID>{guid}"
            "</dm:MeteringDeviceRootGUID><dm:OneRateDeviceValue><dm:Values><dm:CurrentValue>"
            "<mdb:MunicipalResource><nsi-base:Code>1</nsi-base:Code>"
            "<nsi-base:GUID>88888888-8888-4888-8888-888888888888</nsi-base:GUID></mdb:MunicipalResource>"
            f"<mdb:MeteringValue>{value}</mdb:MeteringValue><mdb:ReadingsSource>Потребитель</mdb:ReadingsSource>"
            "<mdb:EnterIntoSystem>2026-09-20T10:00:00</mdb:EnterIntoSystem>"
            f"<dm:DateValue>{day}T00:00:00</dm:DateValue></dm:CurrentValue></dm:Values>"
            "</dm:OneRateDeviceValue></dm:exportMeteringDeviceHistoryResult>")


def history_xml(entries: list[str]) -> bytes:
    """ГИС's answer to ``exportMeteringDeviceHistoryRequest`` (``getStateResult``)."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<dm:getStateResult base:version="10.0.1.1" '
            'xmlns:dm="http://dom.gosuslugi.ru/schema/integration/device-metering/" '
            'xmlns:base="http://dom.gosuslugi.ru/schema/integration/base/" '
            'xmlns:mdb="http://dom.gosuslugi.ru/schema/integration/metering-device-base/" '
            'xmlns:nsi-base="http://dom.gosuslugi.ru/schema/integration/nsi-base/">'
            '<base:RequestState>3</base:RequestState>'
            '<base:MessageGUID>11111111-1111-4111-8111-111111111111</base:MessageGUID>'
            + "".join(entries) + "</dm:getStateResult>").encode()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The town of tests/conftest.py with ГИС ids, its September payments imported."""
    home = init_workspace(tmp_path_factory.mktemp("gis") / "home")
    write_registers(home, {**TOWN, "gis_ids": GIS_IDS, "gis_meter_ids": GIS_METER_IDS})
    ingest(home)
    path = home.home / "sber.csv"
    path.write_text(PAYMENTS, encoding="utf-8")
    result = import_payment_file(home, path, today=date(2026, 9, 30))
    assert result.accepted == 4
    return home


def test_reconciliation_finds_missing_extra_and_changed(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "извещения-сбер.xml"
    path.write_bytes(notices_xml(NOTICES))
    before = load_payments(ws)
    r = reconcile_payments(ws, path)
    assert r.counts == {BOTH: 2, DIFFERENT: 1, ONLY_GIS: 2, ONLY_OURS: 1}
    assert r.amounts_kop[ONLY_OURS] == 5000 and r.amounts_kop[ONLY_GIS] == 3777 and r.unresolved == 1
    assert r.csv_path.parent == ws.home / "reconciliation" / "gis" / "извещения-сбер"
    text = "\n".join(r.lines())
    assert "только в ГИС: 2" in text and "не загружаются как платежи" in text
    # the notices never become payments
    assert load_payments(ws).equals(before)

    csv = pl.read_csv(r.csv_path, separator=";", encoding="utf8-lossy", infer_schema=False)
    rows = {(row["Результат"], row["Лицевой счёт"]): row for row in csv.iter_rows(named=True)}
    changed = rows[(DIFFERENT, "A2")]
    assert (changed["Сумма в ГИС, ₽"], changed["Сумма у нас, ₽"], changed["Разница (ГИС − у нас), ₽"]) == (
        "205,00", "200,50", "4,50")
    assert rows[(ONLY_OURS, "A3")]["Код платежа"] == "p3"
    assert rows[(ONLY_GIS, "A1")]["Дата в ГИС"] == "2026-09-08"
    unknown = rows[(ONLY_GIS, None)]
    assert unknown["ЕЛС"] == "99ZZ999999" and "не найден" in unknown["Примечание"]
    assert rows[(ONLY_GIS, "A1")]["Примечание"] == "найден по номеру платёжного документа"
    assert rows[(ONLY_OURS, "A3")]["Примечание"] is None
    by_order = csv.filter(pl.col("Как сопоставлено") == "OrderID = код платежа")
    assert by_order["Код платежа"].to_list() == [ORDER]

    book = load_workbook(r.xlsx_path, read_only=True)
    sheet = list(book.active.iter_rows(values_only=True))
    assert sheet[0][0] == "Результат" and len(sheet) == 1 + 6
    assert sorted(row[0] for row in sheet[1:]).count(BOTH) == 2
    # again: the same report, byte for byte
    first = r.xlsx_path.read_bytes(), r.csv_path.read_bytes()
    reconcile_payments(ws, path)
    assert (r.xlsx_path.read_bytes(), r.csv_path.read_bytes()) == first


def test_invalid_notices_file_is_refused(tmp_path: Path) -> None:
    bad = notices_xml([{"date": "2026-09-05", "kop": "100.50", "els": "75DA533301"}])  # not kopecks
    with pytest.raises(BillingError, match="не соответствует схеме ГИС ЖКХ"):
        parse_notices("bad.xml", bad)
    with pytest.raises(BillingError, match="корневой элемент"):
        parse_notices("other.xml", history_xml([]))


def test_date_tolerance_and_one_to_one() -> None:
    """Two equal payments meet two equal notices once each; a day apart only with ``days``."""
    notices = resolve_accounts(
        parse_notices("n.xml", notices_xml([
            {"date": "2026-09-06", "kop": "10000", "els": "75DA533301"},
            {"date": "2026-09-06", "kop": "10000", "els": "75DA533301"},
            {"date": "2026-09-06", "kop": "10000", "els": "75DA533301"}])),
        pl.DataFrame({"account_id": ["A1"], "els": ["75DA533301"], "izhku": [None]},
                     schema={"account_id": pl.String, "els": pl.String, "izhku": pl.String}),
        pl.DataFrame({"account_id": ["A1"]}))
    ours = pl.DataFrame({"payment_id": ["x", "y"], "agent": ["sber", "sber"], "account_id": ["A1", "A1"],
                         "paid_on": [date(2026, 9, 5), date(2026, 9, 6)], "amount_kop": [10000, 10000],
                         "source_file": ["f", "f"]}, schema=OURS_SCHEMA)
    strict = reconcile(notices, ours)
    assert sorted(strict["status"].to_list()) == sorted([BOTH, ONLY_GIS, ONLY_GIS, ONLY_OURS])
    loose = reconcile(notices, ours, days=1)
    assert sorted(loose["status"].to_list()) == sorted([BOTH, BOTH, ONLY_GIS])


def test_readings_join_with_source_gis_and_rejects(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "показания-гис.xml"
    path.write_bytes(history_xml([
        reading(G1, "113.25", "2026-09-20"),             # accepted
        reading(G_UNKNOWN, "5", "2026-09-20"),           # unknown meter
        reading(G1, "114.1234567", "2026-09-21"),        # 7 decimals
        reading(G1, "4512.3", "2026-09-22", t2="1830"),  # two-tariff
        reading(G1, "1", "2019-12-31"),                  # before installation
        reading(G1, "120", "2026-10-15"),                # after the import day
    ]))
    r = import_gis_readings(ws, path, today=date(2026, 9, 30))
    assert (r.read, r.accepted, r.duplicates, r.rejected) == (6, 1, 0, 5)
    stored = load_gis_readings(ws)
    assert stored.select("meter_id", "read_on", "value", "gis_guid", "entered_by").rows() == [
        ("M1", date(2026, 9, 20), Decimal("113.250000"), G1, "Потребитель")]

    assert r.rejects_path is not None
    rejects = pl.read_csv(r.rejects_path, separator=";", encoding="utf8-lossy", infer_schema=False)
    assert rejects.columns == ["file", "row", "column", "value", "reason"]
    assert set(rejects["file"]) == {path.name}
    reasons = dict(zip(rejects["row"].cast(pl.Int64), rejects["reason"], strict=True))
    assert "gis_meter_ids" in reasons[2] and "6 знаков" in reasons[3] and "T2" in reasons[4]
    assert "установки прибора" in reasons[5] and "позже дня загрузки" in reasons[6]
    assert rejects.filter(pl.col("row") == "2")["column"].to_list() == ["MeteringDeviceRootGUID"]

    # again: nothing new
    again = import_gis_readings(ws, path, today=date(2026, 9, 30))
    assert (again.accepted, again.duplicates) == (0, 1) and load_gis_readings(ws).equals(stored)

    # another value for the same meter and day from another file is refused, not overwritten
    other = tmp_path / "показания-2.xml"
    other.write_bytes(history_xml([reading(G1, "113.5", "2026-09-20")]))
    changed = import_gis_readings(ws, other, today=date(2026, 9, 30))
    assert (changed.accepted, changed.rejected) == (0, 1)
    assert load_gis_readings(ws).height == 1

    # the close's readings: the register plus ГИС (source gis); the register wins on its day
    register = load_store(ws)["readings"]
    joined = with_gis_readings(register, stored)
    assert joined.height == register.height + 1
    gis_row = joined.filter(pl.col("source") == "gis")
    assert gis_row.select("meter_id", "read_on").rows() == [("M1", date(2026, 9, 20))]
    same_day = register.head(1)
    clash = stored.with_columns(pl.lit(same_day["read_on"][0]).alias("read_on"))
    assert with_gis_readings(register, clash).equals(register)


def test_import_request_shape_is_read() -> None:
    """``importMeteringDeviceValuesRequest`` (the shape we send) is read like ГИС's export."""
    from pipeline.ingest.gis import parse_readings

    data = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<dm:importMeteringDeviceValuesRequest Id="signed-data-1" '
        'base:version="10.0.1.1" xmlns:dm="http://dom.gosuslugi.ru/schema/integration/device-metering/" '
        'xmlns:base="http://dom.gosuslugi.ru/schema/integration/base/" '
        'xmlns:mdb="http://dom.gosuslugi.ru/schema/integration/metering-device-base/" '
        'xmlns:nsi-base="http://dom.gosuslugi.ru/schema/integration/nsi-base/"><dm:MeteringDevicesValues>'
        f"<dm:MeteringDeviceRootGUID>{G1}</dm:MeteringDeviceRootGUID><dm:OneRateDeviceValue>"
        "<dm:CurrentValue><mdb:MunicipalResource><nsi-base:Code>1</nsi-base:Code>"
        "<nsi-base:GUID>88888888-8888-4888-8888-888888888888</nsi-base:GUID></mdb:MunicipalResource>"
        "<mdb:MeteringValue>123.456</mdb:MeteringValue><dm:DateValue>2026-09-20</dm:DateValue>"
        "<base:TransportGUID>99999999-9999-4999-8999-999999999999</base:TransportGUID>"
        "<dm:Period><base:Year>2026</base:Year><base:Month>9</base:Month></dm:Period></dm:CurrentValue>"
        "</dm:OneRateDeviceValue></dm:MeteringDevicesValues></dm:importMeteringDeviceValuesRequest>").encode()
    rows = parse_readings("import.xml", data)
    assert rows.select("guid", "kind", "value", "read_on", "period").rows() == [
        (G1, "one_rate", "123.456", date(2026, 9, 20), "2026-09")]


def test_the_close_reads_the_gis_readings(ws: Workspace, tmp_path: Path) -> None:
    from pipeline.close import load_inputs
    from pipeline.dates import Period

    path = tmp_path / "показания-гис.xml"
    path.write_bytes(history_xml([reading(G1, "113.25", "2026-09-20")]))
    import_gis_readings(ws, path, today=date(2026, 9, 30))
    readings = load_inputs(ws, Period(2026, 9)).regs["readings"]
    assert readings.filter(pl.col("source") == "gis")["read_on"].to_list() == [date(2026, 9, 20)]
