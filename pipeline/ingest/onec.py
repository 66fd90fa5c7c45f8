"""Bank statements in the 1С exchange format (``1CClientBankExchange``): bytes in, frames out.

The text file every Russian bank's client exports (exchange-format research notes, §9):
``Key=Value`` lines, the first line ``1CClientBankExchange``, a header (``ВерсияФормата``,
``Кодировка``, ``ДатаНачала``, ``ДатаКонца``, ``РасчСчет`` …), one ``СекцияРасчСчет`` …
``КонецРасчСчет`` per account (``ВсегоПоступило`` …), one ``СекцияДокумент=<вид>`` …
``КонецДокумента`` per document, and ``КонецФайла`` at the end.

``billing payments import`` takes it (detected by its first line, or ``--format 1c``):

* **Incoming.** Only a document to a settlement account of the organizations register
  (``ПолучательСчет``, or ``ПолучательРасчСчет``) from an account that is not one of
  them is money in; the others (our payments out, transfers between our own accounts)
  are counted in the import's notes and left alone.
* **Agent settlements.** A document whose payer (``ПлательщикСчет`` or ``ПлательщикИНН``)
  is an *agent organization* — an organizations register row whose ``org_id`` is an agent
  whose payments the store already holds (``sber`` of the nightly Sber registers, ``post``
  …) — is the agent's daily transfer of payments its register already brought: not a new
  payment. It goes to ``store/agent_settlements.parquet`` and is reconciled against the
  agent's register payments (accepted and in suspense) of the days it covers: the dates
  the purpose names (``с 12.09.2026 по 14.09.2026`` is a range; dates after «за» win over
  other dates), else the day before the document (UNVERIFIED rule: banks state the
  register day in the purpose in every sample seen, the fallback is a guess). Equal →
  ``reconciled``; different → ``difference`` with the difference in Russian; no register
  payments on those days → ``no_register``. The status is that of the import day.
* **Matching a payment** by the purpose text (``НазначениеПлатежа``), in this order:
  our invoice number ``{account_id}-{YYYYMM}-{n}`` (:mod:`pipeline.render.invoice`; it
  names the account and the period), the account number (``ЛС 123``, ``л/с 123``,
  ``лицевой счет №123``, ``ЛС: 123``; Cyrillic letters that look Latin are tried as
  Latin), then the payer's ИНН when exactly one account carries it (``payer_inn`` of
  the accounts register, when the register has that column). The period: ``за 09.2026``,
  ``09/2026``, ``сентябрь 2026``, ``2026-09`` (one period named; several or none → no
  period, the engine's own order applies). An account number that is not in the register,
  several different ones, or none at all leave the payment for suspense, with the payer
  and the purpose in the reason.
* **Identity.** The agent of these payments is ``1c``; the payment id is derived from the
  document: ``YYYYMMDD-<Номер>-<8 hex>`` where the hex is of date, number, amount and
  payer account (:func:`payment_id`), so the same document in a later statement is a
  known payment, and a re-import changes nothing.
* **Encoding.** UTF-8 when the bytes are valid UTF-8 (some banks write UTF-8 under
  ``Кодировка=Windows``), else as declared: ``DOS`` → cp866, otherwise cp1251.
* **Whole file refused** (Russian message): no first line ``1CClientBankExchange``, a
  section not closed, text after ``КонецФайла``; no ``КонецФайла`` at all raises
  :class:`~pipeline.workspace.IncompleteFileError` (cut or still being written).
* **Rejects** (file, row, column, value, reason): an incoming document with a bad or
  missing ``Сумма`` (zero and negative too), ``Дата``, ``ДатаПоступило`` or ``Номер``,
  or a line that is not ``Key=Value``; the row is the line of the key.
* A ``ВсегоПоступило`` of an account section that differs from the sum of the incoming
  documents to it is a note, not a refusal (a statement may hold selected documents).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl

from pipeline.ingest.bank_formats import INCOMING_SCHEMA, ONEC_FIRST_LINE, is_statement, parse_dmy
from pipeline.ingest.parse import REJECT_SCHEMA
from pipeline.money import parse_rubles, rubles_text
from pipeline.workspace import BillingError, IncompleteFileError, Workspace, write_parquet_atomic

FORMAT = "1c"
#: The agent of the payments a statement brings (part of a payment's identity).
AGENT = FORMAT
FIRST_LINE = ONEC_FIRST_LINE
SETTLEMENTS_FILE = "agent_settlements.parquet"

DOCUMENTS_SCHEMA = pl.Schema({
    "source_row": pl.Int64(),  # the line of «СекцияДокумент=…»
    "kind": pl.String(),
    "number": pl.String(),
    "doc_date": pl.Date(),
    "received_on": pl.Date(),
    "amount_kop": pl.Int64(),
    "payer_inn": pl.String(),
    "payer_name": pl.String(),
    "payer_account": pl.String(),
    "payee_inn": pl.String(),
    "payee_account": pl.String(),
    "purpose": pl.String(),
})

PROBLEMS_SCHEMA = pl.Schema({**REJECT_SCHEMA, "doc_row": pl.Int64()})


SETTLEMENTS_SCHEMA = pl.Schema({
    "settlement_id": pl.String(),
    "agent": pl.String(),
    "doc_number": pl.String(),
    "doc_date": pl.Date(),
    "received_on": pl.Date(),
    "amount_kop": pl.Int64(),
    "payer_inn": pl.String(),
    "payer_account": pl.String(),
    "payee_account": pl.String(),
    "purpose": pl.String(),
    "days": pl.String(),  # the register days reconciled, «DD.MM.YYYY, …»
    "register_kop": pl.Int64(),
    "difference_kop": pl.Int64(),  # transfer − registers
    "status": pl.String(),  # reconciled | difference | no_register
    "message": pl.String(),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    "file_sha256": pl.String(),
    "imported_at": pl.Datetime("us"),
})

_MARKERS = ("СекцияРасчСчет", "КонецРасчСчет", "КонецДокумента", "КонецФайла")
_WORD = "0-9A-Za-zА-Яа-яЁё"
_LS_RE = re.compile(
    rf"(?<![{_WORD}])(?:л\s*/\s*с(?:ч[её]?т?)?|л\.\s*с\.?|лс|лиц(?:евой|евому|евого|\.)?\s*сч(?:[её]т[ау]?|\.)?)"
    rf"(?![A-Za-zА-Яа-яЁё])\s*(?:№|N|#)?\s*[:.]?\s*(?P<id>[{_WORD}][{_WORD}/-]*)",
    re.IGNORECASE)
_INVOICE_RE = re.compile(rf"(?<![{_WORD}/-])(?P<acc>[{_WORD}][{_WORD}/-]*?)-(?P<y>\d{{4}})"
                         rf"(?P<m>0[1-9]|1[0-2])-(?P<n>\d{{1,3}})(?![{_WORD}])")
_PERIOD_NUM_RE = re.compile(r"(?<![\d./])(0?[1-9]|1[0-2])[./](20\d{2})(?![\d./])")
_PERIOD_ISO_RE = re.compile(r"(?<![\d-])(20\d{2})-(0[1-9]|1[0-2])(?![\d-])")
_MONTHS = ("январ", "феврал", "март", "апрел", "ма[йя]", "июн", "июл", "август", "сентябр",
           "октябр", "ноябр", "декабр")
_PERIOD_NAME_RE = re.compile(
    r"(?<![а-яё])(" + "|".join(_MONTHS) + r")[а-яё]*\s*(20\d{2})", re.IGNORECASE)
_DAY_RE = re.compile(r"(?<![\d.])(\d{1,2})\.(\d{1,2})\.(\d{4}|\d{2})(?![\d.])")
_RANGE_RE = re.compile(r"(?:^|\s)с\s+(\d{1,2}\.\d{1,2}\.(?:\d{4}|\d{2}))\s*(?:г\.?)?\s*(?:по|-|—)\s*"
                       r"(\d{1,2}\.\d{1,2}\.(?:\d{4}|\d{2}))", re.IGNORECASE)
_FOR_DAY_RE = re.compile(r"(?:^|[\s,;(])за\s+(\d{1,2}\.\d{1,2}\.(?:\d{4}|\d{2}))", re.IGNORECASE)
#: Cyrillic letters a payer types for the Latin ones of an account number.
_LOOKALIKE = str.maketrans("АВЕКМНОРСТХУ", "ABEKMHOPCTXY")


@dataclass(frozen=True)
class Statement:
    """A parsed statement: header keys, account sections, documents and their problems."""

    header: dict[str, str]
    accounts: tuple[dict[str, str], ...]
    documents: pl.DataFrame  # DOCUMENTS_SCHEMA
    problems: pl.DataFrame  # PROBLEMS_SCHEMA: reject rows with the document's line
    encoding: str


@dataclass(frozen=True)
class Context:
    """What sorting a statement needs from the workspace (all frames may be empty).

    ``our_accounts``: settlement accounts of our organizations. ``agents``: ``agent``,
    ``inn``, ``account`` of the agent organizations. ``accounts``: the accounts register
    (``account_id``; ``payer_inn`` used when present). ``register_payments``: ``agent``,
    ``paid_on``, ``amount_kop`` of the agents' payments already imported.
    """

    our_accounts: frozenset[str]
    agents: pl.DataFrame
    accounts: pl.DataFrame
    register_payments: pl.DataFrame


@dataclass(frozen=True)
class Sorted:
    """A statement sorted into payments, agent settlements, rejects and notes."""

    incoming: pl.DataFrame  # INCOMING_SCHEMA
    explain: pl.DataFrame  # source_row, why (Russian: payer and purpose), for suspense reasons
    settlements: pl.DataFrame  # SETTLEMENTS_SCHEMA without source_file/file_sha256/imported_at filled
    rejects: pl.DataFrame  # REJECT_SCHEMA
    skipped: int  # documents that are not money in
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- bytes → text


def decode_statement(name: str, data: bytes) -> tuple[str, str]:
    """The statement's text and encoding: UTF-8 if valid, else as ``Кодировка=`` says."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    declared = ""
    for enc in ("cp1251", "cp866"):
        m = re.search(r"^Кодировка=(.*)$", data.decode(enc, errors="replace"), re.MULTILINE)
        if m:
            declared = m[1].strip().lower()
            break
    if declared.replace("-", "") in ("utf8", "unicode"):
        raise BillingError(f"{name}: в заголовке выписки «Кодировка={declared}», но файл не в UTF-8 — "
                           f"файл не принят")
    encoding = "cp866" if declared == "dos" else "cp1251"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        raise BillingError(f"{name}: выписка не читается в кодировке {encoding} (Кодировка={declared or '—'})"
                           f" — файл не принят") from None


