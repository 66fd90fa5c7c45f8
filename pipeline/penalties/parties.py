"""The parties of a court document: the creditor (взыскатель) and the debtor (должник).

ГПК РФ ст.124 ч.2 asks of an application for a court order: the creditor's name, address
(and for an organization its identifiers ИНН, ОГРН), and the debtor's full name, place of
residence, date and place of birth and one of its identifiers (СНИЛС, ИНН, passport, …).
For debts of housing and utility payments the creditor may state that those details of the
debtor are not known to it (ГПК 124 ч.2 п.3, абз. 2 — UNVERIFIED wording, docs/statements.md):
:meth:`Party.lines` prints «сведения не известны» for each such missing detail.

Both are read from a register snapshot (``pipeline.ingest.registers.load_store``): the
creditor from ``organizations`` (name, ИНН, КПП, the optional ``ogrn``, address, bank
details), the debtor from ``accounts`` (``payer_name``, ``share``, the optional
``payer_birth_date``, ``payer_birth_place``, ``payer_document``, an organization's
``payer_inn``/``payer_kpp``) with the premises' address from ``buildings``/``premises``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

import polars as pl

from pipeline.workspace import BillingError

#: What a court document says of a detail the creditor does not know (ГПК 124 ч.2 п.3).
UNKNOWN = "сведения не известны"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def share_text(share: Decimal | str | None) -> str | None:
    """A share of ownership as a court reads it: ``1/2``, ``1/3``; ``None`` for the whole.

    >>> share_text(Decimal("0.5")), share_text(Decimal("0.3333")), share_text(Decimal("1")), share_text(None)
    ('1/2', '1/3', None, None)
    """
    if share is None:
        return None
    value = Fraction(Decimal(str(share)))
    if value >= 1:
        return None
    near = value.limit_denominator(100)
    return f"{near.numerator}/{near.denominator}"


@dataclass(frozen=True)
class Party:
    """A creditor or a debtor as a court document names it.

    Attributes:
        name: the organization's name or the person's full name.
        address: the organization's address; the debtor's address of the premises.
        inn, kpp, ogrn: an organization's identifiers (empty for a person, except an ИНН).
        birth_date, birth_place: a person's date and place of birth (empty: not known).
        document: a person's identifier as staff wrote it («СНИЛС 123-456-789 01»,
            «паспорт 4510 123456»); empty: not known.
        bank: one line of a creditor's bank details (where the court orders to pay).
        person: the party is a citizen (the ГПК 124 details of a person apply).
        share: a debtor's share of ownership (``1/2``) when less than the whole.
    """

    name: str
    address: str | None
    inn: str | None
    kpp: str | None
    ogrn: str | None
    birth_date: date | None
    birth_place: str | None
    document: str | None
    bank: str | None
    person: bool = False
    share: str | None = None

    def lines(self) -> list[str]:
        """The Russian lines to print, «сведения не известны» where ГПК 124 allows it."""
        out = [self.name]
        if self.person:
            out.append(f"Адрес (место жительства): {self.address or UNKNOWN}")
            if self.share:
                out.append(f"Доля в праве собственности: {self.share}")
            born = f"{self.birth_date:%d.%m.%Y}" if self.birth_date else UNKNOWN
            out.append(f"Дата рождения: {born}; место рождения: {self.birth_place or UNKNOWN}")
            ident = self.document or (f"ИНН {self.inn}" if self.inn else None)
            out.append(f"Идентификатор (СНИЛС, ИНН, паспорт): {ident or UNKNOWN}")
            return out
        out.append(f"Адрес: {self.address or UNKNOWN}")
        if self.share:
            out.append(f"Доля в праве собственности: {self.share}")
        ids = [f"ИНН {self.inn}" if self.inn else None, f"КПП {self.kpp}" if self.kpp else None,
               f"ОГРН {self.ogrn}" if self.ogrn else None]
        out.append(", ".join(i for i in ids if i) or f"ИНН, ОГРН: {UNKNOWN}")
        if self.bank:
            out.append(f"Банковские реквизиты: {self.bank}")
        return out


def _row(frame: pl.DataFrame, key: str, value: str, register: str, what: str) -> dict[str, Any]:
    rows = frame.filter(pl.col(key) == value)
    if not rows.height:
        raise BillingError(f"{register}: нет строки {what} «{value}» — реквизиты для суда взять неоткуда.")
    return rows.row(0, named=True)


def _bank(org: dict[str, Any]) -> str | None:
    account, bank = _text(org.get("account")), _text(org.get("bank_name"))
    if not account:
        return None
    parts = [f"р/с {account}" + (f" в {bank}" if bank else "")]
    if _text(org.get("bik")):
        parts.append(f"БИК {org['bik']}")
    if _text(org.get("corr_account")):
        parts.append(f"к/с {org['corr_account']}")
    return ", ".join(parts)


def creditor(regs: dict[str, pl.DataFrame], supplier_id: str) -> Party:
    """The supplier ``supplier_id`` as the claimant, from ``organizations``."""
    org = _row(regs["organizations"], "org_id", supplier_id, "organizations", "организации")
    return Party(
        name=str(org["name"]), address=_text(org.get("address")), inn=_text(org.get("inn")),
        kpp=_text(org.get("kpp")), ogrn=_text(org.get("ogrn")), birth_date=None, birth_place=None,
        document=None, bank=_bank(org))


def premise_address(regs: dict[str, pl.DataFrame], premise_id: str) -> str | None:
    """«г. Энск, ул. Ленина, д. 1, кв. 5» (``пом.`` for a non-residential premise)."""
    premises = regs["premises"].filter(pl.col("premise_id") == premise_id)
    if not premises.height:
        return None
    premise = premises.row(0, named=True)
    buildings = regs["buildings"].filter(pl.col("building_id") == premise["building_id"])
    house = _text(buildings["address"][0]) if buildings.height else None
    number = _text(premise.get("number"))
    flat = (f"{'кв.' if premise.get('kind') != 'nonresidential' else 'пом.'} {number}"
            if number else None)
    return ", ".join(p for p in (house, flat) if p) or None


def debtor(regs: dict[str, pl.DataFrame], account_id: str) -> Party:
    """The payer of ``account_id`` as the debtor, from ``accounts`` and the premises' address."""
    acc = _row(regs["accounts"], "account_id", account_id, "accounts", "лицевого счёта")
    person = (acc.get("payer_kind") or "person") == "person"
    born = acc.get("payer_birth_date")
    return Party(
        name=str(acc["payer_name"]), address=premise_address(regs, str(acc["premise_id"])),
        inn=_text(acc.get("payer_inn")), kpp=None if person else _text(acc.get("payer_kpp")), ogrn=None,
        birth_date=born if isinstance(born, date) else None,
        birth_place=_text(acc.get("payer_birth_place")), document=_text(acc.get("payer_document")),
        bank=None, person=person, share=share_text(acc.get("share")))


__all__ = ["UNKNOWN", "Party", "creditor", "debtor", "premise_address", "share_text"]
