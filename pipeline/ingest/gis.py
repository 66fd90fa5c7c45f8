"""``billing import gis-payments|gis-readings FILE``: what ГИС ЖКХ sends back.

Two answers of ГИС ЖКХ come back as XML files (the SOAP transport and signing are out of
scope: an operator downloads the file, or a signing gateway saves it):

* **payment notices** (извещения о принятии к исполнению распоряжений), the body
  ``payment:importNotificationsOfOrderExecutionRequest`` as a bank or payment agent sends
  it to ГИС. They are *reconciled* against the payments already imported from the bank
  registers (:func:`pipeline.ingest.payments.load_payments`) and never imported as new
  payments: the bank register is the source of money. The result is a reconciliation
  report (in both, amounts differ, only in ГИС, only ours) as CSV and XLSX under
  ``HOME/reconciliation/gis/<file stem>/``.
* **meter readings** residents entered in ГИС: either the answer to
  ``exportMeteringDeviceHistoryRequest`` (``device-metering:getStateResult`` holding
  ``exportMeteringDeviceHistoryResult`` entries) or a message in the
  ``device-metering:importMeteringDeviceValuesRequest`` shape. Only current readings
  (``CurrentValue``) are taken; control and verification values are not readings of the
  register. They are stored in ``store/gis_readings.parquet`` (like the bank readings
  beside them) and the close adds them to the readings register with ``source = gis``
  (:func:`with_gis_readings`); the register wins on the same meter and day.

Every file is validated against the ГИС ЖКХ schemas (package 16.3.0.0) with ``xmlschema``
first: a file that does not validate is refused whole, naming the line. Pure stages
(:func:`parse_notices`, :func:`resolve_accounts`, :func:`reconcile`, :func:`parse_readings`,
:func:`classify_readings`, :func:`with_gis_readings`) work on frames; the functions with a
workspace do the I/O around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.ingest.parse import REJECT_SCHEMA
from pipeline.ingest.readers import read_store_table
from pipeline.workspace import BillingError, Workspace, atomic_write_bytes, locked, write_parquet_atomic


def gis_schema(name: str) -> Any:
    """The compiled schema ``name`` (``payment``, ``device-metering``), built once per process
    by :func:`pipeline.export.gis_schema.schema` (shared with the exports; no URL is fetched)."""
    from pipeline.export.gis_schema import schema

    return schema(name)


def _local(element: Any) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _text(element: Any, path: str) -> str | None:
    found = element.find(path)
    if found is None or found.text is None:
        return None
    text: str = found.text.strip()
    return text or None


def read_gis_xml(name: str, data: bytes, schema_name: str, roots: tuple[str, ...]) -> Any:
    """Parse and validate one ГИС ЖКХ file; returns its root element (lxml).

    Refuses (Russian, naming the file) what is not XML, a root element other than ``roots``
    and anything the schema rejects (the first errors with their lines).
    """
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        raise BillingError(f"{name}: не XML-файл ({err}) — ожидается файл ГИС ЖКХ "
                           f"({' или '.join(roots)})") from None
    if _local(root) not in roots:
        raise BillingError(f"{name}: корневой элемент «{_local(root)}», а ожидается "
                           f"{' или '.join(roots)} — это другой документ ГИС ЖКХ")
    errors = []
    for error in gis_schema(schema_name).iter_errors(root):
        line = getattr(error.elem, "sourceline", None) if error.elem is not None else None
        where = f"строка {line}: " if line else ""
        errors.append(f"{where}{error.reason or error.message}")
        if len(errors) >= 5:
            break
    if errors:
        raise BillingError(f"{name}: файл не соответствует схеме ГИС ЖКХ (пакет 16.3.0.0) и не "
                           f"принят: " + "; ".join(errors))
    return root


# --------------------------------------------------------------------------- payment notices

NOTICES_ROOT = "importNotificationsOfOrderExecutionRequest"

NOTICE_SCHEMA = pl.Schema({
    "row": pl.Int64(),  # the notice's place in the file, from 1
    "order_id": pl.String(),
    "order_date": pl.Date(),
    "amount_kop": pl.Int64(),
    "purpose": pl.String(),
    "payment_document_id": pl.String(),
    "payment_document_number": pl.String(),
    "period": pl.String(),
    "els": pl.String(),
    "izhku": pl.String(),
    "account_number": pl.String(),
    "transport_guid": pl.String(),
})


def parse_notices(name: str, data: bytes) -> pl.DataFrame:
    """The notices of one ``importNotificationsOfOrderExecutionRequest`` file (schema-checked).

    Both notice forms are read: ``NotificationOfOrderExecutionType`` (account by ЕЛС,
    ИЖКУ, payment document or account number) and ``NotificationOfOrderExecution139Type``
    (ИЖКУ or payment document id only). Amounts are kopecks, as in the schema.
    """
    root = read_gis_xml(name, data, "payment", (NOTICES_ROOT,))
    rows = []
    for number, notice in enumerate((n for n in root if _local(n).startswith("NotificationOfOrder")),
                                    start=1):
        info = notice.find("{*}OrderInfo")
        year, month = _text(info, ".//{*}Year"), _text(info, ".//{*}Month")
        rows.append({
            "row": number,
            "order_id": _text(info, "{*}OrderID"),
            "order_date": date.fromisoformat(str(_text(info, "{*}OrderDate"))),
            "amount_kop": int(Decimal(str(_text(info, "{*}Amount")))),
            "purpose": _text(info, "{*}PaymentPurpose"),
            "payment_document_id": _text(info, "{*}PaymentDocumentID"),
            "payment_document_number": _text(info, "{*}PaymentDocumentNumber"),
            "period": f"{int(year):04d}-{int(month):02d}" if year and month else None,
            "els": _text(info, "{*}UnifiedAccountNumber"),
            "izhku": _text(info, ".//{*}ServiceID"),
            "account_number": _text(info, "{*}AccountNumber"),
            "transport_guid": _text(notice, "{*}TransportGUID"),
        })
    return pl.DataFrame(rows, schema=NOTICE_SCHEMA)


def resolve_accounts(notices: pl.DataFrame, gis_ids: pl.DataFrame, accounts: pl.DataFrame) -> pl.DataFrame:
    """``notices`` with ``account_id`` and ``found_by``: our account of each notice. Pure.

    In this order: ИЖКУ, then ЕЛС of the ``gis_ids`` register (every version: an id ГИС
    once gave stays the account's), the account number (``AccountNumber`` = our
    ``account_id``), the payment document number (our account id, optionally followed by
    ``-ГГГГ-ММ``). An id that names two accounts names none (left unresolved).
    """
    known = accounts.select("account_id").unique()

    def unique_map(key: str) -> pl.DataFrame:
        ids = gis_ids.filter(pl.col(key).is_not_null()).select(pl.col(key).str.to_uppercase(), "account_id")
        ids = ids.unique()
        single = ids.group_by(key).agg(pl.col("account_id").first(), pl.len().alias("_n"))
        return single.filter(pl.col("_n") == 1).drop("_n")

    by_izhku = unique_map("izhku").rename({"izhku": "_izhku", "account_id": "_by_izhku"})
    by_els = unique_map("els").rename({"els": "_els", "account_id": "_by_els"})
    by_number = known.select(pl.col("account_id").alias("_number"), pl.col("account_id").alias("_by_number"))
    by_doc = known.select(pl.col("account_id").alias("_doc"), pl.col("account_id").alias("_by_doc"))
    out = notices.with_columns(
        pl.col("izhku").str.to_uppercase().alias("_izhku"), pl.col("els").str.to_uppercase().alias("_els"),
        pl.col("account_number").alias("_number"),
        pl.col("payment_document_number").str.replace(r"-\d{4}-\d{2}$", "").alias("_doc"),
    ).join(by_izhku, on="_izhku", how="left").join(by_els, on="_els", how="left").join(
        by_number, on="_number", how="left").join(by_doc, on="_doc", how="left")
    return out.with_columns(
        pl.coalesce("_by_izhku", "_by_els", "_by_number", "_by_doc").alias("account_id"),
        pl.when(pl.col("_by_izhku").is_not_null()).then(pl.lit("ИЖКУ"))
        .when(pl.col("_by_els").is_not_null()).then(pl.lit("ЕЛС"))
        .when(pl.col("_by_number").is_not_null()).then(pl.lit("номеру лицевого счёта"))
        .when(pl.col("_by_doc").is_not_null()).then(pl.lit("номеру платёжного документа"))
        .alias("found_by"),
    ).drop("_izhku", "_els", "_number", "_doc", "_by_izhku", "_by_els", "_by_number", "_by_doc")


#: Statuses of the reconciliation report.
BOTH, DIFFERENT, ONLY_GIS, ONLY_OURS = "в обоих", "суммы различаются", "только в ГИС", "только у нас"

OURS_SCHEMA = pl.Schema({
    "payment_id": pl.String(), "agent": pl.String(), "account_id": pl.String(), "paid_on": pl.Date(),
    "amount_kop": pl.Int64(), "source_file": pl.String(),
})

REPORT_SCHEMA = pl.Schema({
    "status": pl.String(), "account_id": pl.String(), "gis_date": pl.Date(), "gis_amount_kop": pl.Int64(),
    "our_date": pl.Date(), "our_amount_kop": pl.Int64(), "difference_kop": pl.Int64(),
    "order_id": pl.String(), "els": pl.String(), "izhku": pl.String(), "payment_document": pl.String(),
    "payment_id": pl.String(), "agent": pl.String(), "payments_file": pl.String(), "notice_row": pl.Int64(),
    "matched_by": pl.String(), "note": pl.String(),
})

REPORT_TITLES = {
    "status": "Результат", "account_id": "Лицевой счёт", "gis_date": "Дата в ГИС",
    "gis_amount": "Сумма в ГИС, ₽",
    "our_date": "Дата у нас", "our_amount": "Сумма у нас, ₽", "difference": "Разница (ГИС − у нас), ₽",
    "order_id": "Идентификатор распоряжения (OrderID)", "els": "ЕЛС", "izhku": "ИЖКУ",
    "payment_document": "Платёжный документ", "payment_id": "Код платежа", "agent": "Агент",
    "payments_file": "Файл платежей", "notice_row": "Извещение №", "matched_by": "Как сопоставлено",
    "note": "Примечание",
}


def ours_in_scope(payments: pl.DataFrame, first: date, last: date, agent: str | None = None) -> pl.DataFrame:
    """Our payments a notices file can answer for: paid ``first``..``last`` (by ``agent``). Pure.

    Refunds are not payments to compare; an original fully refunded is left out too.
    """
    pays = payments.select(
        "payment_id", "agent", "account_id", "paid_on",
        (pl.col("amount").cast(pl.Decimal(18, 2)) * 100).cast(pl.Int64).alias("amount_kop"), "refund_of",
        "source_file")
    refunded = pays.filter(pl.col("amount_kop") < 0).group_by("agent", "refund_of").agg(
        (-pl.col("amount_kop")).sum().alias("_back")).rename({"refund_of": "payment_id"})
    pays = pays.filter(pl.col("amount_kop") > 0).join(refunded, on=["agent", "payment_id"], how="left")
    pays = pays.filter(pl.col("_back").is_null() | (pl.col("_back") < pl.col("amount_kop")))
    pays = pays.filter(pl.col("paid_on").is_between(pl.lit(first), pl.lit(last)))
    if agent:
        pays = pays.filter(pl.col("agent") == agent)
    return pays.select(list(OURS_SCHEMA)).cast(OURS_SCHEMA)


def _pairs(gis: pl.DataFrame, ours: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """One-to-one pairs (row, _oid) equal on ``keys`` (the n-th of a kind meets the n-th)."""
    left = gis.with_columns(pl.int_range(pl.len()).over(keys).alias("_n"))
    right = ours.with_columns(pl.int_range(pl.len()).over(keys).alias("_n"))
    return left.join(right, on=[*keys, "_n"]).select("row", "_oid")


def _offsets(days: int) -> list[int]:
    return [0] + [d for k in range(1, days + 1) for d in (k, -k)]


def reconcile(notices: pl.DataFrame, ours: pl.DataFrame, days: int = 0) -> pl.DataFrame:
    """The reconciliation of resolved notices with our payments (:data:`REPORT_SCHEMA`). Pure.

    ``notices``: :func:`resolve_accounts` output; ``ours``: :data:`OURS_SCHEMA`. Each
    notice meets at most one payment and each payment one notice, in this order: the
    same order id (``OrderID`` = our payment id); the same account, day and amount;
    the same account and amount up to ``days`` apart; the same account and day (up to
    ``days`` apart) with another amount — «суммы различаются». What is left is «только
    в ГИС» or «только у нас».
    """
    gis = notices.sort("row").select("row", "order_id", "account_id", pl.col("order_date").alias("day"),
                                     "amount_kop")
    mine = ours.sort("paid_on", "agent", "payment_id").with_row_index("_oid").select(
        "_oid", "payment_id", "account_id", pl.col("paid_on").alias("day"), "amount_kop")
    found: list[pl.DataFrame] = []

    def take(pairs: pl.DataFrame, how: str) -> None:
        nonlocal gis, mine
        found.append(pairs.with_columns(pl.lit(how).alias("matched_by")))
        gis = gis.join(pairs, on="row", how="anti")
        mine = mine.join(pairs, on="_oid", how="anti")

    by_order = gis.filter(pl.col("order_id").is_not_null()).rename({"order_id": "payment_id"})
    take(_pairs(by_order, mine, ["payment_id"]), "OrderID = код платежа")
    for offset in _offsets(days):
        shifted = gis.with_columns(pl.col("day") + pl.duration(days=offset))
        how = "счёт, дата, сумма" if offset == 0 else f"счёт, сумма, дата ±{abs(offset)} дн."
        take(_pairs(shifted, mine, ["account_id", "day", "amount_kop"]), how)
    for offset in _offsets(days):
        shifted = gis.with_columns(pl.col("day") + pl.duration(days=offset))
        how = "счёт и дата" if offset == 0 else f"счёт, дата ±{abs(offset)} дн."
        take(_pairs(shifted, mine, ["account_id", "day"]), how)

    pairs = pl.concat(found)
    ours_n = ours.sort("paid_on", "agent", "payment_id").with_row_index("_oid")
    note_expr = (pl.when(pl.col("account_id").is_null())
                 .then(pl.lit("лицевой счёт не найден по ИЖКУ, ЕЛС, номеру счёта и платёжного документа"))
                 .otherwise(pl.lit("найден по ") + pl.col("found_by")))
    gis_side = notices.select(
        "row", pl.col("account_id").alias("_gis_account"), pl.col("order_date").alias("gis_date"),
        pl.col("amount_kop").alias("gis_amount_kop"), "order_id", "els", "izhku",
        pl.coalesce("payment_document_id", "payment_document_number").alias("payment_document"),
        note_expr.alias("note"))
    our_side = ours_n.select(
        "_oid", pl.col("account_id").alias("_our_account"), pl.col("paid_on").alias("our_date"),
        pl.col("amount_kop").alias("our_amount_kop"), "payment_id", "agent",
        pl.col("source_file").alias("payments_file"))
    matched = pairs.join(gis_side, on="row").join(our_side, on="_oid")
    only_gis = gis_side.join(pairs, on="row", how="anti").with_columns(pl.lit(ONLY_GIS).alias("status"))
    only_ours = our_side.join(pairs, on="_oid", how="anti").with_columns(pl.lit(ONLY_OURS).alias("status"))
    matched = matched.with_columns(
        pl.when(pl.col("gis_amount_kop") == pl.col("our_amount_kop")).then(pl.lit(BOTH))
        .otherwise(pl.lit(DIFFERENT)).alias("status"))
    report = pl.concat([matched, only_gis, only_ours], how="diagonal_relaxed").with_columns(
        pl.coalesce("_gis_account", "_our_account").alias("account_id"),
        (pl.col("gis_amount_kop") - pl.col("our_amount_kop")).alias("difference_kop"),
        pl.col("row").alias("notice_row"),
        pl.when(pl.col("status") == ONLY_OURS).then(pl.lit(None, pl.String))
        .when(pl.col("_gis_account").is_null() & (pl.col("status") != ONLY_GIS))
        .then(pl.lit("лицевой счёт — по сопоставленному платежу")).otherwise(pl.col("note")).alias("note"),
    )
    order = {ONLY_GIS: 0, ONLY_OURS: 1, DIFFERENT: 2, BOTH: 3}
    report = report.with_columns(pl.col("status").replace_strict(order, return_dtype=pl.Int8).alias("_k"))
    return report.sort("_k", "account_id", "gis_date", "our_date", "notice_row", "payment_id",
                       nulls_last=True).select(list(REPORT_SCHEMA)).cast(REPORT_SCHEMA)


@dataclass(frozen=True)
class Reconciliation:
    """The outcome of ``billing import gis-payments`` (amounts in kopecks)."""

    file: str
    notices: int
    notices_kop: int
    counts: dict[str, int]
    amounts_kop: dict[str, int]
    unresolved: int
    first: date
    last: date
    csv_path: Path
    xlsx_path: Path
    agent: str | None = None

    def lines(self) -> list[str]:
        """The Russian summary of the console."""
        from pipeline.money import rubles_text

        def part(status: str) -> str:
            return f"{status}: {self.counts.get(status, 0)} на {rubles_text(self.amounts_kop.get(status, 0))}"

        lines = [f"Сверка с ГИС ЖКХ: {self.file} — извещений {self.notices} на "
                 f"{rubles_text(self.notices_kop)} за {self.first:%d.%m.%Y}–{self.last:%d.%m.%Y}",
                 f"  {part(BOTH)}", f"  {part(DIFFERENT)} (суммы по ГИС)", f"  {part(ONLY_GIS)}"]
        if self.unresolved:
            lines.append(f"    из них не найден лицевой счёт: {self.unresolved} "
                         f"(нет ЕЛС/ИЖКУ в реестре gis_ids)")
        lines.append(f"  {part(ONLY_OURS)}")
        if self.counts.get(ONLY_OURS) and not self.agent:
            lines.append("  «Только у нас» — платежи всех агентов за эти дни; чтобы сверять только с "
                         "банком-отправителем, укажите --agent ИМЯ.")
        lines.append("  Извещения ГИС не загружаются как платежи: деньги учитываются по реестрам банков.")
        lines.append(f"  Отчёт: {self.csv_path} и {self.xlsx_path.name}")
        return lines


def reconciliation_dir(ws: Workspace, file: Path) -> Path:
    return ws.home / "reconciliation" / "gis" / file.stem


def report_frame(report: pl.DataFrame) -> pl.DataFrame:
    """The report with rubles (Decimal) instead of kopecks, in place, for CSV and XLSX."""
    from pipeline.money import kopecks_to_decimal_expr

    return report.select(kopecks_to_decimal_expr(c).alias(c[:-4]) if c.endswith("_kop") else pl.col(c)
                         for c in report.columns)


def reconcile_payments(ws: Workspace, path: Path, *, days: int = 0, agent: str | None = None,
                       out: Path | None = None) -> Reconciliation:
    """``billing import gis-payments FILE``: reconcile a notices file, write the report.

    Reads nothing but the file, the current registers (``accounts``, ``gis_ids``) and the
    imported payments; writes only the report (CSV and XLSX) into ``out`` (default
    :func:`reconciliation_dir`). Running it again rewrites the same report.
    """
    from pipeline.ingest.payments import load_payments
    from pipeline.ingest.registers import load_store
    from pipeline.tables import excel_csv_bytes, xlsx_bytes

    if not path.is_file():
        raise BillingError(f"Файл извещений ГИС ЖКХ не найден: {path}")
    if days < 0:
        raise BillingError("--days: число дней не может быть отрицательным")
    notices = parse_notices(path.name, path.read_bytes())
    if not notices.height:
        raise BillingError(f"{path.name}: в файле нет извещений")
    regs = load_store(ws, names=["accounts", "gis_ids"])
    notices = resolve_accounts(notices, regs["gis_ids"], regs["accounts"])
    first, last = notices["order_date"].min(), notices["order_date"].max()
    assert isinstance(first, date) and isinstance(last, date)
    ours = ours_in_scope(load_payments(ws), first - _day(days), last + _day(days), agent)
    report = reconcile(notices, ours, days)
    folder = out or reconciliation_dir(ws, path)
    frame = report_frame(report)
    csv_path, xlsx_path = folder / "reconciliation.csv", folder / "reconciliation.xlsx"
    atomic_write_bytes(csv_path, excel_csv_bytes(frame, REPORT_TITLES))
    atomic_write_bytes(xlsx_path, xlsx_bytes(frame, datetime.combine(last, time()), "Сверка с ГИС",
                                             REPORT_TITLES))
    stats = report.group_by("status").agg(
        pl.len().alias("n"), pl.coalesce("gis_amount_kop", "our_amount_kop").sum().alias("kop"))
    return Reconciliation(
        path.name, notices.height, int(notices["amount_kop"].sum()),
        dict(zip(stats["status"], stats["n"], strict=True)),
        dict(zip(stats["status"], stats["kop"], strict=True)),
        report.filter((pl.col("status") == ONLY_GIS) & pl.col("account_id").is_null()).height,
        first, last, csv_path, xlsx_path, agent)


def _day(days: int) -> Any:
    from datetime import timedelta

    return timedelta(days=days)


# --------------------------------------------------------------------------- meter readings

READINGS_ROOTS = ("getStateResult", "importMeteringDeviceValuesRequest")

#: One current reading of a ГИС file, as read (values as text: checked later).
GIS_VALUE_SCHEMA = pl.Schema({
    "row": pl.Int64(),  # the reading's place in the file, from 1
    "guid": pl.String(),
    "kind": pl.String(),  # one_rate, electric, volume
    "value": pl.String(),
    "t2": pl.String(),
    "t3": pl.String(),
    "read_on": pl.Date(),
    "period": pl.String(),
    "resource": pl.String(),
    "entered_by": pl.String(),
    "transport_guid": pl.String(),
})

#: ``store/gis_readings.parquet``.
GIS_READINGS_SCHEMA = pl.Schema({
    "meter_id": pl.String(),
    "read_on": pl.Date(),
    "value": pl.Decimal(18, 6),
    "gis_guid": pl.String(),
    "entered_by": pl.String(),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    "file_sha256": pl.String(),
    "imported_at": pl.Datetime("us"),
})

_KINDS = {"OneRateDeviceValue": "one_rate", "ElectricDeviceValue": "electric", "VolumeDeviceValue": "volume"}


def parse_readings(name: str, data: bytes) -> pl.DataFrame:
    """The current readings of a ГИС ЖКХ device-metering file (schema-checked), one row each.

    Accepted: ``getStateResult`` with ``exportMeteringDeviceHistoryResult`` (ГИС's answer to
    ``exportMeteringDeviceHistoryRequest``) and ``importMeteringDeviceValuesRequest``.
    Only ``CurrentValue`` entries are readings; ``BaseValue``, ``ControlValue``,
    ``VerificationValue`` and archived values are not taken.
    """
    root = read_gis_xml(name, data, "device-metering", READINGS_ROOTS)
    devices = [d for d in root.iter() if _local(d) in ("exportMeteringDeviceHistoryResult",
                                                       "MeteringDevicesValues")]
    rows: list[dict[str, Any]] = []
    for device in devices:
        guid = _text(device, "{*}MeteringDeviceRootGUID") or _text(device, "{*}MeteringDeviceVersionGUID")
        for block in device:
            kind = _KINDS.get(_local(block))
            if kind is None:
                continue
            for value in block.iter("{*}CurrentValue"):
                day = str(_text(value, "{*}DateValue"))[:10]
                year, month = _text(value, "{*}Period/{*}Year"), _text(value, "{*}Period/{*}Month")
                rows.append({
                    "row": len(rows) + 1, "guid": guid.lower() if guid else None, "kind": kind,
                    "value": _text(value, "{*}MeteringValue") or _text(value, "{*}MeteringValueT1"),
                    "t2": _text(value, "{*}MeteringValueT2"), "t3": _text(value, "{*}MeteringValueT3"),
                    "read_on": date.fromisoformat(day),
                    "period": f"{int(year):04d}-{int(month):02d}" if year and month else None,
                    "resource": _text(value, "{*}MunicipalResource/{*}Name"),
                    "entered_by": _text(value, "{*}ReadingsSource"),
                    "transport_guid": _text(value, "{*}TransportGUID"),
                })
    return pl.DataFrame(rows, schema=GIS_VALUE_SCHEMA)


def meter_guids(regs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """(guid, meter_id): how a ГИС device GUID finds our meter, from the ``gis_meter_ids``
    register (``device_guid``, every version: a GUID once given stays its meter's). Pure.

    Compared without regard to case; a GUID given to two meters finds neither.
    """
    ids = regs["gis_meter_ids"].select(pl.col("device_guid").cast(pl.String).str.strip_chars()
                                       .str.to_lowercase().alias("guid"),
                                       pl.col("meter_id").cast(pl.String))
    ids = ids.filter(pl.col("guid").is_not_null()).unique()
    single = ids.group_by("guid").agg(pl.col("meter_id").first(), pl.len().alias("_n"))
    return single.filter(pl.col("_n") == 1).drop("_n").sort("guid")


def classify_readings(readings: pl.DataFrame, regs: dict[str, pl.DataFrame], stored: pl.DataFrame,
                      file: str, today: date) -> tuple[pl.DataFrame, int, pl.DataFrame]:
    """Split parsed readings into (accepted in :data:`GIS_READINGS_SCHEMA` without the file
    columns, duplicates, rejects). Pure.

    Rejected, with the reason in Russian: a device GUID no meter has; volumes instead of
    readings; a two- or three-tariff reading (the register keeps one value per meter and
    day); a value with more than 6 decimals or above 10¹²; a day after ``today``, before
    the meter was installed or after it was removed; a second reading of the meter and
    day in the file or one that differs from the reading already loaded from ГИС for that
    day. A reading already loaded (same meter, day and value) is a duplicate: skipped.
    """
    meters = regs["meters"].select("meter_id", "installed_on", "removed_on")
    rows = readings.join(meter_guids(regs), on="guid", how="left").join(meters, on="meter_id", how="left")
    rows = rows.with_columns(pl.col("value").cast(pl.Decimal(38, 7), strict=False).alias("_value"))
    day_text = pl.col("read_on").dt.strftime("%Y-%m-%d")
    reasons = [
        ("MeteringDeviceRootGUID", pl.col("guid"), pl.col("meter_id").is_null(),
         pl.lit("прибор учёта с этим GUID ГИС ЖКХ не найден в реестре gis_meter_ids (device_guid) — "
                "добавьте строку meter_id, device_guid и загрузите файл снова")),
        ("VolumeDeviceValue", pl.col("value"), pl.col("kind") == "volume",
         pl.lit("объём вместо показаний не принимается: нужны показания прибора")),
        ("MeteringValueT2", pl.coalesce("t2", "t3"), pl.col("t2").is_not_null() | pl.col("t3").is_not_null(),
         pl.lit("многотарифные показания (T2/T3) не принимаются: в реестре одно показание прибора на день")),
        ("MeteringValue", pl.col("value"), pl.col("_value").is_null(),
         pl.lit("нет показаний или они не число")),
        ("MeteringValue", pl.col("value"), pl.col("value").str.extract(r"\.(\d+)$").str.len_chars() > 6,
         pl.lit("больше 6 знаков после запятой — показания не округляются")),
        ("MeteringValue", pl.col("value"), pl.col("_value") > pl.lit(Decimal(10) ** 12, pl.Decimal(38, 7)),
         pl.lit("должно быть не больше 1000000000000")),
        ("DateValue", day_text, pl.col("read_on") > pl.lit(today),
         pl.lit(f"дата показаний позже дня загрузки {today:%d.%m.%Y}")),
        ("DateValue", day_text, pl.col("read_on") < pl.col("installed_on"),
         pl.lit("дата показаний раньше установки прибора ") + pl.col("installed_on").dt.strftime("%d.%m.%Y")),
        ("DateValue", day_text, pl.col("read_on") > pl.col("removed_on"),
         pl.lit("дата показаний позже снятия прибора ") + pl.col("removed_on").dt.strftime("%d.%m.%Y")),
    ]
    bad = pl.concat([
        rows.filter(when.fill_null(False)).select(
            pl.lit(file).alias("file"), "row", pl.lit(column).alias("column"), value.alias("value"),
            why.alias("reason"))
        for column, value, when, why in reasons
    ]).cast(REJECT_SCHEMA)
    good = rows.join(bad.select("row").unique(), on="row", how="anti").with_columns(
        pl.col("_value").cast(pl.Decimal(18, 6)).alias("value_dec"))

    # a second reading of the same meter and day in the file
    first = good.unique(["meter_id", "read_on"], keep="first", maintain_order=True)
    again = good.join(first.select("row"), on="row", how="anti")
    before = stored.select("meter_id", "read_on", pl.col("value").alias("_stored"), "source_file")
    checked = first.join(before, on=["meter_id", "read_on"], how="left")
    duplicates = checked.filter(pl.col("_stored") == pl.col("value_dec"))
    differ = checked.filter(pl.col("_stored").is_not_null() & (pl.col("_stored") != pl.col("value_dec")))
    rejects = pl.concat([
        bad,
        again.select(pl.lit(file).alias("file"), "row", pl.lit("DateValue").alias("column"), "value",
                     pl.lit("второе показание этого прибора за тот же день в файле").alias("reason")),
        differ.select(pl.lit(file).alias("file"), "row", pl.lit("MeteringValue").alias("column"), "value",
                      (pl.lit("на этот день уже загружено другое показание из ГИС (")
                       + pl.col("_stored").cast(pl.String) + pl.lit(", файл ") + pl.col("source_file")
                       + pl.lit(") — исправьте показание в реестре readings")).alias("reason")),
    ]).cast(REJECT_SCHEMA).sort("row", "column")
    accepted = checked.filter(pl.col("_stored").is_null()).select(
        "meter_id", "read_on", pl.col("value_dec").alias("value"), pl.col("guid").alias("gis_guid"),
        "entered_by", pl.col("row").alias("source_row"))
    return accepted, duplicates.height, rejects


def gis_readings_path(ws: Workspace) -> Path:
    return ws.store / "gis_readings.parquet"


def load_gis_readings(ws: Workspace) -> pl.DataFrame:
    """The readings loaded from ГИС ЖКХ (``store/gis_readings.parquet``; empty when none)."""
    return read_store_table(gis_readings_path(ws), GIS_READINGS_SCHEMA)


def with_gis_readings(readings: pl.DataFrame, gis: pl.DataFrame) -> pl.DataFrame:
    """The close's readings plus those residents entered in ГИС (``source = gis``). Pure.

    ``readings`` is the register's frame (with the bank readings already added); it wins
    on the same meter and day.
    """
    if not gis.height:
        return readings
    extra = gis.select(
        "meter_id", "read_on", pl.col("value").cast(readings.schema["value"]),
        pl.lit("gis").alias("source"), pl.lit(None, pl.Int64).alias("source_row"),
        pl.lit(False).alias("confirmed"),
    )
    columns = [c for c in readings.columns if c in extra.columns]
    extra = extra.select(columns).with_columns(
        pl.lit(None, readings.schema[c]).alias(c) for c in readings.columns if c not in columns)
    both = pl.concat([readings, extra.select(readings.columns).cast(readings.schema)])
    return both.unique(["meter_id", "read_on"], keep="first", maintain_order=True)


@dataclass(frozen=True)
class ReadingsImport:
    """The outcome of ``billing import gis-readings``."""

    file: str
    sha256: str
    read: int
    accepted: int
    duplicates: int
    rejected: int
    rejects_path: Path | None

    def line(self) -> str:
        return (f"{self.file}: показаний из ГИС ЖКХ {self.read}, принято {self.accepted}"
                + counts_tail(self.duplicates, self.rejected, self.rejects_path)
                + (" — принятые войдут в ближайшее закрытие периода (источник gis)" if self.accepted else ""))


def counts_tail(duplicates: int, rejected: int, rejects_path: Path | None) -> str:
    """«, уже загружены ранее N, отклонено M (отчёт: …)» of an import's summary line."""
    return ((f", уже загружены ранее {duplicates}" if duplicates else "")
            + (f", отклонено {rejected} (отчёт: {rejects_path})" if rejected else ""))


@locked("import gis-readings")
def import_gis_readings(ws: Workspace, path: Path, *, today: date | None = None) -> ReadingsImport:
    """``billing import gis-readings FILE``: store the file's good readings, report the rest.

    Importing the same file again stores nothing (its readings are duplicates). Bad rows
    go to ``rejects/gis-readings-….csv`` (file, row = the reading's place in the file,
    column = the element, value, reason).
    """
    from pipeline.ingest.registers import load_store, write_rejects
    from pipeline.workspace import sha256_file

    if not path.is_file():
        raise BillingError(f"Файл показаний ГИС ЖКХ не найден: {path}")
    digest = sha256_file(path)
    readings = parse_readings(path.name, path.read_bytes())
    regs = load_store(ws, names=["meters", "gis_meter_ids"])
    stored = load_gis_readings(ws)
    accepted, duplicates, rejects = classify_readings(readings, regs, stored, path.name,
                                                      today or date.today())
    now = datetime.now()
    rejects_path = None
    if rejects.height:
        rejects_path = ws.rejects / f"gis-readings-{now:%Y%m%dT%H%M%S%f}.csv"
        write_rejects(rejects, rejects_path)
    if accepted.height:
        fresh = accepted.with_columns(
            pl.lit(path.name).alias("source_file"), pl.lit(digest).alias("file_sha256"),
            pl.lit(now).cast(pl.Datetime("us")).alias("imported_at"),
        ).select(list(GIS_READINGS_SCHEMA)).cast(GIS_READINGS_SCHEMA)
        write_parquet_atomic(pl.concat([stored, fresh]), gis_readings_path(ws))
    return ReadingsImport(path.name, digest, readings.height, accepted.height, duplicates,
                          int(rejects["row"].n_unique()), rejects_path)
