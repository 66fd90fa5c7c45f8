"""``billing import gis-documents FILE --period P``: the identifiers ГИС ЖКХ gave our payment documents.

ГИС ЖКХ answers an ``importPaymentDocumentRequest`` (our ``exports/gis/pd/`` messages,
:mod:`pipeline.export.gis`) with a ``bills:getStateResult``: one ``ImportResult`` per
document, named by the document's ``TransportGUID``, holding either the document's ``GUID``
in ГИС, its ``UniqueNumber`` and ``UpdateDate``, or an ``Error`` (code and description). The
file an operator downloads (or a signing gateway saves) is validated against the bills schema
of package 16.3.0.0 first; a file that does not validate is refused whole, naming the line.

* A ``TransportGUID`` is matched to the account whose document of period ``P`` carries it
  (:func:`pipeline.export.gis.document_guids` of the sealed period's accounts): the answer
  does not name the period, the operator does (``--period``); an answer none of whose
  documents is of ``P`` but some of another exported period is refused whole, naming that period.
* The ``UniqueNumber`` of an accepted document is taken as its ИПД (идентификатор платёжного
  документа, ``PaymentDocumentID``: 18 characters by ``lib/hcs-bills-base.xsd``). That the
  answer's ``UniqueNumber`` *is* the ИПД is UNVERIFIED (the schema calls it «уникальный
  реестровый номер»; no answer of ГИС was at hand): a number of another length is refused as
  no ИПД, with the reason, and nothing is printed for that account.
* Every refused entry is a row of the reject report (``rejects/gis-documents-….csv``: file,
  row = the result's place in the file, column, value, reason in Russian): a document ГИС did
  not accept (its error code and text), an unknown ``TransportGUID``, a number that is no ИПД.
* Exactly once: the same answer again stores nothing (duplicates); a later answer for the same
  document (placed again after a withdrawal) replaces the ИПД when its ``UpdateDate`` is later.

Kept in ``store/gis_documents.parquet`` (:data:`GIS_DOCUMENTS_SCHEMA`); :func:`document_ids`
gives a period's ИПД per account, which every receipt of that period printed afterwards shows
beside the ЕЛС (``billing receipts print``: the close prints its receipts before the documents
reach ГИС, so the originals cannot carry it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.ingest.gis import counts_tail, read_gis_xml
from pipeline.ingest.parse import REJECT_SCHEMA
from pipeline.ingest.readers import read_store_table
from pipeline.workspace import BillingError, Workspace, locked, sha256_file, write_parquet_atomic

__all__ = ["GIS_DOCUMENTS_SCHEMA", "IPD_LENGTH", "RESULT_SCHEMA", "DocumentsImport", "classify_results",
           "document_ids", "gis_documents_path", "import_gis_documents", "load_gis_documents",
           "parse_results"]

ROOT = "getStateResult"
#: Characters of a ``bills-base:PaymentDocumentID`` (the ИПД).
IPD_LENGTH = 18

#: One ``ImportResult`` of the answer.
RESULT_SCHEMA = pl.Schema({
    "row": pl.Int64(),  # the result's place in the file, from 1
    "transport_guid": pl.String(),
    "guid": pl.String(),
    "unique_number": pl.String(),
    "updated_at": pl.Datetime("us"),
    "error_code": pl.String(),
    "error_text": pl.String(),
})

GIS_DOCUMENTS_SCHEMA = pl.Schema({
    "period": pl.String(),
    "account_id": pl.String(),
    "transport_guid": pl.String(),
    "document_guid": pl.String(),
    "ipd": pl.String(),
    "updated_at": pl.Datetime("us"),
    "source_file": pl.String(),
    "imported_at": pl.Datetime("us"),
})

_BASE = "{http://dom.gosuslugi.ru/schema/integration/base/}"
_BILLS = "{http://dom.gosuslugi.ru/schema/integration/bills/}"


def gis_documents_path(ws: Workspace) -> Path:
    return ws.store / "gis_documents.parquet"


def load_gis_documents(ws: Workspace) -> pl.DataFrame:
    """The stored identifiers (:data:`GIS_DOCUMENTS_SCHEMA`; empty when none)."""
    return read_store_table(gis_documents_path(ws), GIS_DOCUMENTS_SCHEMA)


def _text(element: object, tag: str) -> str | None:
    found = element.find(tag)  # type: ignore[attr-defined]
    if found is None or found.text is None:
        return None
    return str(found.text).strip() or None


def parse_results(name: str, data: bytes) -> pl.DataFrame:
    """The answer's ``ImportResult`` entries (:data:`RESULT_SCHEMA`), after schema validation.

    An answer with an ``ErrorMessage`` instead of results (the whole message refused) is
    refused with ГИС's code and text; one holding something else than import results (an
    export's answer) is refused as another document.
    """
    root = read_gis_xml(name, data, "bills", (ROOT,))
    failed = root.find(f"{_BASE}ErrorMessage")
    if failed is not None:
        code, text = _text(failed, f"{_BASE}ErrorCode"), _text(failed, f"{_BASE}Description")
        raise BillingError(f"{name}: ГИС ЖКХ не принял сообщение целиком: {code} {text or ''}".rstrip())
    results = root.findall(f"{_BILLS}ImportResult")
    if not results:
        raise BillingError(f"{name}: в ответе ГИС ЖКХ нет результатов импорта платёжных документов "
                           "(ImportResult) — это ответ на другой запрос")
    rows = []
    for number, result in enumerate(results, start=1):
        error = result.find(f"{_BASE}Error")
        updated = _text(result, f"{_BASE}UpdateDate")
        rows.append({
            "row": number,
            "transport_guid": (_text(result, f"{_BASE}TransportGUID") or "").lower(),
            "guid": _text(result, f"{_BASE}GUID"),
            "unique_number": _text(result, f"{_BASE}UniqueNumber"),
            # xs:dateTime; an offset is dropped (the answer's own clock is what ГИС says).
            "updated_at": None if updated is None else datetime.fromisoformat(updated[:19]),
            "error_code": None if error is None else _text(error, f"{_BASE}ErrorCode"),
            "error_text": None if error is None else _text(error, f"{_BASE}Description"),
        })
    return pl.DataFrame(rows, schema=RESULT_SCHEMA)


def classify_results(results: pl.DataFrame, accounts: pl.DataFrame, stored: pl.DataFrame, period: str,
                     file: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(accepted :data:`GIS_DOCUMENTS_SCHEMA` rows without the file columns, duplicates, rejects). Pure.

    ``accounts``: ``account_id`` and ``transport_guid`` of the period's documents; ``stored``:
    the identifiers kept already.
    """
    def reject(rows: pl.DataFrame, column: str, value: pl.Expr, reason: pl.Expr | str) -> pl.DataFrame:
        return rows.select(pl.lit(file).alias("file"), "row", pl.lit(column).alias("column"),
                           value.cast(pl.String).alias("value"),
                           (reason if isinstance(reason, pl.Expr) else pl.lit(reason)).alias("reason"),
                           ).cast(REJECT_SCHEMA)

    known = results.join(accounts, on="transport_guid", how="left")
    refused = known.filter(pl.col("error_code").is_not_null() | pl.col("error_text").is_not_null())
    unknown = known.filter(pl.col("account_id").is_null())
    number = pl.col("unique_number")
    bad = known.filter(pl.col("account_id").is_not_null() & pl.col("error_code").is_null()
                       & pl.col("error_text").is_null()
                       & (number.is_null() | (number.str.len_chars() != IPD_LENGTH)))
    rejects = pl.concat([
        reject(refused, "Error", pl.col("error_code"), pl.concat_str([
            pl.lit("ГИС ЖКХ не принял платёжный документ"),
            pl.when(pl.col("account_id").is_not_null())
            .then(pl.lit(" лицевого счёта ") + pl.col("account_id")),
            pl.lit(": "), pl.col("error_code").fill_null(""), pl.lit(" "),
            pl.col("error_text").fill_null("")], ignore_nulls=True).str.strip_chars()),
        reject(unknown.join(refused.select("row"), on="row", how="anti"), "TransportGUID",
               pl.col("transport_guid"),
               f"нет такого платёжного документа за {period}: транспортный идентификатор не из нашей "
               "выгрузки этого периода (billing export gis)"),
        reject(bad, "UniqueNumber", number,
               pl.when(number.is_null()).then(pl.lit("в ответе нет номера документа (UniqueNumber)"))
               .otherwise(pl.lit(f"это не ИПД: идентификатор платёжного документа — {IPD_LENGTH} знаков"))),
    ]).sort("row")
    good = known.join(rejects.select("row"), on="row", how="anti").select(
        pl.lit(period).alias("period"), "account_id", "transport_guid",
        pl.col("guid").alias("document_guid"), number.alias("ipd"), "updated_at")
    # The file's own repeats: the latest of a document counts.
    good = good.sort("updated_at", nulls_last=False).unique(["period", "account_id"], keep="last",
                                                             maintain_order=True)
    mine = stored.select("period", "account_id", pl.col("ipd").alias("_ipd"),
                         pl.col("updated_at").alias("_at"))
    checked = good.join(mine, on=["period", "account_id"], how="left")
    same = checked.filter(pl.col("_ipd").is_not_null() & (pl.col("_ipd") == pl.col("ipd")))
    earliest = pl.lit(datetime.min)
    older = checked.filter(pl.col("_ipd").is_not_null() & (pl.col("_ipd") != pl.col("ipd"))
                           & (pl.col("updated_at").fill_null(earliest) <= pl.col("_at").fill_null(earliest)))
    accepted = checked.join(pl.concat([same, older]).select("account_id"), on="account_id", how="anti")
    return accepted.drop("_ipd", "_at"), pl.concat([same, older]).drop("_ipd", "_at"), rejects


