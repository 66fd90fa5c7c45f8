"""``billing export banks --period P``: the charge registers of a sealed period for banks and agents.

One register per agent of ``settings.toml`` ``[[banks.agents]]`` (:class:`pipeline.settings.BankAgent`),
in the layout the agent takes:

* ``sber`` — a text register in the genre of the Sberbank charge registers (exchange-formats.md
  §2.1): cp1251, CRLF, one line per account, fields joined by ``separator`` in the order of
  ``columns``, a footer ``=<lines><sep><sum>``. The exact column set of a bank is fixed by its
  contract (UNVERIFIED for any real contract), so the order is a setting; the default line is

  ``ЛС;ЕЛС;ФИО;адрес;ММГГГГ;сумма;[номер счётчика;ресурс;зона;показание]*``

  with one block of four fields per meter of the premise: its serial (the meter id when the
  register has none), a resource label (ХВС, ГВС, ЭЛ…), zone ``1`` and the meter's last
  accepted reading as the sealed period counted it (``meter_volumes``: the current reading,
  else the previous one when the month was charged by the average or the norm). The blocks are
  the layout of the bank's payment register (§2.2), which the bank fills with the new readings.
  A ``services`` block (3 fields per service and supplier with a non-zero balance: id, name,
  that balance — negative for an advance) and ``[!]`` markers may be added by ``columns``.
* ``csv`` — a plain CSV for other agents: UTF-8, a header, ``,``, RFC 4180 quoting; columns
  ``account_id,els,payer_name,address,period,amount`` named as in the agent payment CSV the
  import reads (an agent returns the same rows with ``payment_id``, ``paid_on``, ``agent``
  added). Its control figures are in a companion file ``<name>_control.csv``
  (``period,rows,amount``): a totals row inside the CSV would come back as a payment.

What an account is asked to pay is what its receipt shows as «Итого к оплате»: the sum of its
closing balances over the suppliers (``balances``), or over the services the agent collects for
(``service_balances``, when ``services`` is set), **never negative**: an account with an advance
is listed with 0 (it may still pay and send readings; the advance stays on its balance). Where the
region gives benefits as a discount (``[receipts] benefits = "discount"``) the welfare amounts the
receipt deducts come off it, to the kopeck (:mod:`pipeline.export.amounts`: the payees' discounts;
with ``services`` set, their parts on the lines of those services; a ``services`` block shows each
balance less its line's part). Organization payers (invoices, not receipts) are left out unless
``organizations = true``.

Text fields (payer, address; the meter serial's separators too) are made safe for one line: CR,
LF and TAB become spaces, the separator becomes ``,``, the marker ``[!]`` becomes ``(!)``, runs
of spaces become one, and the field is cut to ``max_text`` characters.
A character Windows-1251 cannot hold becomes ``?``. An empty field stays empty (``;;``): the
line keeps its number of fields.

Everything is read from the sealed tables and the registers snapshot of the period's manifest
(never today's registers); the service names of a ``services`` block come from today's rule table
(as on a duplicate receipt). The builders are pure and vectorised over frames
(:func:`account_rows`, :func:`meter_rows`, :func:`sber_register`, :func:`csv_register`); no clock.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import polars as pl

from pipeline.dates import Period
from pipeline.export import ExportFile, sealed_manifest
from pipeline.export.amounts import Discounts, account_to_pay, load_discounts
from pipeline.ingest.registers import load_store
from pipeline.sealed import read_internal
from pipeline.settings import BankAgent, Banks, load_section
from pipeline.workspace import BillingError, Workspace

__all__ = ["DEFAULT_NAMES", "RESOURCE_LABELS", "BankFrames", "account_rows", "build_files", "csv_register",
           "file_name", "listed_agents", "load_frames", "meter_rows", "register_for", "sber_register"]

#: The file-name rule of a layout when the agent names none. ``sber``: ИНН_РС_НОМЕР_ММГГ.txt
#: (the СберБизнес help page; whether ММГГ is the charge month or the month of payment is
#: UNVERIFIED — ``{pay_mm}{pay_yy}`` gives the latter).
DEFAULT_NAMES = {"sber": "{inn}_{account}_{seq}_{mm}{yy}.txt", "csv": "{code}_{period}.csv"}
#: Resource labels of the meter blocks by service (the labels of the Sber payment registers;
#: any other service is labelled by its id in upper case). UNVERIFIED per bank.
RESOURCE_LABELS = {"cold_water": "ХВС", "hot_water": "ГВС", "electricity": "ЭЛ", "gas": "ГАЗ",
                   "heating": "ТЕПЛО"}
MARKER = "[!]"


@dataclass(frozen=True)
class BankFrames:
    """What the registers are built from (engine integers, kopecks and micro-units)."""

    #: account_id, payer_kind, payer_name, address, els, premise_id — one row per account.
    accounts: pl.DataFrame
    #: balances: account_id, supplier_id, closing_kop.
    balances: pl.DataFrame
    #: service_balances: account_id, service_id, supplier_id, closing_kop.
    service_balances: pl.DataFrame
    #: premise_id, meter_id, service_id, serial, value_micro (last accepted reading, may be null).
    meters: pl.DataFrame
    #: service_id, name (for a ``services`` block).
    services: pl.DataFrame
    #: org_id, inn, account (for the file name).
    organizations: pl.DataFrame
    #: The welfare amounts the receipts deduct (``[receipts] benefits = "discount"``); none by default.
    discounts: Discounts = field(default_factory=Discounts.none)


def build_files(ws: Workspace, period: str) -> list[ExportFile]:
    """The registers of every agent in ``[[banks.agents]]`` for the sealed ``period``."""
    period = str(Period.parse(period))
    manifest = sealed_manifest(ws, period)
    agents = listed_agents(ws)
    frames = load_frames(ws, period, manifest["store_version"])
    return [f for agent in agents for f in register_for(agent, period, frames)]


def listed_agents(ws: Workspace) -> tuple[BankAgent, ...]:
    """``[[banks.agents]]`` of settings.toml, checked; a Russian refusal when none is listed."""
    agents = load_section(ws.settings_path, Banks).agents
    if not agents:
        raise BillingError(
            "settings.toml: не указан ни один банк или агент для реестров начислений — добавьте раздел "
            "[[banks.agents]] (code = \"sber\", layout = \"sber\", org_id = \"<org_id получателя>\"); "
            "см. docs/exports.md, «Банки и агенты»")
    return agents


def load_frames(ws: Workspace, period: str, store_version: str) -> BankFrames:
    """The sealed tables and the snapshot registers the registers need."""
    from rules import read_rule_table

    folder = ws.period_dir(period)
    regs = load_store(ws, store_version, names=["accounts", "premises", "buildings", "meters",
                                                "organizations", "gis_ids"])
    services = read_rule_table(ws.rules, "services").select("service_id", "name")
    return BankFrames(
        accounts=account_rows(regs, Period.parse(period)),
        balances=read_internal(folder, "balances", ["account_id", "supplier_id", "closing"]),
        service_balances=read_internal(folder, "service_balances",
                                       ["account_id", "service_id", "supplier_id", "closing"]),
        meters=meter_rows(read_internal(folder, "meter_volumes",
                                        ["meter_id", "service_id", "premise_id", "curr_read_on",
                                         "prev_value", "curr_value"]), regs["meters"]),
        services=services,
        organizations=regs["organizations"].select("org_id", "inn", "account"),
        discounts=load_discounts(ws, period),
    )


def account_rows(regs: dict[str, pl.DataFrame], period: Period) -> pl.DataFrame:
    """account_id, payer_kind, payer_name, address (as on the receipt), els, premise_id."""
    place = pl.when(pl.col("kind") == "residential").then(pl.lit("кв.")).otherwise(pl.lit("пом."))
    gis = regs.get("gis_ids")
    if gis is not None and gis.height:
        els = (gis.filter(pl.col("service_id").is_null() & (pl.col("from") <= pl.lit(period.last)))
               .sort("account_id", "from").group_by("account_id").agg(pl.col("els").last()))
    else:
        els = pl.DataFrame(schema={"account_id": pl.String, "els": pl.String})
    return (
        regs["accounts"].select("account_id", "premise_id", "payer_kind", "payer_name")
        .join(regs["premises"].select("premise_id", "building_id", "number", "kind"), on="premise_id")
        .join(regs["buildings"].select("building_id", pl.col("address").alias("b_address")),
              on="building_id")
        .join(els, on="account_id", how="left")
        .select("account_id", "payer_kind", "payer_name",
                pl.concat_str([pl.col("b_address"), pl.lit(", "), place, pl.lit(" "), pl.col("number")])
                .alias("address"), "els", "premise_id")
    )


def meter_rows(meter_volumes: pl.DataFrame, meters: pl.DataFrame) -> pl.DataFrame:
    """Per premise meter of the period: serial and its last accepted reading (micro-units).

    ``meter_volumes`` of the sealed period (internal); the reading is the current one, else the
    previous one (a month charged without a reading); one row per meter (its last row), in the
    sealed table's order.
    """
    last = (meter_volumes.lazy().filter(pl.col("premise_id").is_not_null())
            .unique("meter_id", keep="last", maintain_order=True))
    return last.join(meters.lazy().select("meter_id", "serial"), on="meter_id", how="left").select(
        "premise_id", "meter_id", "service_id",
        pl.coalesce(pl.col("serial"), pl.col("meter_id")).alias("serial"),
        pl.coalesce(pl.col("curr_value_micro"), pl.col("prev_value_micro")).alias("value_micro"),
    ).collect()


# --------------------------------------------------------------------------- one agent


def register_for(agent: BankAgent, period: str, frames: BankFrames) -> list[ExportFile]:
    """The file(s) of one agent: the register (and, for ``csv``, its control file)."""
    lines = _lines(agent, frames)
    name = f"{agent.code}/{file_name(agent, period, frames.organizations)}"
    recipient = agent.name or agent.code
    if agent.layout == "csv":
        data, control = csv_register(lines, period)
        rows, total = lines.height, int(lines["amount_kop"].sum())
        stem = name.rsplit(".", 1)[0]
        return [ExportFile(name, data, rows=rows, total_kop=total, recipient=recipient,
                           extra={"layout": "csv"}),
                ExportFile(f"{stem}_control.csv", control, rows=0, total_kop=0, recipient=recipient,
                           extra={"control_of": name, "rows": rows, "total_kop": total})]
    data = sber_register(agent, period, lines, frames.meters, _less_discounts(frames), frames.services)
    return [ExportFile(name, data, rows=lines.height, total_kop=int(lines["amount_kop"].sum()),
                       recipient=recipient, extra={"layout": "sber"})]


def _lines(agent: BankAgent, frames: BankFrames) -> pl.DataFrame:
    """One row per listed account: the account's fields and ``amount_kop`` (≥ 0), by account."""
    if agent.services:
        chosen = pl.col("service_id").is_in(list(agent.services))
        owed = frames.service_balances.filter(chosen)
        off = frames.discounts.lines.filter(chosen)
    else:
        owed, off = frames.balances, frames.discounts.payees
    # The receipt's «к оплате»: Σ closing less the deducted benefits, never negative.
    totals = account_to_pay(owed, off)
    accounts = frames.accounts
    if not agent.organizations:
        accounts = accounts.filter(pl.col("payer_kind") != "organization")
    return (totals.join(accounts, on="account_id", how="inner")
            .rename({"to_pay_kop": "amount_kop"}).drop("discount_kop")
            .sort("account_id"))


