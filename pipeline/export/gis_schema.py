"""The official ГИС ЖКХ schemas (package 16.3.0.0), found, built once per process, and checked.

``schema("bills")`` is the ``xmlschema`` schema of ``bills/hcs-bills-types.xsd``;
``schema("device-metering")`` and ``schema("payment")`` likewise. Building one takes
seconds (about 4 s for bills), so each is built once per process and kept
(:func:`functools.cache`); the export of ГИС ЖКХ files (pipeline/export/gis.py) and the
import of its answers share them through this module.

Where the schemas are: the folder named by the ``BILLING_GIS_XSD`` environment variable (a
newer package), else ``schemas/gis_gkh/`` of this repository: the official files copied byte
for byte, with their provenance and ``SHA256SUMS`` (its README).
They are loaded with ``allow="local"``: no URL is ever fetched (the xmldsig import is a
local file of the package).
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.errors import BillingError

__all__ = ["SCHEMA_FILES", "fast_schema", "first_error", "invalid_messages", "schema", "schema_dir",
           "validation_error"]

#: Schema name → its file inside the package folder.
SCHEMA_FILES = {
    "bills": "bills/hcs-bills-types.xsd",
    "device-metering": "device-metering/hcs-device-metering-types.xsd",
    "payment": "payment/hcs-payment-types.xsd",
}

_ENV = "BILLING_GIS_XSD"
#: ``{http://dom.gosuslugi.ru/schema/integration/bills/}X`` → ``bills:X`` in complaints.
_NS_RE = re.compile(r"\{http://dom\.gosuslugi\.ru/schema/integration/([^/}]+)/\}")
_ROOT = Path(__file__).resolve().parents[2]


def _candidates() -> list[Path]:
    env = os.environ.get(_ENV)
    return [*([Path(env)] if env else []), _ROOT / "schemas" / "gis_gkh"]


def schema_dir() -> Path:
    """The folder holding the ГИС ЖКХ package (``bills/``, ``device-metering/``, ``lib/`` …)."""
    for folder in _candidates():
        if (folder / SCHEMA_FILES["bills"]).is_file():
            return folder
    raise BillingError("Не найдены схемы ГИС ЖКХ (XSD пакета 16.3.0.0): ожидаются в "
                       + ", ".join(str(p) for p in _candidates())
                       + f" (или укажите папку в переменной окружения {_ENV}).")


@cache
def schema(name: str) -> Any:
    """The ``xmlschema.XMLSchema`` of ``name`` (``bills``, ``device-metering``, ``payment``),
    built on first use and kept for the process."""
    if name not in SCHEMA_FILES:
        raise ValueError(f"unknown ГИС ЖКХ schema {name!r}; known: {', '.join(SCHEMA_FILES)}")
    import xmlschema  # slow to import and to build: only when a ГИС file is made or read

    return xmlschema.XMLSchema(str(schema_dir() / SCHEMA_FILES[name]), allow="local")


@cache
def fast_schema(name: str) -> Any:
    """The same schema compiled by libxml2 (``lxml.etree.XMLSchema``), or None without lxml.

    About 45 times faster than :func:`schema` at validating (0.11 ms against 5 ms a payment
    document, measured): what makes validating every message of a large export affordable.
    It enforces the same ``xs:key``/``xs:keyref`` rules (the package README checked both).
    """
    if name not in SCHEMA_FILES:
        raise ValueError(f"unknown ГИС ЖКХ schema {name!r}; known: {', '.join(SCHEMA_FILES)}")
    try:
        from lxml import etree
    except ImportError:
        return None
    return etree.XMLSchema(etree.parse(str(schema_dir() / SCHEMA_FILES[name])))


def first_error(name: str, data: bytes) -> tuple[str, Any] | None:
    """The first complaint of the reference validator (``xmlschema``) about ``data``, with
    ``(root, element)`` — the parsed ``xml.etree`` tree and the element it is about — or None
    when the XML does not parse; None when ``data`` is valid."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        return f"XML не разбирается: {err}", None
    for problem in schema(name).iter_errors(root):
        path = _NS_RE.sub(r"\1:", str(problem.path or ""))
        where = f" (элемент {path})" if path else ""
        return f"{problem.reason or problem.message}{where}", (root, problem.elem)
    return None


def validation_error(name: str, data: bytes) -> str | None:
    """Why ``data`` (one XML message) is not valid against schema ``name``; None when valid.

    Checked by libxml2 when lxml is installed (:func:`fast_schema`), else by ``xmlschema``;
    the complaint is worded by ``xmlschema`` (its reason and the element's path) either way.
    """
    fast = fast_schema(name)
    if fast is not None:
        from lxml import etree

        try:
            if fast.validate(etree.fromstring(data)):
                return None
        except etree.XMLSyntaxError as err:
            return f"XML не разбирается: {err}"
        found = first_error(name, data)
        return found[0] if found else str(fast.error_log.last_error)
    found = first_error(name, data)
    return found[0] if found else None


def _fast_valid(name: str, data: bytes) -> bool:
    """Whether libxml2 finds ``data`` valid (False when it does not parse)."""
    from lxml import etree

    try:
        return bool(fast_schema(name).validate(etree.fromstring(data)))
    except etree.XMLSyntaxError:
        return False


def invalid_messages(name: str, messages: list[bytes]) -> list[int]:
    """The indexes of the ``messages`` not valid against schema ``name`` (empty: all valid).

    Checked by libxml2 when lxml is installed, else by ``xmlschema``; one by one in this
    process. (libxml2 keeps the GIL, so threads do not help: the export shares the work between
    cores by validating each slice's messages in the ``forkserver`` pool worker that made them,
    :func:`pipeline.export.gis.iter_gis_files`.)
    """
    if fast_schema(name) is None:
        return [i for i, m in enumerate(messages) if first_error(name, m) is not None]
    return [i for i, m in enumerate(messages) if not _fast_valid(name, m)]
