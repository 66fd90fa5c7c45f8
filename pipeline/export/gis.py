"""ГИС ЖКХ: a sealed period's payment documents and accepted meter readings as XML messages.

``billing export gis --period P`` writes into ``periods/P/exports/gis/``:

* ``pd/importPaymentDocumentRequest_P_NNNN.xml`` — the period's payment documents (ПД), one
  per account with charges or a balance, as the body of the bills service's
  ``importPaymentDocumentRequest`` (operation ``importPaymentDocumentData``);
* ``readings/importMeteringDeviceValuesRequest_P_NNNN.xml`` — the meter readings the close
  accepted for the period (device-metering service, ``importMeteringDeviceValuesRequest``);
* ``пропущено.csv`` — every account and meter left out, with the reason (a missing ГИС
  identifier, a service not mapped to a ГИС dictionary, a payee without bank details).

Messages are validated against the official schemas (package 16.3.0.0,
:mod:`pipeline.export.gis_schema`) as ``[limits] validate`` says (default ``sample``: the first
of every :data:`CHUNK_MESSAGES`; ``shapes``; ``all``): an invalid one is a :class:`BillingError`
naming the account or meter and the schema's complaint, and whatever the run wrote is taken
back. Messages are split by the limits of ``rules/gis_gkh.toml`` (documents or readings per
message: the schemas' ``maxOccurs``; bytes: UNVERIFIED).

Speed (a region of a million accounts, docs/exports.md «Speed»): the documents are built by
Polars string expressions a slice of accounts at a time, each slice a task of a ``forkserver``
process pool (:func:`iter_gis_files`) that writes its own messages; the text is the
schemas' own with the request's namespace as the default one (``<PaymentDocument>``, not
``<bills:PaymentDocument>``) and without a payee's zero debt (docs/exports.md).

The SOAP envelope, the ``RequestHeader``, the XAdES signature and the transport are not made
here: these are the files an operator uploads or a signing gateway sends (docs/exports.md).

Identifiers: the account's ``AccountGuid`` from ``gis_ids.account_guid``; the meter's
``MeteringDeviceRootGUID`` from ``gis_meter_ids``; services', penalties' and resources'
dictionary entries (НСИ 50/1/51, 329, 2) from ``gis_nsi`` — each the row in force on the
period's last day. ``TransportGUID`` and the message GUIDs are ``uuid5`` of stable keys (the
period with the account, meter, supplier or message number), so the same sealed period
gives the same bytes.

Money: integer kopecks written as rubles with two decimals (``-12.30``), never a float.

Benefits given as a discount (``[receipts] benefits = "discount"``): the document asks what
the receipt asks (:mod:`pipeline.export.amounts`). Each service's part of the deduction is its
``ServiceCharge/MoneyDiscount`` («Льготы, субсидии, скидки») and comes off its
``TotalPayable``; each payee's comes off its ``TotalPayableByPaymentInformation`` and
``TotalPayableWithDebtAndAdvance``; the document's total comes off
``TotalPayableByPDWithDebtAndAdvance`` and stands in ``SubsidiesCompensationSocialSupport``.
With ``"info"`` none of these is written and the amounts are the balances'.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
import tomllib
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.calc.charges import amount_without_coefficient
from pipeline.dates import Period
from pipeline.errors import BillingError
from pipeline.export import (
    LEFT_OUT,
    ExportFile,
    Piece,
    StagedFile,
    sealed_manifest,
    stage_file,
    staging_folder,
)
from pipeline.export.amounts import LINE_SCHEMA, PAYEE_SCHEMA, load_discounts
from pipeline.export.gis_schema import first_error, invalid_messages, validation_error
from pipeline.pool import alive, default_workers, worker_pool
from pipeline.workspace import Workspace

__all__ = ["CHUNK_MESSAGES", "LIMITS_FILE", "GisFrames", "Limits", "build_files", "document_guids",
           "gis_files", "iter_gis_files", "load_limits", "read_frames"]

LIMITS_FILE = "gis_gkh.toml"
RECIPIENT = "ГИС ЖКХ"

#: Namespace of every uuid5 this export derives (TransportGUID, message GUIDs).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://dom.gosuslugi.ru/billing-export")

#: Fixed ``base:version`` of each request (README of the schema package).
PD_VERSION = "11.2.0.16"
READINGS_VERSION = "10.0.1.1"

#: The schemas' ``maxOccurs``: PaymentDocument per importPaymentDocumentRequest, and
#: MeteringDevicesValues per importMeteringDeviceValuesRequest.
SCHEMA_MAX_DOCUMENTS = 500
SCHEMA_MAX_READINGS = 1000

_NS = "http://dom.gosuslugi.ru/schema/integration/"
_PD_OPEN = (
    f'<?xml version="1.0" encoding="UTF-8"?>\n<importPaymentDocumentRequest Id="signed-data" '
    f'base:version="{PD_VERSION}" xmlns="{_NS}bills/" xmlns:base="{_NS}base/" '
    f'xmlns:bills-base="{_NS}bills-base/" xmlns:account-base="{_NS}account-base/" '
    f'xmlns:payments-base="{_NS}payments-base/" xmlns:nsi="{_NS}nsi-base/">'
)
_PD_CLOSE = "</importPaymentDocumentRequest>\n"
_MD_OPEN = (
    f'<?xml version="1.0" encoding="UTF-8"?>\n<importMeteringDeviceValuesRequest Id="signed-data" '
    f'base:version="{READINGS_VERSION}" xmlns="{_NS}device-metering/" xmlns:base="{_NS}base/" '
    f'xmlns:mdb="{_NS}metering-device-base/" xmlns:nsi="{_NS}nsi-base/">'
)
_MD_CLOSE = "</importMeteringDeviceValuesRequest>\n"

#: base:GUIDType.
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_GUID_PATTERN = GUID_RE.pattern

#: gis_nsi.kind of a charge → the ChargeInfo element.
CHARGE_ELEMENTS = {"housing": "HousingService", "additional": "AdditionalService",
                   "municipal": "MunicipalService"}
#: A charge line's method → ``determiningMethod`` of its volume (N норматив, M прибор, O иное).
DETERMINING = {"meter": "M", "norm": "N", "norm_increased": "N", "heating": "N", "average": "O"}
#: Penalty scheme → the ``Cause`` of its PenaltiesAndCourtCosts line.
PENALTY_CAUSE = {"standard": "Пени по ч. 14 ст. 155 ЖК РФ",
                 "capital_repair": "Пени по ч. 14.1 ст. 155 ЖК РФ"}

#: ``[limits] validate``: every message; the first message of every task and each document (or
#: reading) of a shape not seen before in the run; the first message of every task.
VALIDATE_MODES = ("all", "shapes", "sample")

SKIPPED_NAME = "пропущено.csv"
SKIPPED_HEADER = ("что", "лицевой счёт", "прибор учёта", "сумма к оплате, руб.", "причина")


# ------------------------------------------------------------------ limits


@dataclass(frozen=True)
class Limits:
    """``rules/gis_gkh.toml`` ``[limits]``: how big one message may be."""

    #: PaymentDocument per message: the bills schema's maxOccurs (500).
    documents_per_message: int = SCHEMA_MAX_DOCUMENTS
    #: MeteringDevicesValues per message: the device-metering schema's maxOccurs (1000).
    readings_per_message: int = SCHEMA_MAX_READINGS
    #: Bytes of one message body; UNVERIFIED (the schemas set none; ГИС's ≈10 MB less a margin).
    max_bytes: int = 8_000_000
    #: Which messages are checked against the schema while exporting (:data:`VALIDATE_MODES`):
    #: ``sample`` (default: the first message of every :data:`CHUNK_MESSAGES`, so that a region of a
    #: million accounts is exported within a minute; ГИС checks every message again on upload),
    #: ``shapes`` (that, and every document or reading whose shape — its elements without their
    #: values — was not checked before in the run) or ``all``. The tests check every message.
    validate: str = "sample"
    #: Whether each dictionary reference (``ServiceType``, ``MunicipalResource``: ``nsi-base:nsiRef``)
    #: carries the entry's ``Name`` beside its ``Code`` and ``GUID``. The schema makes it optional
    #: (``minOccurs="0"``) and ГИС ЖКХ finds the entry by its GUID; left out by default — a tenth of
    #: every payment document (≈ 0.8 of 8 KB), a gigabyte for a million accounts.
    service_names: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.documents_per_message <= SCHEMA_MAX_DOCUMENTS:
            problems.append(f"documents_per_message = {self.documents_per_message}: допустимо 1–"
                            f"{SCHEMA_MAX_DOCUMENTS} (maxOccurs схемы)")
        if not 1 <= self.readings_per_message <= SCHEMA_MAX_READINGS:
            problems.append(f"readings_per_message = {self.readings_per_message}: допустимо 1–"
                            f"{SCHEMA_MAX_READINGS} (maxOccurs схемы)")
        if self.validate not in VALIDATE_MODES:
            problems.append(f"validate = {self.validate!r}: допустимо \"all\", \"shapes\" или \"sample\"")
        if self.max_bytes < 2000:
            problems.append(f"max_bytes = {self.max_bytes}: меньше 2000 байт не вместит и одного документа")
        if not isinstance(self.service_names, bool):
            problems.append(f"service_names = {self.service_names!r}: допустимо true или false")
        if problems:
            raise ValueError("; ".join(problems))


def load_limits(rules_dir: Path) -> Limits:
    """``rules_dir / gis_gkh.toml`` as :class:`Limits` (absent: the defaults)."""
    path = rules_dir / LIMITS_FILE
    if not path.is_file():
        return Limits()
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh).get("limits", {})
    except tomllib.TOMLDecodeError as err:
        raise BillingError(f"{path}: ошибка разбора TOML: {err}") from None
    unknown = sorted(set(raw) - {f.name for f in fields(Limits)})
    if unknown:
        raise BillingError(f"{path}: неизвестные параметры [limits]: {', '.join(unknown)}")
    try:
        return Limits(**raw)
    except (TypeError, ValueError) as err:
        raise BillingError(f"{path}: {err}") from None


# ------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class GisFrames:
    """What the export reads: sealed tables (engine integers) and the registers snapshot."""

    #: account_id, service_id, supplier_id, method, volume_micro, price_kop, amount_kop, line_to and
    #: coef_milli (the increasing coefficient × 1000; a frame without it has none)
    charges: pl.DataFrame
    recalculations: pl.DataFrame  # account_id, service_id, supplier_id, amount_kop, reason
    penalties: pl.DataFrame  # account_id, supplier_id, amount_kop, scheme
    #: account_id, supplier_id, opening_kop, charged_kop, recalculated_kop, paid_kop, penalty_kop,
    #: closing_kop
    balances: pl.DataFrame
    meter_volumes: pl.DataFrame  # meter_id, service_id, method, prev_read_on, curr_read_on, curr_value_micro
    organizations: pl.DataFrame
    gis_ids: pl.DataFrame
    gis_meter_ids: pl.DataFrame
    gis_nsi: pl.DataFrame
    services: pl.DataFrame  # service_id, name, kind
    #: The welfare amounts the receipts deduct (``[receipts] benefits = "discount"``), per payee
    #: (account_id, supplier_id, discount_kop) and per line (… service_id …); none by default.
    payee_discounts: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=PAYEE_SCHEMA))
    line_discounts: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=LINE_SCHEMA))


def read_frames(ws: Workspace, period: str) -> GisFrames:
    """The sealed ``period``'s tables and the registers snapshot its manifest names."""
    from pipeline.ingest.registers import load_store
    from pipeline.sealed import scan_internal
    from rules import read_rule_table

    folder = ws.period_dir(period)

    def table(name: str, columns: list[str]) -> pl.DataFrame:
        """Only the ``columns`` read from the file (a million accounts' charges: 1.6 → 0.8 s)."""
        return scan_internal(folder, name, columns).collect()

    manifest = sealed_manifest(ws, period)
    regs = load_store(ws, manifest["store_version"],
                      names=("organizations", "gis_ids", "gis_meter_ids", "gis_nsi"))
    discounts = load_discounts(ws, period)
    return GisFrames(
        charges=table("charges", ["account_id", "service_id", "supplier_id", "method", "volume", "tariff",
                                  "amount", "line_to", "coefficient"]),
        recalculations=table("recalculations", ["account_id", "service_id", "supplier_id", "amount",
                                                "reason"]),
        penalties=table("penalties", ["account_id", "supplier_id", "amount", "scheme"]),
        balances=table("balances", ["account_id", "supplier_id", "opening", "charged", "recalculated", "paid",
                                    "penalty", "closing"]),
        meter_volumes=table("meter_volumes", ["meter_id", "service_id", "method", "prev_read_on",
                                              "curr_read_on", "curr_value"]),
        organizations=regs["organizations"], gis_ids=regs["gis_ids"],
        gis_meter_ids=regs["gis_meter_ids"], gis_nsi=regs["gis_nsi"],
        services=read_rule_table(ws.rules, "services").select("service_id", "name", "kind"),
        payee_discounts=discounts.payees, line_discounts=discounts.lines,
    )