# --------------------------------------------------------------------------- text → frames


def parse_statement(name: str, data: bytes) -> Statement:
    """Parse the statement's bytes; see the module docstring for what refuses the file."""
    if not is_statement(data):
        raise BillingError(f"{name}: это не выписка 1С — первая строка должна быть «{FIRST_LINE}»")
    text, encoding = decode_statement(name, data)
    header: dict[str, str] = {}
    sections: list[dict[str, str]] = []
    docs: list[dict[str, Any]] = []
    problems: list[tuple[str, int, str, str | None, str, int]] = []
    current: dict[str, Any] | None = None  # the open document
    section: dict[str, str] | None = None
    ended_at: int | None = None
    first = True
    for row, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line:
            continue
        if first:
            first = False
            continue
        if ended_at is not None:
            raise BillingError(f"{name}: строка {row} идёт после «КонецФайла» (строка {ended_at}) — "
                               f"файл не принят")
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if (not sep and key in _MARKERS) or key == "СекцияДокумент":
            if current is not None and key != "КонецДокумента":
                raise BillingError(f"{name}: документ из строки {current['_row']} не закрыт "
                                   f"«КонецДокумента» до строки {row} — файл не принят")
            if section is not None and key != "КонецРасчСчет":
                raise BillingError(f"{name}: секция счёта не закрыта «КонецРасчСчет» до строки {row} — "
                                   f"файл не принят")
            if key == "СекцияДокумент":
                current = {"_row": row, "_kind": value, "_lines": {}}
            elif key == "СекцияРасчСчет":
                section = {}
            elif key == "КонецРасчСчет":
                if section is None:
                    raise BillingError(f"{name}: строка {row}: «КонецРасчСчет» без «СекцияРасчСчет» — "
                                       f"файл не принят")
                sections.append(section)
                section = None
            elif key == "КонецДокумента":
                if current is None:
                    raise BillingError(f"{name}: строка {row}: «КонецДокумента» без «СекцияДокумент» — "
                                       f"файл не принят")
                docs.append(current)
                current = None
            else:
                ended_at = row
            continue
        target = current
        if not sep:
            if target is not None:
                problems.append((name, row, "строка", line, "строка документа не в виде «Ключ=Значение»",
                                 int(target["_row"])))
            continue  # a header line of no use to us
        if target is not None:
            target.setdefault(key, value)
            target["_lines"].setdefault(key, row)
        elif section is not None:
            section.setdefault(key, value)
        else:
            header.setdefault(key, value)
    if ended_at is None:
        where = (f"документ из строки {current['_row']} не закрыт, " if current is not None else "")
        raise IncompleteFileError(f"{name}: нет строки «КонецФайла»: {where}выписка, возможно, обрезана или "
                                  f"ещё записывается — файл не принят")

    out = [_document(name, d, problems) for d in docs]
    return Statement(
        header=header, accounts=tuple(sections),
        documents=pl.DataFrame(out, schema=DOCUMENTS_SCHEMA, orient="row") if out
        else pl.DataFrame(schema=DOCUMENTS_SCHEMA),
        problems=pl.DataFrame(problems, schema=PROBLEMS_SCHEMA, orient="row") if problems
        else pl.DataFrame(schema=PROBLEMS_SCHEMA),
        encoding=encoding)


