"""The payment QR code of a receipt: a ГОСТ Р 56042-2014 payload and its picture.

A bank app reads the code and fills a payment order: payee, bank details, the amount
in kopecks, the personal account and the period. The payload is
``ST0001<encoding digit>`` followed by ``|Key=Value`` pairs (``shared/domain/law.md``
§5.3): the five mandatory keys first, in the standard's order (``Name``,
``PersonalAcc``, ``BankName``, ``BIC``, ``CorrespAcc``), then ``PayeeINN``, ``KPP``,
``Sum``, ``Purpose``, ``PersAcc``, ``PaymPeriod``, the payer's name and address and
``TechCode=02`` (housing and utilities).

What the standard does not settle, or what ``law.md`` marks UNVERIFIED, is a switch
of ``rules/payment_qr.toml`` (:class:`QrPolicy`), documented in ``docs/receipts.md``:
the encoding (``ST00012``, UTF-8, by default), the form of ``PaymPeriod`` (``MMYYYY``),
the error-correction level (``M``), the mask, the purpose text and the payload's size
limit.

Nothing is broken silently:

* a value longer than its key allows (``Name`` 160, ``BankName`` 45, ``Purpose`` 210
  characters) is shortened at the last space within the limit (at the limit when a
  single word is longer), and the shortening is reported;
* the separator ``|`` inside a value becomes ``/`` and a line break a space (the
  standard forbids the separator in values), reported too;
* a payload over ``max_bytes`` drops the payer's address, then the payer's name
  (both optional), reported;
* a mandatory value of the wrong form (an account not of 20 digits, a БИК not of 9) is
  a ``ValueError``: the receipt then prints the payee without a code.

>>> p = payment_payload(QrPayee("ООО «УК»", "40702810200000000001", "ПАО Сбербанк",
...     "044525225", "30101810400000000225", "7707083893", "770701001"), sum_kop=123456,
...     account_id="1000001", period="2026-10", payer_name="Иванов Иван Иванович",
...     payer_address="г. Энск, ул. Ленина, д. 1, кв. 2")
>>> print(p.text.replace("|", chr(10) + "|"))
ST00012
|Name=ООО «УК»
|PersonalAcc=40702810200000000001
|BankName=ПАО Сбербанк
|BIC=044525225
|CorrespAcc=30101810400000000225
|PayeeINN=7707083893
|KPP=770701001
|Sum=123456
|Purpose=Оплата ЖКУ за 10.2026, лицевой счёт 1000001
|PersAcc=1000001
|PaymPeriod=102026
|LastName=Иванов
|FirstName=Иван
|MiddleName=Иванович
|PayerAddress=г. Энск, ул. Ленина, д. 1, кв. 2
|TechCode=02
>>> parse_payload(p.text)["sum"], p.notes
('123456', ())
"""

from __future__ import annotations

import base64
import io
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.dates import Period
from pipeline.workspace import BillingError

__all__ = [
    "DEFAULT_QR_POLICY",
    "POLICY_FILE",
    "Payload",
    "QrPayee",
    "QrPolicy",
    "decode_payload",
    "load_qr_policy",
    "parse_payload",
    "payment_payload",
    "qr_data_uri",
    "qr_png",
]

POLICY_FILE = "payment_qr.toml"

#: Header digit of each encoding the standard knows (ГОСТ Р 56042-2014 п.5.2).
ENCODINGS = {"cp1251": "1", "utf-8": "2", "koi8-r": "3"}
_ENCODING_OF_DIGIT = {v: k for k, v in ENCODINGS.items()}

#: Most characters of a value, by key (ГОСТ Р 56042-2014, table 1 and 2).
MAX_CHARS = {"Name": 160, "BankName": 45, "Purpose": 210, "CorrespAcc": 20, "PayeeINN": 12,
             "KPP": 9, "Sum": 18}

SEPARATOR = "|"
_ACCOUNT = re.compile(r"^\d{20}$")
_BIC = re.compile(r"^\d{9}$")