def build_files(ws: Workspace, period: str, limits: Limits | None = None) -> Iterator[ExportFile]:
    """The ГИС ЖКХ files of the sealed ``period`` (``billing export gis``; ``limits`` from the
    rules unless given): staged by the pool's workers in the period's exports folder
    (:func:`pipeline.export.staging_folder`), for :func:`pipeline.export.write_exports` to rename
    into place — gigabytes of XML never go through a pipe to this process."""
    p = Period.parse(period)
    frames, limits = read_frames(ws, str(p)), limits or load_limits(ws.rules)

    def staged() -> Iterator[ExportFile]:
        with staging_folder(ws, str(p)) as folder:
            yield from iter_gis_files(p, frames, limits, stage=folder)

    return staged()


# ------------------------------------------------------------------ expressions


def _esc(e: pl.Expr) -> pl.Expr:
    return (e.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True)
            .str.replace_all(">", "&gt;", literal=True))


def _tag(name: str, e: pl.Expr) -> pl.Expr:
    """``<name>e</name>``; null when ``e`` is null (an optional element left out)."""
    return pl.concat_str([pl.lit(f"<{name}>"), e, pl.lit(f"</{name}>")])


def _scaled(col: str, scale: int, digits: int) -> pl.Expr:
    """Integer ``col`` holding value × 10^scale as a decimal text with ``digits`` fraction digits
    (``digits`` ≥ ``scale``; exact, no float): a Decimal of ``digits`` places divided by
    10^scale keeps those places, and the quotient has no more — nothing is rounded. (Polars
    prints it 2.5 × faster than the text was assembled from the integer's parts.)

    >>> pl.DataFrame({"k": [123456, -5, 0]}).select(_scaled("k", 2, 2))["k"].to_list()
    ['1234.56', '-0.05', '0.00']
    """
    if digits < scale:
        raise ValueError(f"digits {digits} < scale {scale}")
    return (pl.col(col).cast(pl.Decimal(38, digits)) / 10 ** scale).cast(pl.String)


def _money(col: str) -> pl.Expr:
    """Kopecks → rubles with two decimals (``1234`` → ``12.34``)."""
    return _scaled(col, 2, 2)


def _reading(col: str) -> pl.Expr:
    """Micro-units → ``mdb:MeteringValueType`` (``\\d{1,15}(\\.\\d{1,7})?``: no trailing zeros)."""
    c = pl.col(col)
    frac = (c % 1_000_000).cast(pl.String).str.zfill(6).str.strip_chars_end("0")
    whole = (c // 1_000_000).cast(pl.String)
    return pl.when(frac == "").then(whole).otherwise(pl.concat_str([whole, pl.lit("."), frac]))


#: The variant nibble of a uuid5 (RFC 4122: ``10xx``) for each first hex digit of its byte 8.
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}
_duckdb: list[Any] = []


def _guids(keys: pl.Series) -> pl.Series:
    """uuid5 (RFC 4122, SHA-1) of each key in :data:`NAMESPACE`: deterministic TransportGUIDs.

    The same values as ``uuid.uuid5(NAMESPACE, key)``, the SHA-1 of the whole column taken by
    DuckDB (one thread) and cut into the UUID's groups by Polars: 20 000 keys in 6 ms against
    72 ms by ``hashlib`` one key at a time — a million accounts' documents and two million
    readings need one each.
    """
    import duckdb

    if not _duckdb:
        _duckdb.append(duckdb.connect(config={"threads": 1}))
    digests = _duckdb[0].from_arrow(keys.rename("k").to_frame().to_arrow()).select(
        f"sha1(unhex('{NAMESPACE.bytes.hex()}') || encode(k)) AS h").to_arrow_table()
    x = pl.col("h")
    return pl.DataFrame(digests).select(pl.concat_str([
        x.str.slice(0, 8), pl.lit("-"), x.str.slice(8, 4), pl.lit("-5"), x.str.slice(13, 3), pl.lit("-"),
        x.str.slice(16, 1).replace_strict(_VARIANT), x.str.slice(17, 3), pl.lit("-"),
        x.str.slice(20, 12)]).alias(keys.name)).to_series()


def document_guids(period: str, accounts: pl.Series) -> pl.Series:
    """The ``TransportGUID`` of each account's payment document of ``period`` (a Series named
    ``doc_key``): how ГИС ЖКХ's answer names our documents (:mod:`pipeline.ingest.gis_documents`)."""
    return _guids(pl.DataFrame({"account_id": accounts}).select(pl.concat_str(
        [pl.lit(f"{period}/pd/"), pl.col("account_id")]).alias("doc_key")).to_series())


def _in_force(frame: pl.DataFrame, day: Any, by: list[str]) -> pl.DataFrame:
    """The rows of a dated register in force on ``day``: the latest ``from`` ≤ day per ``by``."""
    return (frame.filter(pl.col("from") <= day).sort("from")
            .group_by(by, maintain_order=True).last())


def _nsi_ref(prefix: str = "", names: bool = False) -> pl.Expr:
    """``nsi:Code``, ``GUID`` and, with ``names``, the optional ``Name`` of the
    ``{prefix}code/guid/name`` columns (:attr:`Limits.service_names`)."""
    parts = [_tag("nsi:Code", _esc(pl.col(f"{prefix}code"))), _tag("nsi:GUID", pl.col(f"{prefix}guid"))]
    if names:
        parts.append(_tag("nsi:Name", _esc(pl.col(f"{prefix}name"))))
    return pl.concat_str(parts, ignore_nulls=True)


