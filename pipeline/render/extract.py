"""Statements people ask for, from sealed periods only: the account statement (выписка по
лицевому счёту) and the certificate of no debt (справка об отсутствии задолженности).

**Выписка** (:func:`write_extract`, ``billing extract СЧЁТ --period P [--to P2]``): month by
month and per supplier the opening balance, every charge line (service, volume, unit,
tariff, amount), the recalculations with their origin period and reason, the penalty, the
money paid (date, amount, agent; an advance moved to the supplier is shown as such) and the
closing balance. Every figure comes from the sealed tables (:func:`pipeline.reports.read_sealed`
verifies them against their manifests); before anything is written the statement is proved
to add up (:func:`check_extract`): per month and supplier opening + charged + recalculated +
penalty − paid = closing, each turnover equal to the sealed ``balances`` row, every month's
opening the previous month's closing, and the account's totals per month equal to the
карточка лицевого счёта (:func:`pipeline.reports.account_card`). A mismatch is refused with
a Russian message giving expected, computed and the difference.

**Справка** (:func:`write_nodebt`, ``billing nodebt СЧЁТ [--period P]``): on the last day of a
sealed period (default the last one), issued only when no supplier's closing balance is
positive; an advance (negative balance) is stated. It names the organization issuing it —
the collecting agent of ``[receipts] agent`` in ``settings.toml`` when set, else the
organization with the role ``billing_centre``, else the building's manager — the payer,
the address, the day and the periods checked. Choices and their reasons: docs/statements.md.

Both are rendered with WeasyPrint through :func:`pipeline.render.receipts.pdf_engine` and
written atomically into ``HOME/statements/`` (or ``out_dir``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from pipeline.allocate.ledger import PAID_KINDS
from pipeline.dates import Period
from pipeline.money import format_rub, rubles_text
from pipeline.penalties.court import sealed_registers
from pipeline.penalties.parties import premise_address
from pipeline.render.receipts import TEMPLATES_DIR, pdf_engine, period_text
from pipeline.reports import account_card, check_card, period_range, read_sealed
from pipeline.workspace import BillingError, Workspace, atomic_write_bytes

CSS_PATH = TEMPLATES_DIR / "extract.css"
#: The supplier key of an advance not yet spread over suppliers (``balances.supplier_id`` empty).
ADVANCE = ""
#: How a paying allocation reads in the statement.
PAID_TITLES = {"payment": "Оплата", "advance": "Оплата (аванс)", "refund": "Возврат",
               "advance_transfer": "Зачёт аванса"}
#: Rows of one month and supplier, in print order; ``amount_kop`` is signed (paid negative).
ENTRY_ORDER = ("opening", "charge", "recalculation", "penalty", "paid", "closing")


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True,
                              undefined=jinja2.StrictUndefined)


def _decimal(value: int, scale: int) -> str:
    """An integer of ``scale`` decimals as a Russian number, trailing zeros dropped."""
    text = f"{Decimal(value).scaleb(-scale).normalize():f}"
    return text.replace(".", ",")


def _sealed_range(ws: Workspace, first: str, last: str | None) -> list[str]:
    periods = period_range(first, last)
    sealed = set(ws.sealed_periods())
    missing = [p for p in periods if p not in sealed]
    if missing:
        raise BillingError(f"Период {missing[0]} не закрыт: выписка и справка составляются только по "
                           f"закрытым периодам (закрыты: {', '.join(sorted(sealed)) or 'ни одного'}).")
    return periods


def extract_frame(account_id: str, tables: dict[str, pl.DataFrame], services: pl.DataFrame,
                  periods: list[str]) -> pl.DataFrame:
    """The statement's rows: period, supplier_id (``""`` for an undistributed advance), entry
    (:data:`ENTRY_ORDER`), service_id, detail, day, volume_micro, unit, price_kop, agent,
    amount_kop (signed: paid negative). ``tables``: :func:`pipeline.reports.read_sealed`."""
    units = dict(services.select("service_id", "unit").iter_rows())
    names = dict(services.select("service_id", "name").iter_rows())
    mine = {n: f.filter(pl.col("account_id") == account_id) for n, f in tables.items()}
    rows: list[dict[str, Any]] = []

    def add(period: str, supplier: str | None, entry: str, amount: int, **extra: Any) -> None:
        rows.append({"period": period, "supplier_id": supplier or ADVANCE, "entry": entry,
                     "amount_kop": amount, **extra})

    for p in periods:
        bal = mine["balances"].filter(pl.col("period") == p)
        for b in bal.sort("supplier_id", nulls_last=True).iter_rows(named=True):
            s = b["supplier_id"]
            same = pl.col("supplier_id").is_null() if s is None else pl.col("supplier_id") == s
            add(p, s, "opening", b["opening_kop"])
            charges = mine["charges"].filter((pl.col("period") == p) & same)
            for c in charges.sort("service_id").iter_rows(named=True):
                add(p, s, "charge", c["amount_kop"], service_id=c["service_id"],
                    detail=names.get(c["service_id"], c["service_id"]), volume_micro=c["volume_micro"],
                    unit=units.get(c["service_id"]), price_kop=c["price_kop"], method=c["method"])
            recalcs = mine["recalculations"].filter((pl.col("period") == p) & same
                                                    & (pl.col("amount_kop") != 0))
            for r in recalcs.sort("origin_period", "service_id").iter_rows(named=True):
                service = names.get(r["service_id"], r["service_id"])
                add(p, s, "recalculation", r["amount_kop"], service_id=r["service_id"],
                    detail=f"за {period_text(r['origin_period'])}, {service}: {r['reason']}")
            penalty = int(mine["penalties"].filter((pl.col("period") == p) & same)["amount_kop"].sum())
            if penalty:
                add(p, s, "penalty", penalty, detail="пени (ЖК РФ ст.155 ч.14, 14.1)")
            paid = mine["allocations"].filter(
                (pl.col("period") == p) & same & pl.col("kind").is_in(PAID_KINDS)
            ).group_by("paid_on", "agent", "payment_id", "kind").agg(pl.col("amount_kop").sum()).filter(
                pl.col("amount_kop") != 0).sort("paid_on", "agent", "payment_id")
            for a in paid.iter_rows(named=True):
                add(p, s, "paid", -a["amount_kop"], day=a["paid_on"], agent=a["agent"],
                    detail=PAID_TITLES.get(a["kind"], a["kind"]))
            add(p, s, "closing", b["closing_kop"])
    schema = {"period": pl.String, "supplier_id": pl.String, "entry": pl.String, "service_id": pl.String,
              "detail": pl.String, "day": pl.Date, "volume_micro": pl.Int64, "unit": pl.String,
              "price_kop": pl.Int64, "method": pl.String, "agent": pl.String, "amount_kop": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def _mismatch(what: str, expected: int, computed: int) -> BillingError:
    return BillingError(f"Выписка не сходится: {what}: ожидалось {rubles_text(expected)}, получено "
                        f"{rubles_text(computed)}, разница {rubles_text(computed - expected)}.")


def _supplier_title(supplier: str, names: dict[str, str]) -> str:
    return "аванс, не распределённый по поставщикам" if supplier == ADVANCE else names.get(supplier, supplier)


def check_extract(frame: pl.DataFrame, balances: pl.DataFrame, card: pl.DataFrame,
                  names: dict[str, str] | None = None) -> None:
    """Refuse a statement that does not add up (see the module docstring), naming the month
    and the supplier, expected, computed and the difference."""
    names = names or {}
    sums = frame.group_by("period", "supplier_id", "entry").agg(pl.col("amount_kop").sum())
    got = {(r["period"], r["supplier_id"], r["entry"]): r["amount_kop"] for r in sums.iter_rows(named=True)}
    column = {"charge": "charged_kop", "recalculation": "recalculated_kop", "penalty": "penalty_kop"}
    last_closing: dict[str, int] = {}
    for b in balances.sort("period").iter_rows(named=True):
        p, s = b["period"], b["supplier_id"] or ADVANCE
        where = f"{period_text(p)}, {_supplier_title(s, names)}"
        for entry, col in column.items():
            if got.get((p, s, entry), 0) != b[col]:
                raise _mismatch(f"{where}, {entry}", b[col], got.get((p, s, entry), 0))
        if -got.get((p, s, "paid"), 0) != b["paid_kop"]:
            raise _mismatch(f"{where}, оплачено", b["paid_kop"], -got.get((p, s, "paid"), 0))
        opening, closing = got.get((p, s, "opening"), 0), got.get((p, s, "closing"), 0)
        moved = sum(got.get((p, s, e), 0) for e in ("charge", "recalculation", "penalty", "paid"))
        if opening + moved != closing:
            raise _mismatch(f"{where}: на начало + начислено + перерасчёт + пени − оплачено", closing,
                            opening + moved)
        if s in last_closing and last_closing[s] != opening:
            raise _mismatch(f"{where}: сальдо на начало не равно сальдо на конец прошлого месяца",
                            last_closing[s], opening)
        last_closing[s] = closing
    # The range as a whole, per supplier: its first opening + every turnover = its last closing.
    for (s,), rows in frame.group_by(["supplier_id"], maintain_order=True):
        first, last = str(rows["period"].min()), str(rows["period"].max())

        def amount(cond: pl.Expr, rows: pl.DataFrame = rows) -> int:
            return int(rows.filter(cond)["amount_kop"].sum())

        opening = amount((pl.col("period") == first) & (pl.col("entry") == "opening"))
        closing = amount((pl.col("period") == last) & (pl.col("entry") == "closing"))
        moved = amount(~pl.col("entry").is_in(["opening", "closing"]))
        if opening + moved != closing:
            raise _mismatch(f"{_supplier_title(str(s), names)} за {first}–{last}: на начало + обороты",
                            closing, opening + moved)
    for (period,), rows in card.group_by(["period"], maintain_order=True):
        for entry, card_entry in (("opening", "Сальдо на начало"), ("closing", "Сальдо на конец")):
            expected = int(rows.filter(pl.col("entry") == card_entry)["amount_kop"].sum())
            same = (pl.col("period") == period) & (pl.col("entry") == entry)
            computed = int(frame.filter(same)["amount_kop"].sum())
            if expected != computed:
                raise _mismatch(f"{period_text(str(period))}, {card_entry.lower()} по карточке счёта",
                                expected, computed)


@dataclass(frozen=True)
class _Document:
    """What the extract's and the certificate's header shares: issuer, payer, address."""

    issuer: dict[str, Any]
    payer: str
    address: str | None
    premise_id: str


def _document(ws: Workspace, regs: dict[str, pl.DataFrame], account_id: str) -> _Document:
    accounts = regs["accounts"].filter(pl.col("account_id") == account_id)
    if not accounts.height:
        raise BillingError(f"Лицевого счёта {account_id} нет в реестре accounts.")
    acc = accounts.row(0, named=True)
    return _Document(issuer_org(ws, regs, str(acc["premise_id"])), str(acc["payer_name"]),
                     premise_address(regs, str(acc["premise_id"])), str(acc["premise_id"]))


def issuer_org(ws: Workspace, regs: dict[str, pl.DataFrame], premise_id: str) -> dict[str, Any]:
    """The organization issuing the documents: ``[receipts] agent``, else the ``billing_centre``,
    else the manager of the premises' building."""
    orgs = regs["organizations"]
    agent = ws.typed_settings().receipts.agent
    rows = orgs.filter(pl.col("org_id") == agent) if agent else orgs.clear()
    if not rows.height:
        rows = orgs.filter(pl.col("role") == "billing_centre").sort("org_id")
    if not rows.height:
        building = regs["premises"].filter(pl.col("premise_id") == premise_id)["building_id"]
        manager = regs["buildings"].filter(pl.col("building_id").is_in(building.implode()))["manager_id"]
        rows = orgs.filter(pl.col("org_id").is_in(manager.implode()))
    if not rows.height:
        raise BillingError("Некому выдать документ: в settings.toml не указан [receipts] agent, в реестре "
                           "организаций нет расчётного центра (role = billing_centre) и управляющей дома.")
    org = rows.row(0, named=True)
    ids = ", ".join(f"{title} {org[k]}" for k, title in (("inn", "ИНН"), ("kpp", "КПП"), ("ogrn", "ОГРН"))
                    if org.get(k))
    return {"name": org["name"], "address": org.get("address") or "", "ids": ids,
            "phone": org.get("phone") or ""}