def _document(name: str, d: dict[str, Any], problems: list[tuple[str, int, str, str | None, str, int]]
              ) -> dict[str, Any]:
    start = int(d["_row"])
    lines: dict[str, int] = d["_lines"]

    def get(*keys: str) -> str | None:
        for key in keys:
            if d.get(key):
                return str(d[key])
        return None

    def bad(key: str, value: str | None, reason: str) -> None:
        problems.append((name, lines.get(key, start), key, value, reason, start))

    amount = None
    text = get("Сумма")
    if text is None:
        bad("Сумма", None, "нет суммы документа")
    else:
        try:
            amount = parse_rubles(text)
        except ValueError as exc:
            bad("Сумма", text, f"сумма не читается: {exc}")
        else:
            if amount <= 0:
                bad("Сумма", text, "сумма документа должна быть больше нуля")

    def day(key: str, required: bool) -> date | None:
        value = get(key)
        if value is None:
            if required:
                bad(key, None, f"нет даты ({key})")
            return None
        parsed = parse_dmy(value)
        if parsed is None:
            bad(key, value, "дата должна быть в виде ДД.ММ.ГГГГ")
        return parsed

    number = get("Номер")
    if number is None:
        bad("Номер", None, "нет номера документа")
    payer_name = get("Плательщик1", "Плательщик")
    return {
        "source_row": start,
        "kind": d["_kind"] or None,
        "number": re.sub(r"\s+", "", number) if number else None,
        "doc_date": day("Дата", True),
        "received_on": day("ДатаПоступило", False),
        "amount_kop": amount,
        "payer_inn": get("ПлательщикИНН"),
        "payer_name": payer_name,
        "payer_account": get("ПлательщикСчет", "ПлательщикРасчСчет"),
        "payee_inn": get("ПолучательИНН"),
        "payee_account": get("ПолучательСчет", "ПолучательРасчСчет"),
        "purpose": get("НазначениеПлатежа"),
    }