def _skip(frame: pl.DataFrame, reason: pl.Expr) -> pl.DataFrame:
    return frame.select(pl.col("account_id"), reason.alias("reason"))


# ------------------------------------------------------------------ payment documents


def _nsi(frames: GisFrames, day: Any) -> pl.DataFrame:
    nsi = frames.gis_nsi.with_columns(
        pl.col("guid").str.strip_chars(), pl.col("code").str.strip_chars())
    return _in_force(nsi, day, ["kind", "service_id", "supplier_id"])


def _service_nsi(nsi: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """Each (service, supplier) of ``lines`` with its dictionary entry: the supplier's own row,
    else the row for every supplier; ``nsi_kind`` null when there is none."""
    rows = nsi.filter(pl.col("kind").is_in(list(CHARGE_ELEMENTS))).with_columns(
        pl.col("kind").replace_strict(list(CHARGE_ELEMENTS), list(range(len(CHARGE_ELEMENTS))),
                                      return_dtype=pl.Int64).alias("kind_order")).sort("kind_order")
    cols = ["kind", "code", "guid", "name"]
    own = rows.filter(pl.col("supplier_id").is_not_null()).group_by(
        "service_id", "supplier_id", maintain_order=True).first().select(
        "service_id", "supplier_id", *[pl.col(c).alias(f"own_{c}") for c in cols])
    every = rows.filter(pl.col("supplier_id").is_null()).group_by(
        "service_id", maintain_order=True).first().select(
        "service_id", *[pl.col(c).alias(f"any_{c}") for c in cols])
    pairs = lines.select("service_id", "supplier_id").unique()
    out = pairs.join(own, on=["service_id", "supplier_id"], how="left").join(
        every, on="service_id", how="left")
    use_own = pl.col("own_kind").is_not_null()
    return out.select("service_id", "supplier_id", *[
        pl.when(use_own).then(pl.col(f"own_{c}")).otherwise(pl.col(f"any_{c}")).alias(
            "nsi_kind" if c == "kind" else f"nsi_{c}") for c in cols])


@dataclass(frozen=True)
class _Documents:
    """A slice's ``PaymentDocument``s as their parts, each document's text being its ``head``,
    its ``charges``' rows, its ``penalties``' rows, its ``mid``, its ``details``' rows and the
    closing tag — never joined into one string a document (:func:`_doc_text` puts them in order
    into one buffer for the messages)."""

    #: account_id (sorted), head, mid, total_kop.
    frame: pl.DataFrame
    #: account_id, xml: a ChargeInfo a row, in document order (sorted by account).
    charges: pl.DataFrame
    #: account_id, xml: a PenaltiesAndCourtCosts a row (sorted by account).
    penalties: pl.DataFrame
    #: account_id, xml: a DetailsPaymentInformation a row (sorted by account).
    details: pl.DataFrame
    #: account_id, supplier_id: the payees with a figure on a document (any order).
    payees: pl.DataFrame


def _multiplied(charges: pl.DataFrame) -> pl.DataFrame:
    """account_id, service_id, supplier_id, ratio, excess_kop of the lines charged with an
    increasing coefficient (Правила 354 п.42): ``MultiplyingFactor``'s ``Ratio`` (the coefficient,
    ``xs:decimal`` of at most 2 fraction digits: the last one's of the month) and
    ``AmountOfExcessFees`` (43/пр: :func:`~pipeline.calc.charges.amount_without_coefficient`
    taken from the lines, summed — the receipt's figure). A coefficient of 3 decimals (the rules
    allow them, the law has none) cannot be written as ``Ratio`` and leaves the element out.

    >>> _multiplied(pl.DataFrame({"account_id": ["A", "A", "B"], "service_id": ["w", "h", "w"],
    ...     "supplier_id": ["S"] * 3, "line_to": [1, 1, 1], "volume_micro": [4_745_000] * 3,
    ...     "price_kop": [5228, 26540, 5228], "amount_kop": [74421, 188898, 24807],
    ...     "coef_milli": [3000, 1500, 1000]})).sort("service_id").rows()
    [('A', 'h', 'S', '1.5', 62966), ('A', 'w', 'S', '3', 49614)]
    """
    key = ["account_id", "service_id", "supplier_id"]
    if "coef_milli" not in charges.columns:
        return pl.DataFrame(schema={**charges.select(key).schema, "ratio": pl.String, "excess_kop": pl.Int64})
    coef = pl.col("coef_milli")
    whole, cents = coef // 1000, (coef % 1000) // 10
    return charges.filter((coef > 1000) & (coef % 10 == 0) & pl.col("volume_micro").is_not_null()).sort(
        *key, "line_to").group_by(key, maintain_order=True).agg(
        pl.concat_str([whole.cast(pl.String), pl.when(cents > 0).then(pl.concat_str([
            pl.lit("."), cents.cast(pl.String).str.zfill(2).str.strip_chars_end("0")]))],
            ignore_nulls=True).last().alias("ratio"),
        (pl.col("amount_kop") - amount_without_coefficient()).sum().alias("excess_kop"))


def _documents(period: Period, frames: GisFrames,
               names: bool = False) -> tuple[_Documents, pl.DataFrame, pl.DataFrame]:
    """(documents, payees, skipped).

    payees: supplier_id, payee_key, bik, account; skipped: account_id, reason, total_kop.
    """
    day = period.last
    svc = frames.services.select("service_id", pl.col("name").alias("service_name"),
                                 pl.col("kind").alias("service_kind"))
    nsi = _nsi(frames, day)
    # --- charge lines per (account, service, supplier)
    ch = frames.charges.sort("account_id", "service_id", "supplier_id", "line_to")
    charged = ch.group_by("account_id", "service_id", "supplier_id", maintain_order=True).agg(
        pl.col("amount_kop").sum().alias("charged_kop"),
        pl.col("volume_micro").filter(pl.col("method") != "fixed").sum().alias("volume_micro"),
        (pl.col("method") != "fixed").any().alias("has_volume"),
        pl.col("price_kop").last(), pl.col("method").last())
    rc = frames.recalculations.filter(pl.col("amount_kop") != 0).sort(
        "account_id", "service_id", "supplier_id", "reason").group_by(
        "account_id", "service_id", "supplier_id", maintain_order=True).agg(
        pl.col("amount_kop").sum().alias("recalc_kop"),
        pl.col("reason").fill_null("перерасчёт").unique(maintain_order=True).str.join("; ").alias("reason"))
    # made here, on the few lines with a recalculation, rather than on every line below
    rc = rc.with_columns(pl.when(pl.col("recalc_kop") != 0).then(pl.concat_str([
        pl.lit("<PaymentRecalculation>"),
        _tag("recalculationReason", _esc(pl.col("reason").str.slice(0, 500))),
        _tag("sum", _money("recalc_kop")), pl.lit("</PaymentRecalculation>")])).alias("recalc_xml"))
    lines = charged.join(rc, on=["account_id", "service_id", "supplier_id"], how="full", coalesce=True,
                         nulls_equal=True).with_columns(
        pl.col("charged_kop").fill_null(0), pl.col("recalc_kop").fill_null(0),
        pl.col("price_kop").fill_null(0), pl.col("has_volume").fill_null(False),
    ).join(frames.line_discounts, on=["account_id", "service_id", "supplier_id"], how="left",
           nulls_equal=True).with_columns(pl.col("discount_kop").fill_null(0)).with_columns(
        (pl.col("charged_kop") + pl.col("recalc_kop") - pl.col("discount_kop")).alias("payable_kop"))
    lines = lines.join(_service_nsi(nsi, lines), on=["service_id", "supplier_id"], how="left",
                       nulls_equal=True).join(svc, on="service_id", how="left")
    multiplied = _multiplied(ch)  # few lines: joined only when there are any
    lines = (lines.join(multiplied, on=["account_id", "service_id", "supplier_id"], how="left",
                        nulls_equal=True) if multiplied.height
             else lines.with_columns(pl.lit(None, pl.String).alias("ratio"),
                                     pl.lit(None, pl.Int64).alias("excess_kop")))
    # --- penalties per (account, supplier, scheme)
    pen = frames.penalties.filter(pl.col("amount_kop") != 0).with_columns(
        pl.col("scheme").fill_null("standard")).group_by("account_id", "supplier_id", "scheme").agg(
        pl.col("amount_kop").sum()).sort("account_id", "supplier_id", "scheme")
    pnsi = nsi.filter(pl.col("kind") == "penalty")
    p_own = pnsi.filter(pl.col("supplier_id").is_not_null()).group_by("supplier_id").first().select(
        "supplier_id", pl.col("code").alias("o_code"), pl.col("guid").alias("o_guid"),
        pl.col("name").alias("o_name"))
    p_any = pnsi.filter(pl.col("supplier_id").is_null()).head(1).select(
        pl.col("code").alias("a_code"), pl.col("guid").alias("a_guid"), pl.col("name").alias("a_name"))
    pen = pen.join(p_own, on="supplier_id", how="left")
    pen = (pen.join(p_any, how="cross") if p_any.height else pen.with_columns(
        pl.lit(None, pl.String).alias("a_code"), pl.lit(None, pl.String).alias("a_guid"),
        pl.lit(None, pl.String).alias("a_name")))
    own = pl.col("o_code").is_not_null()
    pen = pen.with_columns(*[pl.when(own).then(pl.col(f"o_{c}")).otherwise(pl.col(f"a_{c}")).alias(c)
                             for c in ("code", "guid", "name")])
    # --- balances per account and per payee
    bal = frames.balances
    bal = bal.join(frames.payee_discounts, on=["account_id", "supplier_id"], how="left", nulls_equal=True,
                   maintain_order="left").with_columns(pl.col("discount_kop").fill_null(0))
    acc = bal.group_by("account_id").agg(
        (pl.col("opening_kop") - pl.col("paid_kop")).sum().alias("debt_kop"),
        pl.col("paid_kop").sum(), pl.col("closing_kop").sum(), pl.col("discount_kop").sum())
    # A document for every account with a charge line or a non-zero balance figure (an account
    # whose balances are all zero and that has no line this period gets none).
    live = bal.filter(pl.any_horizontal(pl.col(c) != 0 for c in (
        "opening_kop", "charged_kop", "recalculated_kop", "paid_kop", "penalty_kop", "closing_kop")))
    docs_ids = pl.concat([lines.select("account_id"), live.select("account_id")]).unique()
    # --- payees: suppliers with a figure on a document
    orgs = frames.organizations.select(pl.col("org_id").alias("supplier_id"),
                                       pl.col("name").alias("org_name"),
                                       "bik", "account")
    used = pl.concat([lines.select("account_id", "supplier_id"), pen.select("account_id", "supplier_id"),
                      live.select("account_id", "supplier_id")]).filter(
        pl.col("supplier_id").is_not_null() & (pl.col("supplier_id") != "")).unique()
    payees = used.select("supplier_id").unique().sort("supplier_id").join(orgs, on="supplier_id", how="left")
    payees = payees.with_columns(_guids(payees.select(pl.concat_str(
        [pl.lit(f"{period}/payee/"), pl.col("supplier_id")]).alias("payee_key")).to_series()))
    # --- the account's AccountGuid
    ids = _in_force(frames.gis_ids.filter(pl.col("account_guid").is_not_null()
                                          & (pl.col("account_guid").str.strip_chars() != "")),
                    day, ["account_id"]).select("account_id", pl.col("account_guid").str.strip_chars())
    docs = docs_ids.join(ids, on="account_id", how="left")
    # --- reasons to leave a document out
    bad_guid = ~pl.col("guid").str.contains(_GUID_PATTERN)
    skipped = pl.concat([
        _skip(docs.filter(pl.col("account_guid").is_null()), pl.lit(
            "нет GUID лицевого счёта в ГИС ЖКХ (реестр gis_ids, столбец account_guid)")),
        _skip(docs.filter(~pl.col("account_guid").str.contains(_GUID_PATTERN)), pl.concat_str([
            pl.lit("GUID лицевого счёта «"), pl.col("account_guid"),
            pl.lit("» неверного вида (нужно 8-4-4-4-12 шестнадцатеричных знаков; реестр gis_ids)")])),
        _skip(lines.filter(pl.col("nsi_kind").is_null()
                           & ((pl.col("charged_kop") != 0) | (pl.col("recalc_kop") != 0))), pl.concat_str([
            pl.lit("услуга «"), pl.col("service_name").fill_null(pl.col("service_id")),
            pl.lit("» поставщика "), pl.col("supplier_id").fill_null("—"),
            pl.lit(" не сопоставлена со справочником ГИС ЖКХ (реестр gis_nsi)")])),
        _skip(lines.filter(pl.col("nsi_kind").is_not_null()).rename({"nsi_guid": "guid"}).filter(bad_guid),
              pl.concat_str([pl.lit("GUID записи справочника для услуги «"),
                             pl.col("service_name").fill_null(pl.col("service_id")),
                             pl.lit("» неверного вида (реестр gis_nsi)")])),
        _skip(pen.filter(pl.col("code").is_null()), pl.concat_str([
            pl.lit("пени поставщика "), pl.col("supplier_id").fill_null("—"),
            pl.lit(": нет записи справочника ГИС ЖКХ (НСИ 329; реестр gis_nsi, kind = penalty)")])),
        _skip(pen.filter(pl.col("code").is_not_null()).filter(bad_guid), pl.lit(
            "GUID записи справочника для пени неверного вида (реестр gis_nsi, kind = penalty)")),
        _skip(used.join(payees.filter(pl.col("bik").is_null() | pl.col("account").is_null()),
                        on="supplier_id"), pl.concat_str([
            pl.lit("у получателя платежа «"), pl.col("org_name").fill_null(pl.col("supplier_id")),
            pl.lit("» не указаны БИК или расчётный счёт (реестр организаций)")])),
        _skip(docs_ids.join(used, on="account_id", how="anti"), pl.lit(
            "в документе нет получателя платежа (только нераспределённый аванс)")),
    ]).unique(maintain_order=True)
    # --- ChargeInfo blocks
    element = pl.col("nsi_kind").replace_strict(CHARGE_ELEMENTS, default=None)
    municipal = pl.col("nsi_kind") == "municipal"
    recalc = pl.col("recalc_xml")
    lines = lines.filter(pl.col("nsi_kind").is_not_null()).join(
        payees.select("supplier_id", "payee_key"), on="supplier_id", how="left")
    # What is the same for every line of a (service, supplier) — and, for the consumption's
    # opening, of a (service, supplier, method) — is made once and joined.
    pair = ["service_id", "supplier_id"]
    constant = lines.select(*pair, "nsi_kind", "nsi_code", "nsi_guid", "nsi_name", "payee_key").unique(
        pair, maintain_order=True).select(
        *pair, pl.concat_str([pl.lit("<ChargeInfo><"), element, pl.lit("><ServiceType>"),
                              _nsi_ref("nsi_", names), pl.lit("</ServiceType><Rate>")]).alias("_open"),
        pl.concat_str([pl.lit("</AccountingPeriodTotal>"),
                       _tag("PaymentInformationKey", pl.col("payee_key"))], ignore_nulls=True).alias("_key"),
        pl.concat_str([pl.lit("</"), element, pl.lit("></ChargeInfo>")]).alias("_close"))
    # one Consumption for both kinds: the way the volume was determined is a municipal service's only
    trio = [*pair, "method"]
    volume_type = pl.when(pl.col("service_kind") == "common_property").then(pl.lit("O")).otherwise(
        pl.lit("I"))
    method = pl.when(municipal).then(pl.concat_str([
        pl.lit(' determiningMethod="'), pl.col("method").replace_strict(DETERMINING, default=None),
        pl.lit('"')])).fill_null("")
    consumption = lines.select(*trio, "nsi_kind", "service_kind").unique(trio, maintain_order=True).select(
        *trio, pl.concat_str([pl.lit('<Consumption><Volume type="'), volume_type, pl.lit('"'), method,
                              pl.lit(">")]).alias("_consumption"))
    lines = lines.join(constant, on=pair, how="left", nulls_equal=True).join(
        consumption, on=trio, how="left", nulls_equal=True)
    # ServiceCharge opens each service's own elements (after the base's PaymentInformationKey);
    # a municipal service's recalculation comes before its consumption, an additional one's after.
    service_charge = pl.when(pl.col("discount_kop") > 0).then(pl.concat_str([
        pl.lit("<ServiceCharge>"), _tag("MoneyDiscount", _money("discount_kop")),
        pl.lit("</ServiceCharge>")]))
    volume = (pl.col("has_volume") & pl.col("volume_micro").is_not_null()
              & pl.col("nsi_kind").is_in(["municipal", "additional"]))
    # 43/пр: the increasing coefficient and the excess it caused (a municipal service's only)
    factor = pl.when(municipal).then(pl.concat_str([
        pl.lit("<MultiplyingFactor><Ratio>"), pl.col("ratio"), pl.lit("</Ratio>"),
        _tag("AmountOfExcessFees", _money("excess_kop")), pl.lit("</MultiplyingFactor>")]))
    # Rate, TotalPayable and AccountingPeriodTotal are never null (filled with 0 above).
    charge_xml = pl.concat_str([
        pl.col("_open"), _scaled("price_kop", 2, 6), pl.lit("</Rate><TotalPayable>"), _money("payable_kop"),
        pl.lit("</TotalPayable><AccountingPeriodTotal>"), _money("charged_kop"), pl.col("_key"),
        service_charge, pl.when(municipal).then(recalc),
        pl.when(volume).then(pl.col("_consumption")), pl.when(volume).then(_scaled("volume_micro", 6, 7)),
        pl.when(volume).then(pl.lit("</Volume></Consumption>")), factor, pl.when(~municipal).then(recalc),
        pl.col("_close")], ignore_nulls=True)
    svc_order = frames.services.with_row_index("order").select("service_id", "order")
    # Each expression is evaluated on the whole column at once (inside ``agg`` Polars would
    # evaluate it group by group, several times slower) and never joined per account: a
    # document is cut out of the columns (:func:`_doc_text`). The sort carries what it reads.
    order = ["account_id", "order", "service_id", "supplier_id"]
    charge_rows = lines.join(svc_order, on="service_id", how="left").select(
        *order, charge_xml.alias("xml"), "payable_kop", "discount_kop").sort(*order, nulls_last=True)
    charge_sums = charge_rows.group_by("account_id", maintain_order=True).agg(
        pl.col("payable_kop").sum().alias("charges_kop"),
        pl.col("discount_kop").sum().alias("line_discount_kop"))
    pen = pen.filter(pl.col("code").is_not_null()).join(payees.select("supplier_id", "payee_key"),
                                                       on="supplier_id", how="left")
    pen_rows = pen.sort("account_id", "supplier_id", "scheme").select("account_id", pl.concat_str([
        pl.lit("<PenaltiesAndCourtCosts><ServiceType>"), _nsi_ref(names=names),
        pl.lit("</ServiceType>"),
        _tag("Cause", pl.col("scheme").replace_strict(PENALTY_CAUSE,
                                                      default=PENALTY_CAUSE["standard"])),
        _tag("TotalPayable", _money("amount_kop")),
        _tag("PaymentInformationKey", pl.col("payee_key")),
        pl.lit("</PenaltiesAndCourtCosts>")], ignore_nulls=True).alias("xml"), "amount_kop")
    pen_sums = pen_rows.group_by("account_id", maintain_order=True).agg(
        pl.col("amount_kop").sum().alias("pen_kop"))
    # --- per-payee details
    per_payee = bal.filter(pl.col("supplier_id").is_not_null() & (pl.col("supplier_id") != "")).join(
        used, on=["account_id", "supplier_id"], how="semi").join(
        payees.select("supplier_id", "payee_key"), on="supplier_id").with_columns(
        (pl.col("charged_kop") + pl.col("recalculated_kop") + pl.col("penalty_kop")
         - pl.col("discount_kop")).alias("period_kop"),
        (pl.col("opening_kop") - pl.col("paid_kop")).alias("debt_kop"),
        (pl.col("closing_kop") - pl.col("discount_kop")).alias("payable_kop"),
    ).sort("account_id", "supplier_id")
    # A payee's zero debt is left out (minOccurs="0"), as the document's own DebtPreviousPeriods.
    detail_rows = per_payee.select("account_id", pl.concat_str([
        pl.lit("<DetailsPaymentInformation>"), _tag("PaymentInformationKey", pl.col("payee_key")),
        _tag("TotalPayableByPaymentInformation", _money("period_kop")),
        _tag("DebtPreviousPeriodsOrAdvanceBillingPeriod",
             pl.when(pl.col("debt_kop") != 0).then(_money("debt_kop"))),
        _tag("TotalPayableWithDebtAndAdvance", _money("payable_kop")),
        pl.lit("</DetailsPaymentInformation>")], ignore_nulls=True).alias("xml"))
    # --- the documents
    docs = (docs.join(skipped.select("account_id").unique(), on="account_id", how="anti")
            .join(charge_sums, on="account_id", how="left").join(pen_sums, on="account_id", how="left")
            .join(acc, on="account_id", how="left")
            .with_columns(pl.col("charges_kop").fill_null(0), pl.col("pen_kop").fill_null(0),
                          pl.col("debt_kop").fill_null(0), pl.col("paid_kop").fill_null(0),
                          pl.col("discount_kop").fill_null(0), pl.col("line_discount_kop").fill_null(0))
            # A payee's discount its lines do not carry (no line this month) comes off the total.
            .with_columns((pl.col("charges_kop") + pl.col("debt_kop") + pl.col("pen_kop")
                           - (pl.col("discount_kop") - pl.col("line_discount_kop"))).alias("total_kop"),
                          pl.when(pl.col("debt_kop") < 0).then(-pl.col("debt_kop")).alias("advance_kop"))
            .sort("account_id"))
    docs = docs.with_columns(document_guids(str(period), docs["account_id"]))
    number = pl.concat_str([pl.col("account_id"), pl.lit(f"-{period}")])
    head = pl.concat_str([
        pl.lit("<PaymentDocument>"), _tag("account-base:AccountGuid", pl.col("account_guid")),
        _tag("bills-base:PaymentDocumentNumber", pl.when(number.str.len_chars() <= 30).then(_esc(number)))],
        ignore_nulls=True)
    mid = pl.concat_str([
        _tag("TotalPayableByChargeInfo", _money("charges_kop")),
        _tag("DebtPreviousPeriods", pl.when(pl.col("debt_kop") > 0).then(_money("debt_kop"))),
        _tag("AdvanceBllingPeriod", pl.when(pl.col("advance_kop").is_not_null()).then(
            _money("advance_kop"))),
        _tag("TotalPayableByPDWithDebtAndAdvance", _money("total_kop")),
        _tag("TotalByPenaltiesAndCourtCosts", pl.when(pl.col("pen_kop") != 0).then(_money("pen_kop"))),
        _tag("PaidCash", pl.when(pl.col("paid_kop") != 0).then(_money("paid_kop"))),
        _tag("SubsidiesCompensationSocialSupport",
             pl.when(pl.col("discount_kop") > 0).then(_money("discount_kop"))),
        _tag("base:TransportGUID", pl.col("doc_key"))], ignore_nulls=True)
    documents = _Documents(docs.select("account_id", head.alias("head"), mid.alias("mid"), "total_kop"),
                           charge_rows.select("account_id", "xml"), pen_rows.select("account_id", "xml"),
                           detail_rows, used)
    # a skipped document's figure: what it would have asked to pay (the balances' closing)
    full = (docs_ids.join(frames.charges.group_by("account_id").agg(pl.col("amount_kop").sum().alias("c")),
                          on="account_id", how="left")
            .join(acc.select("account_id", (pl.col("closing_kop") - pl.col("discount_kop")).alias("due")),
                  on="account_id", how="left")
            .select("account_id", pl.coalesce("due", "c", pl.lit(0)).alias("total_kop")))
    skipped = skipped.join(full, on="account_id", how="left").sort("account_id", maintain_order=True)
    return documents, payees, skipped


def _parts(sizes: list[int], per_message: int, max_bytes: int, overhead: int,
           names: list[str], what: str) -> list[int]:
    """The message number (0-based) of each item, filled greedily in order."""
    out: list[int] = []
    part = count = used = 0
    budget = max_bytes - overhead
    for size, name in zip(sizes, names, strict=True):
        if size > budget:
            raise BillingError(f"{what} {name}: {size} байт — больше предела одного сообщения ГИС ЖКХ "
                               f"(max_bytes = {max_bytes} в rules/{LIMITS_FILE}, за вычетом заголовка "
                               f"{overhead} байт); увеличьте max_bytes.")
        if count and (count == per_message or used + size > budget):
            part, count, used = part + 1, 0, 0
        out.append(part)
        count += 1
        used += size
    return out


@dataclass(frozen=True)
class _Body:
    """One message as a worker makes it: its bytes as pieces (:data:`pipeline.export.Piece`), the
    keys of its items (account or meter, for a refusal naming the one at fault) and its figures;
    numbered and named by the caller."""

    pieces: tuple[Piece, ...]
    rows: int
    total_kop: int
    #: Written by the worker already (``pieces`` then empty).
    staged: StagedFile | None = None

    @property
    def data(self) -> bytes:
        return b"".join(self.pieces)


#: Threads of a pool worker that write its messages (:func:`pipeline.export.stage_file`: past the
#: page cache, so the worker waits for the disk) while it validates them: hashing and writing
#: release the GIL, so the disk's wait and the schema check overlap.
STAGE_THREADS = 2
_stagers: list[ThreadPoolExecutor] = []


@contextmanager
def _staging(bodies: list[_Body], folder: Path | None) -> Iterator[Callable[[], list[_Body]]]:
    """Start writing ``bodies`` into ``folder`` (the worker's side of a staged export) and give a
    function that waits for them and returns them staged; without a folder, each joined into one
    ``bytes`` (what a pool sends back, and an :class:`ExportFile` holds). Every write has ended
    on the way out, whatever happened inside (a refused message's files go with the staging
    folder)."""
    if folder is None:
        joined = [_Body((b.data,), b.rows, b.total_kop) for b in bodies]
        yield lambda: joined
        return
    if not _stagers:
        _stagers.append(ThreadPoolExecutor(STAGE_THREADS, thread_name_prefix="gis-stage"))
    jobs = [_stagers[0].submit(stage_file, folder, b.pieces) for b in bodies]
    try:
        yield lambda: [_Body((), b.rows, b.total_kop, job.result())
                       for b, job in zip(bodies, jobs, strict=True)]
    finally:
        wait(jobs)


def _validate(name: str, bodies: list[_Body], keys: list[list[str]], item: str, what: str,
              mode: str) -> None:
    """Validate the messages ``mode`` says (``all``; ``sample`` and ``shapes``: the first one only);
    the first invalid one is refused, naming the item at fault."""
    checked = bodies if mode == "all" else bodies[:1]
    bad = invalid_messages(name, [b.data for b in checked])
    for index in bad[:1]:
        _check(name, bodies[index].data, item, keys[index], what)


def _check(name: str, data: bytes, item: str, keys: list[str], what: str) -> None:
    """Validate one message; an invalid one is a Russian refusal naming the item at fault."""
    problem = validation_error(name, data)
    if problem is None:
        return
    found = first_error(name, data)
    culprit = _culprit(found[1], item, keys) if found else None
    raise BillingError(f"ГИС ЖКХ: сообщение не соответствует схеме ({name}, пакет 16.3.0.0)"
                       + (f", {what} {culprit}" if culprit else "") + f": {problem}. "
                       "Файлы не записаны.")


def _culprit(where: tuple[Any, Any] | None, item: str, keys: list[str]) -> str | None:
    """The key of the ``item`` element (PaymentDocument, MeteringDevicesValues) that holds the
    element of the first complaint."""
    if where is None or where[1] is None:
        return None
    root, elem = where
    items = [c for c in root if isinstance(c.tag, str) and c.tag.endswith("}" + item)]
    for index, child in enumerate(items):
        if any(e is elem for e in child.iter()):
            return keys[index] if index < len(keys) else None
    return None


def _spans(column: pl.Series) -> tuple[memoryview, np.ndarray]:
    """(UTF-8 bytes, offsets: ``len + 1`` int64) of a string column as one Arrow ``large_string``
    buffer: row ``i`` is ``bytes[offsets[i]:offsets[i + 1]]``, consecutive rows are consecutive
    bytes — cut out without a copy."""
    array = column.to_arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != pa.large_string():
        array = array.cast(pa.large_string())
    _, offsets, data = array.buffers()
    if offsets is None:
        return memoryview(b""), np.zeros(1, np.int64)
    at = np.frombuffer(offsets, np.int64)[array.offset:array.offset + len(array) + 1]
    return (memoryview(data).cast("B") if data is not None else memoryview(b"")), at


def _join_messages(data: memoryview, offsets: np.ndarray, parts: list[int], heads: list[str],
                   close: str) -> list[tuple[Piece, ...]]:
    """Each part's items (consecutive: item ``i`` is ``data[offsets[i]:offsets[i + 1]]``, see
    :func:`_spans`) between its head and ``close``, as pieces: a part's items are one slice of
    ``data``, never copied into Python strings or bytes of their own."""
    changes = np.flatnonzero(np.diff(np.asarray(parts, np.int64))) + 1  # a part's first item
    at = offsets[[0, *changes.tolist(), len(parts)]].tolist()
    tail = close.encode()
    return [(head.encode(), data[at[n]:at[n + 1]], tail) for n, head in enumerate(heads)]


def _doc_text(docs: _Documents) -> tuple[memoryview, np.ndarray]:
    """(the UTF-8 of every document of ``docs`` one after another, in order; the byte offset at
    which each begins, and the end): the parts of :class:`_Documents` put in document order by
    one stable sort of integer keys (document × 8 + part) and written into one buffer by Polars —
    no string a document, no Python object a part."""
    frame = docs.frame
    ids = frame["account_id"]
    index = pl.int_range(pl.len(), dtype=pl.Int64) * 8
    pieces = [frame.select(index.alias("_k"), pl.col("head").alias("xml")),
              frame.select((index + 3).alias("_k"), pl.col("mid").alias("xml")),
              frame.select((index + 5).alias("_k"), pl.lit("</PaymentDocument>").alias("xml"))]
    for part, rows in ((1, docs.charges), (2, docs.penalties), (4, docs.details)):
        if not rows.height:
            continue
        at = ids.search_sorted(rows["account_id"], side="left").cast(pl.Int64)
        inside = at < frame.height
        rows, at = rows.filter(inside), at.filter(inside)
        hit = ids.gather(at) == rows["account_id"]  # a row of an account left out (skipped) has no place
        pieces.append(pl.DataFrame({"_k": at.filter(hit) * 8 + part, "xml": rows["xml"].filter(hit)}))
    text = pl.concat(pieces).sort("_k", maintain_order=True)
    data, offsets = _spans(text["xml"])
    first = np.flatnonzero(text["_k"].to_numpy() % 8 == 0)
    return data, np.append(offsets[first], offsets[-1])


def _pd_bodies(period: Period, docs: _Documents, payees: pl.DataFrame,
               limits: Limits) -> tuple[list[_Body], list[list[str]]]:
    """The messages of ``docs`` and the accounts in each."""
    frame = docs.frame
    if not frame.height:
        return [], []
    head = (f"{_PD_OPEN}<base:Month>{period.month}</base:Month><base:Year>{period.year}</base:Year>")
    payinfo = {r["supplier_id"]: (
        f"<PaymentInformation><payments-base:BankBIK>{r['bik']}</payments-base:BankBIK>"
        f"<payments-base:operatingAccountNumber>{r['account']}</payments-base:operatingAccountNumber>"
        f"<base:TransportGUID>{r['payee_key']}</base:TransportGUID></PaymentInformation>")
        for r in payees.filter(pl.col("bik").is_not_null() & pl.col("account").is_not_null()).iter_rows(
            named=True)}
    overhead = len(head.encode()) + len(_PD_CLOSE) + sum(len(v.encode()) for v in payinfo.values())
    data, at = _doc_text(docs)
    parts = _parts(np.diff(at).tolist(), limits.documents_per_message, limits.max_bytes, overhead,
                   frame["account_id"].to_list(), "Платёжный документ лицевого счёта")
    part = pl.Series("part", parts, pl.Int64)
    grouped = frame.with_columns(part).group_by("part", maintain_order=True).agg(
        pl.col("total_kop").sum(), pl.len().alias("rows"), pl.col("account_id"))
    # each message opens with the payment details of its documents' payees (those with bank details)
    payees_of = dict(docs.payees.join(pl.DataFrame([frame["account_id"], part]), on="account_id").group_by(
        "part").agg(pl.col("supplier_id").unique().sort()).iter_rows())
    heads = [head + "".join(payinfo[s] for s in payees_of.get(n, []) if s in payinfo)
             for n in grouped["part"].to_list()]
    bodies = [_Body(pieces, rows, total) for pieces, rows, total in zip(
        _join_messages(data, at, parts, heads, _PD_CLOSE), grouped["rows"].to_list(),
        grouped["total_kop"].to_list(), strict=True)]
    return bodies, grouped["account_id"].to_list()


def _doc_texts(docs: _Documents) -> pl.DataFrame:
    """account_id, xml: each document's whole text (what ``validate = "shapes"`` compares)."""
    data, at = _doc_text(docs)
    cuts = at.tolist()
    return docs.frame.select("account_id").with_columns(pl.Series(
        "xml", [bytes(data[a:b]).decode() for a, b in itertools.pairwise(cuts)], pl.String))


# ------------------------------------------------------------------ meter readings


def _reading_rows(period: Period, frames: GisFrames) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows, skipped: meter_id, reason) of the readings accepted in the period, in meter order;
    the XML of ``rows`` is :func:`_reading_xml`'s."""
    day = period.last
    mv = frames.meter_volumes.filter(
        (pl.col("method") == "meter") & pl.col("curr_read_on").is_not_null()
        & pl.col("curr_value_micro").is_not_null()
        & (pl.col("prev_read_on").is_null() | (pl.col("curr_read_on") > pl.col("prev_read_on")))
    ).sort("meter_id", "curr_read_on").unique(["meter_id"], keep="last", maintain_order=True)
    ids = _in_force(frames.gis_meter_ids.filter(pl.col("device_guid").is_not_null()), day,
                    ["meter_id"]).select("meter_id", pl.col("device_guid").str.strip_chars(), "value_kind")
    nsi = _nsi(frames, day).filter(pl.col("kind") == "resource").sort(
        pl.col("supplier_id").is_not_null()).group_by("service_id", maintain_order=True).first().select(
        "service_id", "code", "guid", "name")
    svc = frames.services.select("service_id", pl.col("name").alias("service_name"))
    rows = mv.join(ids, on="meter_id", how="left").join(nsi, on="service_id", how="left").join(
        svc, on="service_id", how="left").with_columns(pl.col("value_kind").fill_null("one_rate"))
    one_rate = pl.col("value_kind") == "one_rate"
    reason = (pl.when(pl.col("device_guid").is_null())
              .then(pl.lit("нет GUID прибора учёта в ГИС ЖКХ (реестр gis_meter_ids)"))
              .when(~pl.col("device_guid").str.contains(_GUID_PATTERN))
              .then(pl.concat_str([pl.lit("GUID прибора учёта «"), pl.col("device_guid"),
                                   pl.lit("» неверного вида (реестр gis_meter_ids)")]))
              .when(one_rate & pl.col("code").is_null())
              .then(pl.concat_str([pl.lit("ресурс услуги «"), pl.col("service_name").fill_null(
                  pl.col("service_id")), pl.lit("» не сопоставлен со справочником ГИС ЖКХ (НСИ 2; "
                                                "реестр gis_nsi, kind = resource)")]))
              .when(one_rate & ~pl.col("guid").str.contains(_GUID_PATTERN))
              .then(pl.lit("GUID записи справочника ресурса неверного вида (реестр gis_nsi)")))
    rows = rows.with_columns(reason.alias("reason"))
    skipped = rows.filter(pl.col("reason").is_not_null()).select("meter_id", "reason")
    rows = rows.filter(pl.col("reason").is_null()).select(
        "meter_id", "curr_read_on", "curr_value_micro", "device_guid", "value_kind", "code", "guid", "name")
    return rows, skipped