def _less_discounts(frames: BankFrames) -> pl.DataFrame:
    """``service_balances`` with each line's part of the deducted benefits taken off (a
    ``services`` block shows what the receipt asks per service), in the sealed order."""
    off = frames.discounts.lines
    if not off.height:
        return frames.service_balances
    keys = ["account_id", "service_id", "supplier_id"]
    return frames.service_balances.join(off, on=keys, how="left", nulls_equal=True,
                                        maintain_order="left").with_columns(
        (pl.col("closing_kop") - pl.col("discount_kop").fill_null(0)).alias("closing_kop")
    ).drop("discount_kop")


def file_name(agent: BankAgent, period: str, organizations: pl.DataFrame) -> str:
    """The agent's file name for ``period`` by its rule (Russian refusal when it cannot be made)."""
    p = Period.parse(period)
    pay = p.shift(1)
    rule = agent.file_name or DEFAULT_NAMES[agent.layout]
    fields = {f for _, f, _, _ in string.Formatter().parse(rule) if f}
    values = {"seq": f"{agent.sequence:03d}", "mm": f"{p.month:02d}", "yy": f"{p.year % 100:02d}",
              "yyyy": f"{p.year:04d}", "period": str(p), "pay_mm": f"{pay.month:02d}",
              "pay_yy": f"{pay.year % 100:02d}", "pay_yyyy": f"{pay.year:04d}", "code": agent.code,
              "inn": "", "account": ""}
    where = f"settings.toml [[banks.agents]] code = \"{agent.code}\""
    if fields & {"inn", "account"}:
        org = organizations.filter(pl.col("org_id") == agent.org_id).to_dicts() if agent.org_id else []
        if not org:
            raise BillingError(
                f"{where}: имя файла «{rule}» содержит ИНН и расчётный счёт получателя, но "
                + ("не указан org_id" if not agent.org_id else
                   f"организации «{agent.org_id}» нет в реестре организаций периода")
                + " — укажите org_id организации, по договору которой банк принимает платежи")
        values["inn"], values["account"] = org[0]["inn"] or "", org[0]["account"] or ""
        missing = [label for key, label in (("inn", "ИНН"), ("account", "расчётный счёт"))
                   if key in fields and not values[key]]
        if missing:
            raise BillingError(f"{where}: у организации «{agent.org_id}» не указан "
                               f"{' и '.join(missing)} — он нужен в имени файла «{rule}»")
    name = rule.format(**values)
    if not name or name.startswith(".") or any(ch in name for ch in "/\\"):
        raise BillingError(f"{where}: по правилу «{rule}» получилось недопустимое имя файла «{name}»")
    return name