def payment_id(doc_date: date, number: str, amount_kop: int, payer_account: str | None) -> str:
    """The stable id of a statement document: ``YYYYMMDD-<number>-<8 hex of its key>``.

    >>> payment_id(date(2026, 9, 15), "57", 150000, "40817810000000000001")
    '20260915-57-2e955d47'
    """
    day = f"{doc_date:%Y%m%d}"
    key = f"{day}|{number}|{amount_kop}|{payer_account or ''}"
    return f"{day}-{number}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


# --------------------------------------------------------------------------- purpose text


def find_period(purpose: str | None) -> str | None:
    """The one period (``YYYY-MM``) the purpose names, or None (none or several).

    >>> find_period("ЛС 12 за 09.2026"), find_period("за сентябрь 2026 г."), find_period("15.09.2026")
    ('2026-09', '2026-09', None)
    """
    if not purpose:
        return None
    found = {f"{y}-{int(m):02d}" for m, y in _PERIOD_NUM_RE.findall(purpose)}
    found |= {f"{y}-{m}" for y, m in _PERIOD_ISO_RE.findall(purpose)}
    for stem, year in _PERIOD_NAME_RE.findall(purpose):
        low = stem.lower()
        month = next(i for i, s in enumerate(_MONTHS, start=1) if re.fullmatch(s, low))
        found.add(f"{year}-{month:02d}")
    return found.pop() if len(found) == 1 else None