def _reading_xml(period: Period, rows: pl.DataFrame, names: bool = False) -> pl.DataFrame:
    """meter_id, xml (one ``MeteringDevicesValues``) of :func:`_reading_rows`' rows."""
    one_rate = pl.col("value_kind") == "one_rate"
    rows = rows.with_columns(_guids(rows.select(pl.concat_str([
        pl.lit(f"{period}/reading/"), pl.col("meter_id"), pl.lit("/"),
        pl.col("curr_read_on").cast(pl.String)]).alias("t")).to_series()))
    tail = pl.concat_str([
        _tag("DateValue", pl.col("curr_read_on").cast(pl.String)), _tag("base:TransportGUID", pl.col("t")),
        pl.lit(f"<Period><base:Year>{period.year}</base:Year><base:Month>{period.month}</base:Month>"
               "</Period></CurrentValue>")])
    value = pl.when(one_rate).then(pl.concat_str([
        pl.lit("<OneRateDeviceValue><CurrentValue><mdb:MunicipalResource>"), _nsi_ref(names=names),
        pl.lit("</mdb:MunicipalResource>"), _tag("mdb:MeteringValue", _reading("curr_value_micro")), tail,
        pl.lit("</OneRateDeviceValue>")])).otherwise(pl.concat_str([
            pl.lit("<ElectricDeviceValue><CurrentValue>"),
            _tag("mdb:MeteringValueT1", _reading("curr_value_micro")), tail,
            pl.lit("</ElectricDeviceValue>")]))
    xml = pl.concat_str([pl.lit("<MeteringDevicesValues>"),
                         _tag("MeteringDeviceRootGUID", pl.col("device_guid")), value,
                         pl.lit("</MeteringDevicesValues>")])
    return rows.select("meter_id", xml.alias("xml"))