def _names(regs: dict[str, pl.DataFrame]) -> dict[str, str]:
    return dict(regs["organizations"].select("org_id", "name").iter_rows())


def _extract_view(account_id: str, doc: _Document, frame: pl.DataFrame, names: dict[str, str],
                  periods: list[str], today: date) -> dict[str, Any]:
    months = []
    for p in periods:
        rows = frame.filter(pl.col("period") == p)
        suppliers = []
        for s in rows["supplier_id"].unique(maintain_order=True).to_list():
            part = rows.filter(pl.col("supplier_id") == s)

            def one(entry: str, part: pl.DataFrame = part) -> int:
                return int(part.filter(pl.col("entry") == entry)["amount_kop"].sum())

            suppliers.append({
                "name": _supplier_title(s, names),
                "opening": format_rub(one("opening")), "closing": format_rub(one("closing")),
                "charged": format_rub(one("charge")), "recalculated": format_rub(one("recalculation")),
                "penalty": format_rub(one("penalty")), "paid": format_rub(-one("paid")),
                "lines": [{
                    "entry": r["entry"], "detail": r["detail"] or "",
                    "day": f"{r['day']:%d.%m.%Y}" if r["day"] else "",
                    "volume": _decimal(r["volume_micro"], 6) if r["volume_micro"] is not None else "",
                    "unit": r["unit"] or "",
                    "tariff": format_rub(r["price_kop"]) if r["price_kop"] is not None else "",
                    "agent": r["agent"] or "", "amount": format_rub(r["amount_kop"]),
                } for r in part.filter(~pl.col("entry").is_in(["opening", "closing"])).iter_rows(named=True)],
            })
        months.append({"title": period_text(p).capitalize(), "suppliers": suppliers})
    totals = []
    first, last = periods[0], periods[-1]
    for s in frame["supplier_id"].unique(maintain_order=True).to_list():
        part = frame.filter(pl.col("supplier_id") == s)

        def total(entry: str, part: pl.DataFrame = part) -> int:
            if entry == "opening":
                part = part.filter(pl.col("period") == part["period"].min())
            elif entry == "closing":
                part = part.filter(pl.col("period") == part["period"].max())
            return int(part.filter(pl.col("entry") == entry)["amount_kop"].sum())

        totals.append({"name": _supplier_title(s, names), **{
            e: format_rub(-total(e) if e == "paid" else total(e))
            for e in ("opening", "charge", "recalculation", "penalty", "paid", "closing")}})

    def whole(entry: str, period: str | None = None) -> int:
        part = frame if period is None else frame.filter(pl.col("period") == period)
        return int(part.filter(pl.col("entry") == entry)["amount_kop"].sum())

    return {
        "account_id": account_id, "payer": doc.payer, "address": doc.address or "", "issuer": doc.issuer,
        "from": f"{Period.parse(first).first:%d.%m.%Y}", "to": f"{Period.parse(last).last:%d.%m.%Y}",
        "range": period_text(first) if first == last else f"{period_text(first)} — {period_text(last)}",
        "today": f"{today:%d.%m.%Y}", "months": months, "totals": totals,
        "total": {"opening": format_rub(whole("opening", first)), "charge": format_rub(whole("charge")),
                  "recalculation": format_rub(whole("recalculation")),
                  "penalty": format_rub(whole("penalty")), "paid": format_rub(-whole("paid")),
                  "closing": format_rub(whole("closing", last))},
    }