def match_purpose(purpose: str | None, known: set[str]) -> tuple[str | None, str | None, str]:
    """(account_id, period, how) from the purpose text; ``known`` are the register's accounts.

    ``how`` is ``invoice``, ``account``, ``unknown`` (an account number not in the
    register: it is returned, the payment waits in suspense), ``ambiguous`` (several
    accounts named) or ``none``.

    >>> match_purpose("Оплата по счёту № A1-202609-2", {"A1"})
    ('A1', '2026-09', 'invoice')
    >>> match_purpose("л/с А1 за 08.2026", {"A1"})
    ('A1', '2026-08', 'account')
    """
    if not purpose:
        return None, None, "none"
    period = find_period(purpose)
    for m in _INVOICE_RE.finditer(purpose):
        acc = _known(m["acc"], known)
        if acc is not None:
            return acc, f"{m['y']}-{m['m']}", "invoice"
    named = [m["id"].rstrip("/-") for m in _LS_RE.finditer(purpose)]
    hits = {acc for acc in (_known(n, known) for n in named) if acc is not None}
    if len(hits) == 1:
        return hits.pop(), period, "account"
    if len(hits) > 1 or len(set(named)) > 1:
        return None, period, "ambiguous"
    if named:
        return named[0], period, "unknown"
    return None, period, "none"


def _known(text: str, known: set[str]) -> str | None:
    for candidate in (text, text.upper(), text.upper().translate(_LOOKALIKE)):
        if candidate in known:
            return candidate
    return None


def covered_days(purpose: str | None, doc_date: date) -> list[date]:
    """The register days an agent's transfer covers: see the module docstring.

    >>> covered_days("Перечисление за 14.09.2026 по реестру от 15.09.2026", date(2026, 9, 15))
    [datetime.date(2026, 9, 14)]
    >>> [d.day for d in covered_days("за период с 12.09.2026 по 14.09.2026", date(2026, 9, 15))]
    [12, 13, 14]
    >>> covered_days("Платежи физлиц", date(2026, 9, 15))
    [datetime.date(2026, 9, 14)]
    """
    text = purpose or ""
    for m in _RANGE_RE.finditer(text):
        start, end = _day(m[1]), _day(m[2])
        if start and end and start <= end and (end - start).days <= 62:
            return [start + timedelta(days=i) for i in range((end - start).days + 1)]
    named = [d for d in (_day(t) for t in _FOR_DAY_RE.findall(text)) if d is not None]
    if not named:
        named = [d for d in (_day(".".join(g)) for g in _DAY_RE.findall(text)) if d is not None]
    return sorted(set(named)) or [doc_date - timedelta(days=1)]


def _day(text: str) -> date | None:
    parts = text.split(".")
    if len(parts) != 3:
        return None
    year = int(parts[2]) + (2000 if len(parts[2]) == 2 else 0)
    try:
        return date(year, int(parts[1]), int(parts[0]))
    except ValueError:
        return None