def _md_bodies(readings: pl.DataFrame, limits: Limits) -> tuple[list[_Body], list[list[str]]]:
    """The messages of ``readings`` (meter_id, xml) and the meters in each."""
    if not readings.height:
        return [], []
    overhead = len(_MD_OPEN.encode()) + len(_MD_CLOSE)
    meters = readings["meter_id"].to_list()
    parts = _parts(readings["xml"].str.len_bytes().to_list(), limits.readings_per_message,
                   limits.max_bytes, overhead, meters, "Показания прибора учёта")
    grouped = readings.with_columns(pl.Series("part", parts, pl.Int64)).group_by(
        "part", maintain_order=True).agg(pl.len().alias("rows"), pl.col("meter_id"))
    data, offsets = _spans(readings["xml"])
    datas = _join_messages(data, offsets, parts, [_MD_OPEN] * grouped.height, _MD_CLOSE)
    bodies = [_Body(data, rows, 0) for data, rows in zip(datas, grouped["rows"].to_list(), strict=True)]
    return bodies, grouped["meter_id"].to_list()


# ------------------------------------------------------------------ the export


def _report(skipped_docs: pl.DataFrame, skipped_meters: pl.DataFrame) -> ExportFile:
    docs = skipped_docs.group_by("account_id", maintain_order=True).agg(
        pl.col("reason").str.join("; "), pl.col("total_kop").first().fill_null(0).cast(pl.Int64))
    kop = pl.col("total_kop")
    rubles = pl.concat_str([pl.when(kop < 0).then(pl.lit("-")).otherwise(pl.lit("")),
                            (kop.abs() // 100).cast(pl.String), pl.lit(","),
                            (kop.abs() % 100).cast(pl.String).str.zfill(2)])
    what, account, meter, amount, reason = SKIPPED_HEADER
    table = pl.concat([
        docs.select(pl.lit("платёжный документ").alias(what),
                    pl.col("account_id").cast(pl.String).alias(account), pl.lit("").alias(meter),
                    rubles.alias(amount), pl.col("reason").alias(reason)),
        skipped_meters.select(pl.lit("показания").alias(what), pl.lit("").alias(account),
                              pl.col("meter_id").cast(pl.String).alias(meter), pl.lit("").alias(amount),
                              pl.col("reason").cast(pl.String).alias(reason)),
    ])
    data = "\ufeff".encode() + table.write_csv(separator=";", line_terminator="\r\n").encode()
    rows = docs.height + skipped_meters.height
    # Its sum is not the file's control sum (nothing in it is sent): kept as a figure of its own.
    return ExportFile(SKIPPED_NAME, data, rows=rows, total_kop=0, recipient=RECIPIENT,
                      extra={"documents": docs.height, "meters": skipped_meters.height,
                             "left_out_kop": int(docs["total_kop"].sum() or 0), LEFT_OUT: True})


#: Messages whose documents are built at once (one task of the pool): a document is ≈ 8 KB of
#: XML, so a region's export is made (and written, :func:`pipeline.export.write_exports`) a slice
#: of accounts at a time instead of holding gigabytes. A message never spans two slices.
CHUNK_MESSAGES = 40


#: The per-account tables a slice of payment documents reads.
PER_ACCOUNT = ("charges", "recalculations", "penalties", "balances", "gis_ids", "payee_discounts",
               "line_discounts")


def _by_account(frames: GisFrames) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """(the :data:`PER_ACCOUNT` tables sorted by account — stable: an account's rows keep their
    order —, the accounts with a figure in the period, sorted): the accounts are each sorted
    column's first of every run of equal ones, not a hash of every row (a million accounts:
    2.6 → 0.6 s)."""
    tables = {n: getattr(frames, n).with_columns(pl.col("account_id").cast(pl.String)).sort(
        "account_id", maintain_order=True) for n in PER_ACCOUNT}
    c = pl.col("account_id")
    ids = pl.concat([tables[n].select(c.filter(c.ne_missing(c.shift(1))))
                     for n in ("charges", "recalculations", "penalties", "balances")])
    return tables, ids.unique().sort("account_id")


@dataclass(frozen=True)
class _Shared:
    """Rows ``start`` … ``start + length`` of a table written once for the pool (:func:`_share`):
    what a task carries instead of the rows themselves."""

    path: Path
    start: int
    length: int

    def load(self) -> pl.DataFrame:
        return pl.scan_ipc(self.path).slice(self.start, self.length).collect()


def _share(folder: Path, name: str, table: pl.DataFrame) -> Path:
    """``table`` written into ``folder`` as uncompressed Arrow IPC, read back a range at a time by
    the pool's workers (:class:`_Shared`)."""
    path = folder / f"{name}.arrow"
    table.write_ipc(path, compression="uncompressed")
    return path


#: :func:`_by_account`'s tables and accounts.
Sorted = tuple[dict[str, pl.DataFrame], pl.DataFrame]


def _slices(frames: GisFrames, size: int, sorted_tables: Sorted | None = None,
            shared: Path | None = None) -> Iterator[tuple[GisFrames, dict[str, _Shared]]]:
    """``frames`` cut into slices of at most ``size`` accounts, in account order (``sorted_tables``:
    :func:`_by_account`'s, made here unless given): each a :class:`GisFrames` and, with ``shared``
    (a scratch folder), the ranges of its per-account tables written there once (the slice's own
    :data:`PER_ACCOUNT` tables then empty: a worker loads them with :func:`_sliced`)."""
    tables, ids = _by_account(frames) if sorted_tables is None else sorted_tables
    if ids.height <= size:
        yield frames, {}
        return
    # A slice is a range of each sorted table's rows found by a binary search for the slice's
    # first account — no shuffle of the million accounts' rows. A row of an account with no
    # document (a gis_ids row only) lands in a slice that ignores it; the first slice starts at
    # each table's first row.
    bounds = ids["account_id"].gather(list(range(0, ids.height, size)))
    starts = {n: [0, *t["account_id"].search_sorted(bounds[1:], side="left").to_list(), t.height]
              for n, t in tables.items()}
    # a slice carries only what its documents read (the meters are the readings' tasks')
    light = {"meter_volumes": frames.meter_volumes.clear(), "gis_meter_ids": frames.gis_meter_ids.clear()}
    paths = {n: _share(shared, n, t) for n, t in tables.items()} if shared is not None else {}
    for c in range(bounds.len()):
        ranges = {n: (starts[n][c], starts[n][c + 1] - starts[n][c]) for n in tables}
        if shared is None:
            yield replace(frames, **light, **{n: t.slice(*ranges[n]) for n, t in tables.items()}), {}
        else:
            yield (replace(frames, **light, **{n: t.clear() for n, t in tables.items()}),
                   {n: _Shared(paths[n], *ranges[n]) for n in tables})


def _sliced(part: GisFrames, shared: dict[str, _Shared]) -> GisFrames:
    """``part`` with the tables ``shared`` names loaded (as :func:`_slices` made them)."""
    return replace(part, **{n: ref.load() for n, ref in shared.items()}) if shared else part


#: The name of :func:`_scratch`'s folders: then the process id, then a random part.
SCRATCH_PREFIX = "billing-gis-"


@contextmanager
def _scratch(need: int) -> Iterator[Path]:
    """A scratch folder for the tables the pool shares (:func:`_share`), removed at the end: in
    ``/dev/shm`` (memory: never written back to a disk) when it has twice ``need`` bytes free,
    else in the system's temporary folder. Its name carries this process's id, so that what a
    killed export left there (in memory, till the machine restarts) is removed by the next one."""
    shm = Path("/dev/shm")
    base = Path(tempfile.gettempdir())
    if shm.is_dir() and os.access(shm, os.W_OK):
        vfs = os.statvfs(shm)
        if vfs.f_bavail * vfs.f_frsize >= 2 * need:
            base = shm
    for left in base.glob(f"{SCRATCH_PREFIX}*"):
        pid = left.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


#: ``validate = "shapes"``: the shapes this process has validated in the export run named by the
#: key (a run's tasks share a worker process's set; another run starts afresh).
_SEEN_SHAPES: dict[str, set[int]] = {}


def _new_shapes(items: pl.DataFrame, run: str) -> pl.DataFrame:
    """The items (``xml`` column) of a shape not validated yet in ``run`` by this process, one each.

    A shape is the item's markup with every text value taken out (``<a>1</a><b>x</b>`` →
    ``<a></a><b></b>``): which elements, attributes and in what order — what the builder's
    optional parts decide."""
    seen = _SEEN_SHAPES.setdefault(run, set())
    if len(_SEEN_SHAPES) > 1:  # one run at a time per process: forget the earlier ones
        for other in [r for r in _SEEN_SHAPES if r != run]:
            del _SEEN_SHAPES[other]
    shape = pl.col("xml").str.replace_all(r">[^<]+<", "><").hash().alias("_shape")
    shapes = items.with_columns(shape).unique("_shape", keep="first", maintain_order=True).filter(
        ~pl.col("_shape").is_in(list(seen)))
    seen.update(shapes["_shape"].to_list())
    return shapes.drop("_shape")


def _pd_task(period: Period, part: GisFrames, limits: Limits, run: str = "",
             stage: Path | None = None, shared: dict[str, _Shared] | None = None,
             ) -> tuple[list[_Body], pl.DataFrame]:
    """One slice of accounts (its tables ``shared`` when :func:`_slices` shared them): its
    payment-document messages, validated, and what it left out."""
    docs, payees, skipped = _documents(period, _sliced(part, shared or {}), limits.service_names)
    bodies, keys = _pd_bodies(period, docs, payees, limits)
    with _staging(bodies, stage) as staged:
        _validate("bills", bodies, keys, "PaymentDocument", "лицевой счёт", limits.validate)
        if limits.validate == "shapes":
            new = _new_shapes(_doc_texts(docs).with_row_index("_at"), run)["_at"]
            # the new shapes' documents alone (their parts of other documents find no place)
            fresh = docs.frame.with_row_index("_at").filter(pl.col("_at").is_in(new.implode())).drop("_at")
            extra, extra_keys = _pd_bodies(period, replace(docs, frame=fresh), payees, limits)
            _validate("bills", extra, extra_keys, "PaymentDocument", "лицевой счёт", "all")
        return staged(), skipped


def _md_task(period: Period, rows: pl.DataFrame | _Shared, limits: Limits, run: str = "",
             stage: Path | None = None) -> tuple[list[_Body], None]:
    """One slice of accepted readings (or a range of the shared ones): its messages, validated."""
    if isinstance(rows, _Shared):
        rows = rows.load()
    readings = _reading_xml(period, rows, limits.service_names)
    bodies, keys = _md_bodies(readings, limits)
    with _staging(bodies, stage) as staged:
        _validate("device-metering", bodies, keys, "MeteringDevicesValues", "прибор учёта", limits.validate)
        if limits.validate == "shapes":
            extra, extra_keys = _md_bodies(_new_shapes(readings, run), limits)
            _validate("device-metering", extra, extra_keys, "MeteringDevicesValues", "прибор учёта", "all")
        return staged(), None


Task = tuple[Callable[..., Any], tuple[Any, ...]]
def _in_order(tasks: Iterator[Task], pool: ProcessPoolExecutor | None,
              workers: int) -> Generator[Any, None, None]:
    """Each task's result, in the tasks' order; run by ``pool`` (at most ``2 × workers`` results
    ahead of the consumer), or here without one."""
    if pool is None:
        for fn, args in tasks:
            yield fn(*args)
        return
    pending: deque[Future[Any]] = deque()
    try:
        for fn, args in tasks:
            pending.append(pool.submit(fn, *args))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for job in pending:
            job.cancel()


def gis_files(period: Period, frames: GisFrames, limits: Limits | None = None,
              workers: int = 1) -> list[ExportFile]:
    """The ГИС ЖКХ files of ``period`` from ``frames`` (pure: the same frames, the same bytes,
    whatever ``workers``)."""
    return list(iter_gis_files(period, frames, limits, workers))


def iter_gis_files(period: Period, frames: GisFrames, limits: Limits | None = None,
                   workers: int | None = None, stage: Path | None = None) -> Iterator[ExportFile]:
    """:func:`gis_files` one by one, in order, as they are made (what ``billing export gis`` writes).

    Payment-document messages (:data:`CHUNK_MESSAGES` messages' accounts a task), reading
    messages (as many readings a task) and the report of what was left out; each message
    validated against its schema as ``limits.validate`` says (``sample``: the first of each
    task; :class:`BillingError` when one is not valid). With more than one slice of accounts the
    tasks run in a process pool of ``workers`` (default: :func:`default_workers`); as with any
    ``forkserver`` pool a script calling this must guard its entry point with
    ``if __name__ == "__main__":``. With ``stage`` (a folder of :func:`pipeline.export.staging_folder`)
    and a pool, each message is written there by the task that made it and comes as a staged file.
    """
    limits = limits or Limits()
    size = limits.documents_per_message * CHUNK_MESSAGES
    # a penalty of 0 is on no document (:func:`_documents`): not sorted, shared or sliced
    frames = replace(frames, penalties=frames.penalties.filter(pl.col("amount_kop") != 0))
    tables = _by_account(frames)
    if tables[1].height <= size:
        workers = 1  # one slice: no pool to start
    workers = default_workers() if workers is None else workers
    if workers <= 1:
        stage = None  # made here: the bytes are in this process already
    run = uuid.uuid4().hex  # names this run's shapes seen (validate = "shapes"); not in any output
    step = limits.readings_per_message * CHUNK_MESSAGES
    with ExitStack() as stack:
        pool = stack.enter_context(worker_pool(workers))  # starting while the rest is prepared
        # With a pool the per-account tables and the readings are written once into a scratch
        # folder and each task names its range: pickling every slice through a pipe cost this
        # process a quarter of a million accounts' export (docs/benchmarks.md).
        shared = None
        if pool is not None:
            need = sum(t.estimated_size() for t in tables[0].values())
            shared = stack.enter_context(_scratch(int(need + frames.meter_volumes.estimated_size()
                                                      + frames.gis_meter_ids.estimated_size())))
        # the readings' rows are made by a thread of this process while the documents' tasks are
        # handed out and built (Polars lets go of the GIL)
        readings = stack.enter_context(ThreadPoolExecutor(1)).submit(_reading_rows, period, frames)
        meters: dict[str, pl.DataFrame] = {}

        def md_tasks() -> Iterator[Task]:
            """The readings' tasks, once their rows are made."""
            rows, meters["skipped"] = readings.result()
            source = _share(shared, "readings", rows) if shared is not None else None
            for start in range(0, rows.height, step):
                part = (rows.slice(start, step) if source is None
                        else _Shared(source, start, min(step, rows.height - start)))
                yield _md_task, (period, part, limits, run, stage)

        pd_tasks: Iterator[Task] = ((_pd_task, (period, part, limits, run, stage, refs))
                                    for part, refs in _slices(frames, size, tables, shared))
        results = _in_order(itertools.chain(pd_tasks, md_tasks()), pool, workers)
        stack.callback(results.close)  # the tasks end before the pool and its scratch folder
        yield from _files(period, results, meters)


def _files(period: Period, results: Iterator[Any], meters: dict[str, pl.DataFrame]) -> Iterator[ExportFile]:
    """The export's files from the tasks' ``results`` (in order), numbered, and the report of what
    was left out (the meters' part in ``meters["skipped"]`` once the results are through)."""
    skipped: list[pl.DataFrame] = []
    pd = md = 0
    for bodies, left_out in results:
        if left_out is not None:
            skipped.append(left_out)
        for body in bodies:
            if left_out is not None:
                pd += 1
                yield ExportFile(
                    f"pd/importPaymentDocumentRequest_{period}_{pd:04d}.xml", body.data, rows=body.rows,
                    total_kop=body.total_kop, recipient=RECIPIENT, staged=body.staged,
                    extra={"message_guid": str(uuid.uuid5(NAMESPACE, f"{period}/pd/message/{pd}")),
                           "request": "importPaymentDocumentRequest", "schema": "ГИС ЖКХ 16.3.0.0"})
            else:
                md += 1
                yield ExportFile(
                    f"readings/importMeteringDeviceValuesRequest_{period}_{md:04d}.xml", body.data,
                    rows=body.rows, total_kop=0, recipient=RECIPIENT, staged=body.staged,
                    extra={"message_guid": str(uuid.uuid5(NAMESPACE, f"{period}/readings/message/{md}")),
                           "request": "importMeteringDeviceValuesRequest", "schema": "ГИС ЖКХ 16.3.0.0"})
    yield _report(pl.concat(skipped), meters["skipped"])
