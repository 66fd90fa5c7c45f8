"""How a charge was found, in the words a payer reads (способ расчёта).

The ``method`` column of ``charges`` holds a code (``meter``, ``norm_increased`` …);
people see :data:`METHOD_NAMES` — in ``billing explain``, on receipts, in the close's
summary. One table, so a receipt and an explanation never name a method differently.
A code missing here (a method added later) is shown as it is.
"""

from __future__ import annotations

from decimal import Decimal

METHOD_NAMES: dict[str, str] = {
    "meter": "по прибору учёта",                           # formula 1
    "average": "по среднему",                              # п.59
    "norm": "по нормативу",                                # formula 4
    "norm_increased": "по нормативу с повышающим коэффициентом",  # formula 4(1)
    "area": "по площади",
    "per_person": "на человека",
    "fixed": "фиксированная плата",
    # Heating: the service's own name says «отопление»; only heating is charged per m² by a
    # norm or by the building meter (ОДПУ), so the names stay short for the receipt column.
    "heating": "по нормативу на м²",                      # formula 2
    "heating_meter": "по ОДПУ дома за месяц",             # formula 3
    "heating_average": "по среднему ОДПУ дома за прошлый год",  # formula 3(1)
    "common_property": "по нормативу на общее имущество",  # КР на СОИ
    # A month moved in from the previous system (billing migrate): charged there, not here.
    "imported": "перенесено из прежней системы",
}


def method_name(method: str) -> str:
    """The Russian name of a charge method.

    >>> method_name("meter"), method_name("heating_average")
    ('по прибору учёта', 'по среднему ОДПУ дома за прошлый год')
    """
    return METHOD_NAMES.get(method, method)


def method_label(method: str, coef_milli: int | None = None) -> str:
    """The method as a receipt line shows it: the coefficient beside the increased norm.

    >>> method_label("norm_increased", 1500), method_label("meter", 1000)
    ('по нормативу с повышающим коэффициентом 1,5', 'по прибору учёта')
    """
    name = method_name(method)
    if method == "norm_increased" and coef_milli and coef_milli != 1000:
        coef = f"{Decimal(coef_milli) / 1000:f}".rstrip("0").rstrip(".").replace(".", ",")
        return f"{name} {coef}"
    return name