def _pdf(html: str) -> bytes:
    pdf = pdf_engine(CSS_PATH).document(html).write_pdf()
    assert pdf is not None
    return bytes(pdf)


def write_extract(ws: Workspace, account_id: str, first: str, last: str | None = None,
                  out_dir: Path | None = None, today: date | None = None) -> Path:
    """Write ``<account>-extract-<first>-<last>.pdf`` (the выписка over the sealed ``first``…``last``)."""
    periods = _sealed_range(ws, first, last)
    tables = read_sealed(ws, periods)
    regs = sealed_registers(ws, periods[-1])
    from rules import read_rule_table

    services = read_rule_table(ws.rules, "services")
    frame = extract_frame(account_id, tables, services, periods)
    if not frame.height:
        raise BillingError(f"У лицевого счёта {account_id} нет сальдо за {periods[0]}–{periods[-1]}.")
    service_names = dict(services.select("service_id", "name").iter_rows())
    card = account_card(account_id, tables, regs, service_names, periods)
    check_card(card)
    balances = tables["balances"].filter(pl.col("account_id") == account_id)
    names = _names(regs)
    check_extract(frame, balances, card, names)
    doc = _document(ws, regs, account_id)
    view = _extract_view(account_id, doc, frame, names, periods, today or date.today())
    return _write(ws, out_dir, f"{account_id}-extract-{periods[0]}-{periods[-1]}.pdf", "extract.html.j2",
                  view)