# --------------------------------------------------------------------------- sorting (pure)


def sort_statement(name: str, st: Statement, ctx: Context) -> Sorted:
    """Sort a parsed statement into payments, agent settlements, rejects and notes. Pure."""
    docs = st.documents
    ours = pl.col("payee_account").is_in(sorted(ctx.our_accounts))
    from_ours = pl.col("payer_account").is_not_null() & pl.col("payer_account").is_in(
        sorted(ctx.our_accounts))
    # A document without a recipient account cannot be told: it is looked at like an incoming one.
    incoming_expr = (ours | pl.col("payee_account").is_null()) & ~from_ours
    money_in = docs.filter(incoming_expr)
    skipped = docs.height - money_in.height
    problem_rows = st.problems.join(money_in.select(pl.col("source_row").alias("doc_row")), on="doc_row",
                                    how="semi")
    no_payee = money_in.filter(pl.col("payee_account").is_null())
    rejects = pl.concat([
        problem_rows.drop("doc_row"),
        no_payee.select(pl.lit(name).alias("file"), pl.col("source_row").alias("row"),
                        pl.lit("ПолучательСчет").alias("column"), pl.lit(None, pl.String).alias("value"),
                        pl.lit("нет счёта получателя: не понять, поступление ли это на наш счёт")
                        .alias("reason")),
    ]).cast(REJECT_SCHEMA).sort("row")
    # A document with a problem is rejected whole (its problems name the lines of its keys).
    good = money_in.join(problem_rows.select(pl.col("doc_row").alias("source_row")), on="source_row",
                         how="anti").filter(pl.col("payee_account").is_not_null())

    agents = ctx.agents.select(
        pl.col("agent").cast(pl.String), pl.col("inn").cast(pl.String), pl.col("account").cast(pl.String))
    by_account = {r["account"]: r["agent"] for r in agents.drop_nulls("account").iter_rows(named=True)}
    by_inn = {r["inn"]: r["agent"] for r in agents.drop_nulls("inn").iter_rows(named=True)}
    known = set(ctx.accounts["account_id"].to_list()) if ctx.accounts.height else set()
    by_payer_inn: dict[str, list[str]] = {}
    if "payer_inn" in ctx.accounts.columns:
        for r in ctx.accounts.drop_nulls("payer_inn").iter_rows(named=True):
            by_payer_inn.setdefault(str(r["payer_inn"]).strip(), []).append(r["account_id"])

    payments: list[dict[str, Any]] = []
    explain: list[dict[str, Any]] = []
    settlements: list[dict[str, Any]] = []
    notes: list[str] = []
    for d in good.iter_rows(named=True):
        doc_id = payment_id(d["doc_date"], d["number"], d["amount_kop"], d["payer_account"])
        agent = by_account.get(d["payer_account"] or "") or by_inn.get(d["payer_inn"] or "")
        if agent is not None:
            settlements.append(_settlement(doc_id, agent, d, ctx.register_payments))
            notes.append(settlements[-1]["message"])
            continue
        account, period, how = match_purpose(d["purpose"], known)
        if account is None and how == "none" and d["payer_inn"]:
            owners = by_payer_inn.get(d["payer_inn"].strip(), [])
            if len(owners) == 1:
                account, how = owners[0], "inn"
        payments.append({
            "payment_id": doc_id, "agent": AGENT, "paid_on": d["received_on"] or d["doc_date"],
            "account_id": account, "amount_kop": d["amount_kop"], "period": period, "refund_of": None,
            "source_row": d["source_row"],
        })
        explain.append({"source_row": d["source_row"], "why": _why(d, how)})
    if skipped:
        notes.append(f"документов выписки не о поступлении на наши расчётные счета (списания, переводы "
                     f"между своими счетами): {skipped} — это не платежи, не загружены")
    notes.extend(_control_notes(st, docs.filter(ours & ~from_ours)))
    strangers = sorted({str(a["РасчСчет"]) for a in st.accounts if a.get("РасчСчет")} - ctx.our_accounts)
    if strangers:
        notes.append(f"счёт выписки {', '.join(strangers)} не указан ни у одной нашей организации (реестр "
                     f"организаций, столбец account) — поступления на него не загружены")
    return Sorted(
        incoming=pl.DataFrame(payments, schema=INCOMING_SCHEMA, orient="row") if payments
        else pl.DataFrame(schema=INCOMING_SCHEMA),
        explain=pl.DataFrame(explain, schema={"source_row": pl.Int64, "why": pl.String}, orient="row")
        if explain else pl.DataFrame(schema={"source_row": pl.Int64, "why": pl.String}),
        settlements=pl.DataFrame(settlements, schema=SETTLEMENTS_SCHEMA, orient="row") if settlements
        else pl.DataFrame(schema=SETTLEMENTS_SCHEMA),
        rejects=rejects, skipped=skipped, notes=tuple(notes))