@dataclass(frozen=True)
class QrPolicy:
    """The switches of ``rules/payment_qr.toml`` (defaults = the file ``billing init`` writes)."""

    #: ``utf-8`` (header ``ST00012``), ``cp1251`` (``ST00011``) or ``koi8-r`` (``ST00013``).
    encoding: str = "utf-8"
    #: ``PaymPeriod``: ``MMYYYY`` (UNVERIFIED form, law.md §5.3) or ``MM.YYYY``.
    period_format: str = "MMYYYY"
    #: Error-correction level: ``L``, ``M`` (UNVERIFIED recommendation), ``Q`` or ``H``.
    error: str = "M"
    #: QR mask 0–7, or ``None`` to let segno evaluate all eight (≈50 ms more per code).
    mask: int | None = 0
    #: Payload bytes beyond which the payer's address, then name, are left out.
    max_bytes: int = 700
    #: The purpose; ``{period}`` is ``MM.YYYY``, ``{account}`` the personal account.
    purpose: str = "Оплата ЖКУ за {period}, лицевой счёт {account}"
    #: Split a three-word payer name into ``LastName``, ``FirstName``, ``MiddleName``.
    split_name: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.encoding not in ENCODINGS:
            problems.append(f"encoding = «{self.encoding}»: допустимо {', '.join(ENCODINGS)}")
        if self.period_format not in ("MMYYYY", "MM.YYYY"):
            problems.append(f"period_format = «{self.period_format}»: допустимо MMYYYY или MM.YYYY")
        if self.error not in ("L", "M", "Q", "H"):
            problems.append(f"error = «{self.error}»: допустимо L, M, Q или H")
        if self.mask is not None and not 0 <= self.mask <= 7:
            problems.append(f"mask = {self.mask}: допустимо 0–7 или \"auto\"")
        if self.max_bytes < 200:
            problems.append(f"max_bytes = {self.max_bytes}: меньше 200 байт не вместит обязательные поля")
        if problems:
            raise ValueError("; ".join(problems))


#: The policy of a workspace without ``payment_qr.toml``.
DEFAULT_QR_POLICY = QrPolicy()


@dataclass(frozen=True)
class QrPayee:
    """The payee's details a payment order needs."""

    name: str
    account: str
    bank_name: str
    bik: str
    corr_account: str
    inn: str = ""
    kpp: str = ""


@dataclass(frozen=True)
class Payload:
    """A payload, its encoding and what was changed to make it fit (Russian notes)."""

    text: str
    encoding: str
    notes: tuple[str, ...] = field(default=())

    @property
    def data(self) -> bytes:
        """The bytes the code carries."""
        return self.text.encode(self.encoding, errors="replace")


def load_qr_policy(rules_dir: Path) -> QrPolicy:
    """``rules_dir / payment_qr.toml`` as a :class:`QrPolicy` (absent: the defaults)."""
    path = rules_dir / POLICY_FILE
    if not path.is_file():
        return QrPolicy()
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh).get("qr", {})
    except tomllib.TOMLDecodeError as err:
        raise BillingError(f"{path}: ошибка разбора TOML: {err}") from None
    known = {f for f in QrPolicy.__dataclass_fields__}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise BillingError(f"{path}: неизвестные параметры [qr]: {', '.join(unknown)}")
    if raw.get("mask") == "auto":
        raw["mask"] = None
    try:
        return QrPolicy(**raw)
    except (TypeError, ValueError) as err:
        raise BillingError(f"{path}: {err}") from None


def _clean(key: str, value: str, notes: list[str]) -> str:
    text = " ".join(value.replace(SEPARATOR, "/").split())
    if SEPARATOR in value:
        notes.append(f"{key}: знак «|» заменён на «/»")
    limit = MAX_CHARS.get(key)
    if limit and len(text) > limit:
        cut = text[:limit + 1].rsplit(" ", 1)[0] if " " in text[:limit + 1] else text[:limit]
        text = cut[:limit].rstrip(" ,.;:")
        notes.append(f"{key}: сокращено до {len(text)} знаков из {len(value)}")
    return text


def _names(payer_name: str, split: bool) -> list[tuple[str, str]]:
    words = payer_name.split()
    if split and len(words) == 3:
        return list(zip(("LastName", "FirstName", "MiddleName"), words, strict=True))
    return [("LastName", " ".join(words))] if words else []