@dataclass(frozen=True)
class NoDebt:
    """The balances a certificate of no debt rests on (kopecks per supplier, ``""`` = advance)."""

    account_id: str
    period: str
    closing: dict[str, int]

    @property
    def debts(self) -> dict[str, int]:
        return {s: k for s, k in self.closing.items() if k > 0}

    @property
    def total_kop(self) -> int:
        return sum(self.closing.values())


def nodebt_balances(ws: Workspace, account_id: str, period: str | None = None) -> NoDebt:
    """The account's closing balances per supplier at the end of the sealed ``period``."""
    sealed = ws.sealed_periods()
    if not sealed:
        raise BillingError("Нет закрытых периодов: справка выдаётся по закрытому периоду.")
    period = str(Period.parse(period)) if period else sealed[-1]
    _sealed_range(ws, period, None)
    tables = read_sealed(ws, [period])
    bal = tables["balances"].filter(pl.col("account_id") == account_id)
    if not bal.height:
        raise BillingError(f"У лицевого счёта {account_id} нет сальдо за {period}: "
                           "справку выдать не по чему.")
    closing: dict[str, int] = {}
    for r in bal.iter_rows(named=True):
        key = r["supplier_id"] or ADVANCE
        closing[key] = closing.get(key, 0) + int(r["closing_kop"])
    return NoDebt(account_id, period, closing)


