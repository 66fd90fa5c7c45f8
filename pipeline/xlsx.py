"""Workbooks with a fixed creation time, so the same data gives the same bytes.

openpyxl stamps a workbook with the moment it is saved twice over: the
``dcterms:modified`` property (always "now", whatever was set) and the date of
every member of the ZIP container. Two identical closes would then differ in
their spreadsheets and in the manifest's checksums. :func:`workbook_bytes` saves
the workbook and pins both to ``created``.
"""

from __future__ import annotations

import re
from datetime import datetime
from io import BytesIO
from typing import Any
from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo

_MODIFIED = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


def workbook_bytes(book: Any, created: datetime) -> bytes:
    """The ``.xlsx`` bytes of an openpyxl workbook, created and modified at ``created``.

    >>> from openpyxl import Workbook
    >>> book = Workbook(); book.active.append([1, 2])
    >>> workbook_bytes(book, datetime(2026, 8, 31)) == workbook_bytes(book, datetime(2026, 8, 31))
    True
    """
    book.properties.created = created
    book.properties.modified = created
    raw = BytesIO()
    book.save(raw)
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    when = (max(created.year, 1980), created.month, created.day, created.hour, created.minute,
            created.second)
    out = BytesIO()
    with ZipFile(BytesIO(raw.getvalue())) as src, ZipFile(out, "w", ZIP_DEFLATED) as dst:
        for member in src.infolist():
            body = src.read(member.filename)
            if member.filename == "docProps/core.xml":
                body = _MODIFIED.sub(rb"\g<1>" + stamp + rb"\g<2>", body)
            info = ZipInfo(member.filename, date_time=when)
            info.compress_type = ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            dst.writestr(info, body)
    return out.getvalue()