def payment_payload(payee: QrPayee, *, sum_kop: int, account_id: str, period: str,
                    payer_name: str = "", payer_address: str = "",
                    policy: QrPolicy | None = None) -> Payload:
    """The ГОСТ Р 56042 payload paying ``sum_kop`` to ``payee`` for ``account_id`` and ``period``.

    ``sum_kop`` ≤ 0 leaves ``Sum`` out (the payer enters the amount). Raises ``ValueError``
    when a mandatory detail cannot be put right (see the module's notes).
    """
    policy = policy or DEFAULT_QR_POLICY
    if not _ACCOUNT.match(payee.account):
        raise ValueError(f"расчётный счёт «{payee.account}» — не 20 цифр")
    if not _BIC.match(payee.bik):
        raise ValueError(f"БИК «{payee.bik}» — не 9 цифр")
    if not payee.name.strip() or not payee.bank_name.strip():
        raise ValueError("нет наименования получателя или банка")
    p = Period.parse(period)
    month_year = f"{p.month:02d}.{p.year}"
    notes: list[str] = []
    pairs = [
        ("Name", payee.name), ("PersonalAcc", payee.account), ("BankName", payee.bank_name),
        ("BIC", payee.bik), ("CorrespAcc", payee.corr_account or "0"),
    ]
    if payee.inn:
        pairs.append(("PayeeINN", payee.inn))
    if payee.kpp:
        pairs.append(("KPP", payee.kpp))
    if sum_kop > 0:
        pairs.append(("Sum", str(sum_kop)))
    pairs += [
        ("Purpose", policy.purpose.format(period=month_year, account=account_id)),
        ("PersAcc", account_id),
        ("PaymPeriod", month_year.replace(".", "") if policy.period_format == "MMYYYY" else month_year),
    ]
    payer = _names(payer_name, policy.split_name)
    address = [("PayerAddress", payer_address)] if payer_address.strip() else []
    tail = [("TechCode", "02")]
    header = "ST0001" + ENCODINGS[policy.encoding]
    cleaned = [(k, _clean(k, v, notes)) for k, v in pairs]
    payer = [(k, _clean(k, v, notes)) for k, v in payer]
    address = [(k, _clean(k, v, notes)) for k, v in address]

    def text(parts: list[tuple[str, str]]) -> str:
        return header + "".join(f"{SEPARATOR}{k}={v}" for k, v in parts)

    for optional, dropped in ((payer + address, None), (payer, "адрес плательщика"), ([], "ФИО плательщика")):
        out = text(cleaned + optional + tail)
        if dropped:
            notes.append(f"код длиннее {policy.max_bytes} байт: не включён {dropped}")
        if len(out.encode(policy.encoding, errors="replace")) <= policy.max_bytes:
            break
    else:
        raise ValueError(f"обязательные поля не умещаются в {policy.max_bytes} байт")
    unencodable = {ch for ch in out if not ch.encode(policy.encoding, errors="ignore")}
    if unencodable:
        missing = "".join(sorted(unencodable))
        notes.append(f"знаков {missing} нет в кодировке {policy.encoding}: заменены на «?»")
    return Payload(out, policy.encoding, tuple(notes))


def parse_payload(text: str) -> dict[str, str]:
    """A payload's keys (lower-cased: real codes spell them either way) and values.

    >>> parse_payload("ST00012|Name=ООО «А=Б»|persAcc=12")
    {'name': 'ООО «А=Б»', 'persacc': '12'}
    """
    if not text.startswith("ST0001") or len(text) < 8:
        raise ValueError("не платёжный QR-код по ГОСТ Р 56042 (нет заголовка ST0001…)")
    sep = text[7]
    out = {}
    for item in text[8:].split(sep):
        key, eq, value = item.partition("=")
        if eq:
            out[key.strip().lower()] = value
    return out


def decode_payload(data: bytes) -> str:
    """The text of a code's bytes, by the encoding its header names."""
    encoding = _ENCODING_OF_DIGIT.get(chr(data[6]) if len(data) > 6 else "", "utf-8")
    return data.decode(encoding)


#: segno's matrix has 1 for a dark module: black (0) in an 8-bit grey picture, light 255.
_GREY = bytes.maketrans(b"\x00\x01", b"\xff\x00")


def qr_png(payload: Payload, policy: QrPolicy | None = None, scale: int = 2) -> bytes:
    """The code as an 8-bit grey PNG, ``scale`` pixels a module, a quiet zone of 4 modules.

    The page scales it up with ``image-rendering: pixelated``. At one pixel a module, poppler
    blurred the 34 mm code of a ≈700-byte payload so that zbar read it only from a 350 dpi
    picture; at two it reads from 200 dpi on (measured, ``tests/render/test_qr.py``). Grey, not
    segno's 1-bit PNG: WeasyPrint turns a 1-bit image into RGB and encodes it twice, a grey one
    once (≈ 6–9 ms less a code, the same pixels).
    """
    import segno  # a light import, kept here so building receipts does not pay it
    from PIL import Image, ImageOps

    policy = policy or DEFAULT_QR_POLICY
    code = segno.make(payload.data, error=policy.error.lower(), mask=policy.mask,
                      boost_error=False, micro=False)
    n = len(code.matrix)
    grey = b"".join(bytes(row) for row in code.matrix).translate(_GREY)
    image = ImageOps.expand(Image.frombytes("L", (n, n), grey), border=4, fill=255)
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # WeasyPrint compresses the PDF stream anyway
    return out.getvalue()


def qr_data_uri(payload: Payload, policy: QrPolicy | None = None) -> str:
    """:func:`qr_png` as a ``data:`` URI for the receipt's ``<img>``."""
    return "data:image/png;base64," + base64.b64encode(qr_png(payload, policy)).decode("ascii")