@dataclass(frozen=True)
class DocumentsImport:
    """The outcome of ``billing import gis-documents``."""

    file: str
    sha256: str
    period: str
    read: int
    accepted: int
    duplicates: int
    rejected: int
    rejects_path: Path | None

    def line(self) -> str:
        return (f"{self.file}: ответов ГИС ЖКХ на платёжные документы за {self.period} — {self.read}, "
                f"ИПД принято {self.accepted}"
                + counts_tail(self.duplicates, self.rejected, self.rejects_path)
                + (" — они напечатаются в квитанциях этого периода, напечатанных теперь (billing receipts "
                   "print)" if self.accepted else ""))


@locked("import gis-documents")
def import_gis_documents(ws: Workspace, path: Path, period: str) -> DocumentsImport:
    """``billing import gis-documents FILE --period P``: keep the ИПД ГИС gave the period's documents.

    ``period``: ``ГГГГ-ММ``. Refused (nothing stored) for a period not sealed or whose ГИС ЖКХ
    export was never made, and for a file the schema refuses or that holds no import results.
    """
    from pipeline.dates import Period
    from pipeline.export import exports_dir
    from pipeline.ingest.registers import write_rejects

    if not path.is_file():
        raise BillingError(f"Файл ответа ГИС ЖКХ не найден: {path}")
    period = str(Period.parse(period))
    if period not in ws.sealed_periods():
        raise BillingError(f"Период {period} не закрыт: платёжные документы в ГИС ЖКХ выгружаются из "
                           "закрытого периода (billing export gis)")
    if not (exports_dir(ws, period) / "gis").is_dir():
        raise BillingError(f"Платёжные документы за {period} в ГИС ЖКХ не выгружались (billing export gis "
                           f"--period {period}): ответ ГИС ЖКХ не к чему отнести")
    digest = sha256_file(path)
    results = parse_results(path.name, path.read_bytes())
    accounts = _documents_of(ws, period)
    if not results["transport_guid"].is_in(accounts["transport_guid"].implode()).any():
        other = _answered_period(ws, results["transport_guid"], period)
        if other is not None:
            raise BillingError(f"{path.name}: это ответ ГИС ЖКХ на платёжные документы за {other}, а не за "
                               f"{period}: ни один транспортный идентификатор не из выгрузки {period}. "
                               f"Загрузите его с --period {other}")
    stored = load_gis_documents(ws)
    accepted, duplicates, rejects = classify_results(results, accounts, stored, period, path.name)
    now = datetime.now()
    rejects_path = None
    if rejects.height:
        rejects_path = ws.rejects / f"gis-documents-{now:%Y%m%dT%H%M%S%f}.csv"
        write_rejects(rejects, rejects_path)
    if accepted.height:
        fresh = accepted.with_columns(pl.lit(path.name).alias("source_file"),
                                      pl.lit(now).cast(pl.Datetime("us")).alias("imported_at"),
                                      ).select(list(GIS_DOCUMENTS_SCHEMA)).cast(GIS_DOCUMENTS_SCHEMA)
        kept = stored.join(fresh.select("period", "account_id"), on=["period", "account_id"], how="anti")
        write_parquet_atomic(pl.concat([kept, fresh]).sort("period", "account_id"), gis_documents_path(ws))
    return DocumentsImport(path.name, digest, period, results.height, accepted.height, duplicates.height,
                           int(rejects["row"].n_unique()), rejects_path)


def _documents_of(ws: Workspace, period: str) -> pl.DataFrame:
    """``account_id`` and ``transport_guid`` of every document sealed ``period`` can have."""
    from pipeline.export.gis import document_guids
    from pipeline.sealed import read_table

    ids = read_table(ws.period_dir(period), "balances", columns=["account_id"])["account_id"].unique().sort()
    return pl.DataFrame({"account_id": ids, "transport_guid": document_guids(period, ids)})


def _answered_period(ws: Workspace, transports: pl.Series, period: str) -> str | None:
    """The latest other sealed period exported to ГИС ЖКХ whose documents carry one of ``transports``."""
    from pipeline.export import exports_dir

    for other in reversed(ws.sealed_periods()):
        if other != period and (exports_dir(ws, other) / "gis").is_dir() and transports.is_in(
                _documents_of(ws, other)["transport_guid"].implode()).any():
            return other
    return None


def document_ids(ws: Workspace, period: str) -> dict[str, str]:
    """The ИПД of each account's payment document of ``period`` that ГИС ЖКХ gave (may be empty)."""
    stored = load_gis_documents(ws).filter(pl.col("period") == period)
    return dict(stored.select("account_id", "ipd").iter_rows())