def _why(d: dict[str, Any], how: str) -> str:
    head = {
        "none": "в назначении платежа нет ни лицевого счёта, ни номера нашего счёта на оплату",
        "ambiguous": "в назначении платежа названо несколько лицевых счетов",
        "unknown": "лицевой счёт из назначения платежа не найден в реестре",
    }.get(how, "")
    payer = d["payer_name"] or "—"
    inn = f", ИНН {d['payer_inn']}" if d["payer_inn"] else ""
    tail = (f"п/п № {d['number']} от {d['doc_date']:%d.%m.%Y}, плательщик {payer}{inn}; "
            f"назначение: «{d['purpose'] or ''}»")
    return f"{head}; {tail}" if head else tail


def _settlement(doc_id: str, agent: str, d: dict[str, Any], register: pl.DataFrame) -> dict[str, Any]:
    days = covered_days(d["purpose"], d["doc_date"])
    mine = register.filter((pl.col("agent") == agent) & pl.col("paid_on").is_in(days)) if register.height \
        else register
    total = int(mine["amount_kop"].sum()) if mine.height else None
    day_text = ", ".join(f"{x:%d.%m.%Y}" for x in days)
    what = (f"Перечисление агента {agent} (п/п № {d['number']} от {d['doc_date']:%d.%m.%Y}, "
            f"{rubles_text(d['amount_kop'])})")
    if total is None:
        status, diff = "no_register", None
        message = (f"{what}: платежей {agent} за {day_text} в загруженных реестрах нет — сверить не с чем; "
                   f"загрузите реестр агента")
    elif total == d["amount_kop"]:
        status, diff = "reconciled", 0
        message = f"{what} сходится с реестрами за {day_text}: {rubles_text(total)}"
    else:
        status, diff = "difference", d["amount_kop"] - total
        more = "больше" if diff > 0 else "меньше"
        message = (f"{what} не сходится с реестрами за {day_text}: в реестрах {rubles_text(total)}, "
                   f"поступило на {rubles_text(abs(diff))} {more} (комиссия банка, платежи вне реестра "
                   f"или реестр загружен не весь)")
    return {
        "settlement_id": doc_id, "agent": agent, "doc_number": d["number"], "doc_date": d["doc_date"],
        "received_on": d["received_on"], "amount_kop": d["amount_kop"], "payer_inn": d["payer_inn"],
        "payer_account": d["payer_account"], "payee_account": d["payee_account"], "purpose": d["purpose"],
        "days": day_text, "register_kop": total, "difference_kop": diff, "status": status, "message": message,
        "source_file": None, "source_row": d["source_row"], "file_sha256": None, "imported_at": None,
    }


def _control_notes(st: Statement, incoming: pl.DataFrame) -> list[str]:
    notes = []
    for section in st.accounts:
        account, total = section.get("РасчСчет"), section.get("ВсегоПоступило")
        if not account or not total:
            continue
        try:
            expected = parse_rubles(total)
        except ValueError:
            notes.append(f"счёт {account}: «ВсегоПоступило={total}» не читается — итог не сверен")
            continue
        got = int(incoming.filter(pl.col("payee_account") == account)["amount_kop"].sum())
        if got != expected:
            notes.append(f"счёт {account}: в выписке «ВсегоПоступило» {rubles_text(expected)}, а входящих "
                         f"документов на {rubles_text(got)} — выписка, возможно, неполная")
    return notes