def write_nodebt(ws: Workspace, account_id: str, period: str | None = None, out_dir: Path | None = None,
                 today: date | None = None) -> Path:
    """Write ``<account>-nodebt-<period>.pdf``; refuse a debtor naming each supplier's debt."""
    state = nodebt_balances(ws, account_id, period)
    regs = sealed_registers(ws, state.period)
    names = _names(regs)
    end = Period.parse(state.period).last
    if state.debts:
        owed = "; ".join(f"{_supplier_title(s, names)} ({s}) — {rubles_text(k)}"
                         for s, k in sorted(state.debts.items()))
        raise BillingError(f"Справка об отсутствии задолженности не выдаётся: у лицевого счёта {account_id} "
                           f"на {end:%d.%m.%Y} задолженность: {owed}.")
    doc = _document(ws, regs, account_id)
    first = ws.sealed_periods()[0]
    view = {
        "account_id": account_id, "payer": doc.payer, "address": doc.address or "", "issuer": doc.issuer,
        "end": f"{end:%d.%m.%Y}", "today": f"{(today or date.today()):%d.%m.%Y}",
        "checked": period_text(first) if first == state.period
        else f"{period_text(first)} — {period_text(state.period)}",
        "advance": format_rub(-state.total_kop) if state.total_kop < 0 else "",
        "suppliers": [{"name": _supplier_title(s, names), "closing": format_rub(k)}
                      for s, k in sorted(state.closing.items())],
    }
    return _write(ws, out_dir, f"{account_id}-nodebt-{state.period}.pdf", "nodebt.html.j2", view)


def _write(ws: Workspace, out_dir: Path | None, name: str, template: str, view: dict[str, Any]) -> Path:
    """``template`` rendered with ``view`` into the PDF ``name`` (default folder HOME/statements)."""
    target = out_dir or (ws.home / "statements")
    target.mkdir(parents=True, exist_ok=True)
    path = target / name
    atomic_write_bytes(path, _pdf(_env().get_template(template).render(v=view)))
    return path


__all__ = ["ADVANCE", "NoDebt", "check_extract", "extract_frame", "issuer_org", "nodebt_balances",
           "write_extract", "write_nodebt"]