# --------------------------------------------------------------------------- layouts


def _safe_text(column: str, agent: BankAgent) -> pl.Expr:
    """A text field made safe for one line of the register (see the module docstring)."""
    expr = (pl.col(column).fill_null("")
            .str.replace_all(r"[\r\n\t]", " ")
            .str.replace_all(agent.separator, ",", literal=True)
            .str.replace_all(MARKER, "(!)", literal=True)
            .str.replace_all(r" {2,}", " ")
            .str.strip_chars())
    if agent.max_text:
        expr = expr.str.slice(0, agent.max_text).str.strip_chars_end()
    return expr


def _money(expr: pl.Expr, agent: BankAgent) -> pl.Expr:
    """Kopecks as the agent reads them: integer kopecks, or rubles with its decimal sign."""
    if agent.amounts == "kopecks":
        return expr.cast(pl.String)
    whole = expr.abs()
    sign = pl.when(expr < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.concat_str([sign, (whole // 100).cast(pl.String), pl.lit(agent.decimal),
                          (whole % 100).cast(pl.String).str.zfill(2)])


def _reading(expr: pl.Expr, decimal: str) -> pl.Expr:
    """A reading in micro-units as text without trailing zeros (``107,5``); null → empty."""
    whole = (expr // 1_000_000).cast(pl.String)
    frac = (expr % 1_000_000).cast(pl.String).str.zfill(6).str.strip_chars_end("0")
    return (pl.when(expr.is_null()).then(pl.lit(""))
            .when(frac == "").then(whole)
            .otherwise(pl.concat_str([whole, pl.lit(decimal), frac])))


def _blocks(frame: pl.DataFrame, key: str, parts: list[pl.Expr], sep: str, name: str) -> pl.DataFrame:
    """Per ``key``: the blocks of ``parts`` joined by ``sep`` (column ``name``), in the order of the
    frame's rows (a group keeps its rows' order; the sealed tables are written in a fixed order,
    so the same period gives the same blocks). list.join is several times faster than str.join."""
    return (frame.lazy().select(pl.col(key), pl.concat_str(parts, separator=sep).alias(name))
            .group_by(key).agg(pl.col(name))
            .with_columns(pl.col(name).list.join(sep)).collect())


def sber_register(agent: BankAgent, period: str, lines: pl.DataFrame, meters: pl.DataFrame,
                  service_balances: pl.DataFrame, services: pl.DataFrame) -> bytes:
    """The ``sber``-layout bytes of ``lines`` (:func:`_lines`), with their meter/service blocks.

    Pure: the same frames give the same bytes. The footer is ``=<lines><sep><sum>`` in the
    unit of the lines' amounts.
    """
    sep = agent.separator
    p = Period.parse(period)
    frame = lines.with_columns(
        _safe_text("payer_name", agent).alias("payer"),
        _safe_text("address", agent).alias("addr"),
        pl.col("els").fill_null("").alias("els"),
    )
    if "meters" in agent.columns:
        mine = meters if not agent.services else meters.filter(
            pl.col("service_id").is_in(list(agent.services)))
        label = pl.col("service_id").replace_strict(
            RESOURCE_LABELS, default=pl.col("service_id").str.to_uppercase(), return_dtype=pl.String)
        blocks = _blocks(mine.with_columns(pl.col("serial").str.replace_all(sep, ",", literal=True)),
                         "premise_id", [pl.col("serial"), label, pl.lit("1"),
                                        _reading(pl.col("value_micro"), agent.decimal)], sep, "meters")
        frame = frame.join(blocks, on="premise_id", how="left")
    if "services" in agent.columns:
        rows = service_balances.filter(pl.col("closing_kop") != 0)
        if agent.services:
            rows = rows.filter(pl.col("service_id").is_in(list(agent.services)))
        # One block per service and supplier, in the sealed table's order (account, service, supplier).
        rows = rows.join(services, on="service_id", how="left", maintain_order="left")
        blocks = _blocks(rows.with_columns(_safe_text("name", agent).alias("name")), "account_id",
                         [pl.col("service_id"), pl.col("name"), _money(pl.col("closing_kop"), agent)],
                         sep, "services")
        frame = frame.join(blocks, on="account_id", how="left")
    exprs = {
        "account": pl.col("account_id"), "els": pl.col("els"), "payer": pl.col("payer"),
        "address": pl.col("addr"), "period": pl.lit(f"{p.month:02d}{p.year:04d}"),
        "amount": _money(pl.col("amount_kop"), agent), "marker": pl.lit(MARKER), "empty": pl.lit(""),
    }
    parts: list[pl.Expr] = []
    for column in agent.columns:
        if column in ("meters", "services"):
            # An empty block adds no fields (and no separator).
            block = pl.col(column)
            parts.append(pl.when(block.is_null() | (block == "")).then(pl.lit(None, pl.String))
                         .otherwise(block))
        else:
            parts.append(exprs[column])
    body = frame.lazy().sort("account_id").select(
        pl.concat_str(parts, separator=sep, ignore_nulls=True).alias("line")).collect()
    total = int(lines["amount_kop"].sum()) if lines.height else 0
    footer = f"={lines.height}{sep}{_money_text(total, agent)}\r\n"
    # One text column written as is (no quoting: the fields are already safe), CRLF.
    text = body.write_csv(include_header=False, quote_style="never", line_terminator="\r\n") if body.height \
        else ""
    return (text + footer).encode("cp1251", errors="replace")


def _money_text(kopecks: int, agent: BankAgent) -> str:
    return str(pl.select(_money(pl.lit(kopecks, pl.Int64), agent)).item())


def csv_register(lines: pl.DataFrame, period: str) -> tuple[bytes, bytes]:
    """The ``csv``-layout bytes of ``lines`` and of its control file (``period,rows,amount``)."""
    amount = (pl.col("amount_kop") // 100).cast(pl.String) + pl.lit(".") + (
        pl.col("amount_kop") % 100).cast(pl.String).str.zfill(2)
    clean = [pl.col(c).str.replace_all(r"[\r\n]+", " ").alias(c) for c in ("payer_name", "address")]
    frame = lines.sort("account_id").select(
        "account_id", "els", *clean, pl.lit(period).alias("period"),
        amount.alias("amount"))
    data = frame.write_csv(line_terminator="\n").encode("utf-8")
    total = int(lines["amount_kop"].sum()) if lines.height else 0
    control = f"period,rows,amount\n{period},{lines.height},{total // 100}.{total % 100:02d}\n"
    return data, control.encode("utf-8")