# --------------------------------------------------------------------------- workspace glue


def context(ws: Workspace, paid: pl.DataFrame) -> Context:
    """The workspace's organizations, accounts and agents' register payments for :func:`sort_statement`.

    ``paid``: ``agent``, ``paid_on``, ``amount`` of the payments imported so far (accepted and
    in suspense), which the payments module hands in.
    """
    from pipeline.ingest.registers import load_store

    regs = load_store(ws, names=["organizations", "accounts"])
    orgs = regs["organizations"]
    paid = paid.select("agent", "paid_on", "amount").filter(pl.col("agent") != AGENT).select(
        "agent", "paid_on",
        (pl.col("amount").cast(pl.Decimal(18, 2)) * 100).cast(pl.Int64).alias("amount_kop"))
    agent_names = set(paid["agent"].unique().to_list())
    agents = orgs.filter(pl.col("org_id").is_in(sorted(agent_names))).select(
        pl.col("org_id").alias("agent"), pl.col("inn").cast(pl.String), pl.col("account").cast(pl.String))
    ours = orgs.filter(~pl.col("org_id").is_in(sorted(agent_names)))["account"].drop_nulls().cast(pl.String)
    return Context(frozenset(ours.to_list()), agents, regs["accounts"], paid)


def read_statement(ws: Workspace, name: str, data: bytes, paid: pl.DataFrame) -> Sorted:
    """Parse and sort a statement against the workspace (what ``billing payments import`` does);
    ``paid`` as :func:`context`."""
    return sort_statement(name, parse_statement(name, data), context(ws, paid))


def explain_suspense(suspense: pl.DataFrame, explain: pl.DataFrame) -> pl.DataFrame:
    """Suspense rows of a statement with the payer and the purpose in their reason."""
    if not suspense.height or not explain.height:
        return suspense
    joined = suspense.join(explain, on="source_row", how="left")
    return joined.with_columns(
        pl.when(pl.col("why").is_null()).then(pl.col("reason"))
        .when(pl.col("account_id").is_null()).then(pl.col("why"))
        .otherwise(pl.col("reason") + pl.lit("; ") + pl.col("why")).alias("reason")).drop("why")


def load_settlements(ws: Workspace) -> pl.DataFrame:
    """``store/agent_settlements.parquet``: the agents' transfers the statements brought."""
    path = ws.store / SETTLEMENTS_FILE
    if not path.is_file():
        return pl.DataFrame(schema=SETTLEMENTS_SCHEMA)
    return pl.read_parquet(path).cast(SETTLEMENTS_SCHEMA)


def store_settlements(ws: Workspace, settlements: pl.DataFrame, file: str, digest: str,
                      now: datetime) -> tuple[int, int]:
    """Add a statement's settlements not stored yet (same agent and id): (added, already known)."""
    if not settlements.height:
        return 0, 0
    stored = load_settlements(ws)
    fresh = settlements.unique(["agent", "settlement_id"], keep="first", maintain_order=True).join(
        stored.select("agent", "settlement_id"), on=["agent", "settlement_id"], how="anti")
    if fresh.height:
        fresh = fresh.with_columns(pl.lit(file).alias("source_file"), pl.lit(digest).alias("file_sha256"),
                                   pl.lit(now).cast(pl.Datetime("us")).alias("imported_at"))
        write_parquet_atomic(pl.concat([stored, fresh.cast(SETTLEMENTS_SCHEMA)]), ws.store / SETTLEMENTS_FILE)
    return fresh.height, settlements.height - fresh.height


def drop_settlements(ws: Workspace, digest: str) -> int:
    """Remove the settlements a file brought (``billing payments revert``); returns how many."""
    stored = load_settlements(ws)
    mine = stored.filter(pl.col("file_sha256") == digest)
    if mine.height:
        write_parquet_atomic(stored.filter(pl.col("file_sha256").ne_missing(digest)),
                             ws.store / SETTLEMENTS_FILE)
    return mine.height
