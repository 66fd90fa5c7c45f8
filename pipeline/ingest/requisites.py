"""Payee requisites checked before they can reach a receipt or its payment QR code.

A wrong digit in a payee's ИНН, БИК or account sends a resident's money nowhere (or to
someone else), so the organizations register refuses such a row with the reason:

* ИНН: 10 digits (organization) or 12 (entrepreneur) with their check digits — by
  python-stdnum (``stdnum.ru.inn``);
* КПП: 9 characters, ``NNNN PP NNN`` where the reason code ``PP`` is digits or Latin
  capitals (there is no check digit);
* БИК: 9 digits beginning with ``0`` (Russian BICs are ``04…``; treasury ones ``00…``/``01…``);
* settlement and correspondent account: 20 digits whose control key (the 9th digit)
  agrees with the БИК — the Bank of Russia's algorithm (ЦБ РФ 08.09.1997 № 515):
  the 3 digits taken from the БИК, then the 20 digits of the account, weighted
  7, 1, 3, 7, 1, 3, …; the sum of the products' last digits must end in 0. A settlement
  account at a bank takes the БИК's last 3 digits; one at a settlement centre of the
  Bank of Russia (БИК ending ``000``–``002``) and every correspondent account take
  ``0`` + the БИК's 5th and 6th digits. Treasury accounts (БИК ``01…``, accounts
  ``03…``) follow other rules and are checked for length only, as
  ``shared/domain/exchange-formats.md`` §10 records of the reference implementation.

Each check returns the Russian reason for a bad value, or ``None`` when it is fine.

>>> inn_problem("7707083893") is None, inn_problem("7707083890")
(True, 'неверное контрольное число ИНН')
>>> account_problem("40702810400000000225", "044525225") is None
True
>>> account_problem("30101810400000000225", "044525225", corr=True) is None
True
>>> account_problem("40702810500000000225", "044525225")
'контрольный ключ счёта не сходится с БИК 044525225'
"""

from __future__ import annotations

import re

from stdnum.exceptions import InvalidChecksum, InvalidLength, ValidationError
from stdnum.ru import inn as stdnum_inn
from stdnum.ru import ogrn as stdnum_ogrn

__all__ = [
    "CHECKS",
    "account_problem",
    "bik_problem",
    "els_problem",
    "email_problem",
    "inn_problem",
    "izhku_problem",
    "kpp_problem",
    "ogrn_problem",
]

_KPP = re.compile(r"^\d{4}[0-9A-Z]{2}\d{3}$")
_DIGITS = re.compile(r"^\d+$")
_WEIGHTS = ((7, 1, 3) * 8)[:23]  # 23 digits: 3 from the БИК, 20 of the account


def inn_problem(value: str) -> str | None:
    """Why ``value`` is not a valid ИНН, or ``None``."""
    if not _DIGITS.match(value):
        return "ИНН должен состоять из цифр"
    try:
        stdnum_inn.validate(value)
    except InvalidLength:
        return "в ИНН должно быть 10 цифр (организация) или 12 (предприниматель)"
    except InvalidChecksum:
        return "неверное контрольное число ИНН"
    except ValidationError:
        return "неверный ИНН"
    return None


def kpp_problem(value: str) -> str | None:
    """Why ``value`` is not a valid КПП, or ``None``."""
    if not _KPP.match(value):
        return "КПП — 9 знаков: 4 цифры, 2 цифры или заглавные латинские буквы, 3 цифры"
    return None


def bik_problem(value: str) -> str | None:
    """Why ``value`` is not a valid БИК, or ``None``."""
    if not (len(value) == 9 and _DIGITS.match(value)):
        return "в БИК должно быть 9 цифр"
    if not value.startswith("0"):
        return "БИК банка в России начинается с 0"
    return None


def account_problem(account: str, bik: str | None, *, corr: bool = False) -> str | None:
    """Why ``account`` is not a valid settlement (or, with ``corr``, correspondent) account
    at the bank ``bik``, or ``None``."""
    if not (len(account) == 20 and _DIGITS.match(account)):
        return "в номере счёта должно быть 20 цифр"
    if not bik:
        return "счёт нельзя проверить без БИК банка"
    if bik_problem(bik):
        return "счёт нельзя проверить: неверный БИК"
    if corr and not account.startswith("301"):
        return "корреспондентский счёт банка начинается с 301"
    if not corr and bik.startswith("01"):
        return None  # treasury (ТОФК) accounts: no bank control key
    at_cbr = bik[6:9] in ("000", "001", "002")
    prefix = "0" + bik[4:6] if corr or at_cbr else bik[6:9]
    total = sum(int(d) * w % 10 for d, w in zip(prefix + account, _WEIGHTS, strict=True))
    if total % 10:
        return f"контрольный ключ счёта не сходится с БИК {bik}"
    return None


_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;.]+$")


def email_problem(value: str) -> str | None:
    """Why ``value`` is not one e-mail address, or ``None`` (the form only: ``имя@домен.зона``).

    >>> email_problem("ivanov@example.ru") is None, email_problem("ivanov@example")
    (True, 'нужен один адрес вида имя@домен.ru')
    """
    if not _EMAIL.match(value):
        return "нужен один адрес вида имя@домен.ru"
    return None


_ELS = re.compile(r"^[0-9A-Za-z]{10}$")
_IZHKU = re.compile(r"^[0-9A-Za-z]{10}-\d{2}$")


def els_problem(value: str) -> str | None:
    """Why ``value`` is not a ЕЛС of ГИС ЖКХ (10 letters and digits; law.md §5.2 [P]), or ``None``."""
    return None if _ELS.match(value) else "ЕЛС — 10 латинских букв и цифр, например 75da533315"


def izhku_problem(value: str) -> str | None:
    """Why ``value`` is not an ИЖКУ (ЕЛС, «-», 2 digits of the service; law.md §5.2 [P]), or ``None``."""
    return None if _IZHKU.match(value) else "ИЖКУ — ЕЛС, дефис и 2 цифры услуги, например 75da533315-01"


_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def period_problem(value: str) -> str | None:
    """Why ``value`` is not a billing period ``ГГГГ-ММ``, or ``None``.

    >>> period_problem("2026-09") is None, period_problem("2026-9")
    (True, 'период — ГГГГ-ММ, например 2026-09')
    """
    return None if _PERIOD.match(value) else "период — ГГГГ-ММ, например 2026-09"


def ogrn_problem(value: str) -> str | None:
    """Why ``value`` is not an ОГРН (13 digits) or ОГРНИП (15), or ``None``.

    >>> ogrn_problem("1027700132195") is None
    True
    >>> ogrn_problem("1027700132196")
    'неверная контрольная цифра ОГРН'
    """
    if not _DIGITS.match(value):
        return "ОГРН должен состоять из цифр"
    try:
        stdnum_ogrn.validate(value)
    except InvalidLength:
        return "в ОГРН должно быть 13 цифр (ОГРНИП — 15)"
    except InvalidChecksum:
        return "неверная контрольная цифра ОГРН"
    except ValidationError:
        return "неверный ОГРН"
    return None


#: Column check name (``schemas.registers.Col.check``) → the check; ``account`` and
#: ``corr_account`` are read together with the row's ``bik``.
CHECKS = {"inn": inn_problem, "kpp": kpp_problem, "bik": bik_problem, "email": email_problem,
          "els": els_problem, "izhku": izhku_problem, "period": period_problem,
          "ogrn": ogrn_problem}
