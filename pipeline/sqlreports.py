"""``billing report NAME``: reports as SQL files over the ``billing sql`` views.

A report is one SELECT in a ``.sql`` file whose leading comment block describes it::

    -- title: Крупнейшие должники             (the Russian title `billing report` lists)
    -- about: …                                (what it shows; several lines join)
    -- params: $period_from, $period_to — …   (documentation of the parameters it uses)
    -- param: top = 50 — сколько показать      (a parameter of its own and its default)
    -- column: debt = Долг                     (a column's Russian title)
    -- money: debt                             (money columns: DECIMAL rubles in SQL)
    -- total: account_id                       (an «Итого» row, its label in this column)
    -- sum: accounts                           (other columns the total adds up)
    -- chart: x=period bars=charged,paid line=rate   (a PNG chart for --format png)

Every report gets ``$period_from`` and ``$period_to`` (``YYYY-MM``), ``$first_day`` and
``$last_day`` (DATE) of the range and ``$org`` (the ``--org`` code or NULL), plus its
own ``param:`` values (``--param NAME=VALUE``); only the parameters a query names are
passed. It runs read-only on the views of :mod:`pipeline.analytics`, limited to
``--org`` there, so a report cannot see more than ``billing sql --org`` does.

The built-in reports are :data:`BUILTIN_DIR` (``pipeline/report_sql/``). An organization
adds its own by dropping ``NAME.sql`` (and optionally ``NAME.xlsx``, a workbook
template) into ``HOME/reports/``; a built-in name is never replaced by a workspace file
(:func:`reports` names the file it ignores). A template is used for any report of
that name, built-in too.

Money comes back from DuckDB as exact DECIMAL rubles, becomes Int64 kopecks
(``*_kop``) in :class:`ReportResult` and DECIMAL(18,2) rubles again for output; a
float money column is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.workspace import BillingError, Workspace

if TYPE_CHECKING:  # `billing --help` lists the reports without importing polars
    from datetime import datetime

    import duckdb
    import polars as pl

BUILTIN_DIR = Path(__file__).with_name("report_sql")
#: Rows ``--format table`` prints (the rest: csv or xlsx).
TABLE_ROWS = 1000
#: Parameters every report may use.
COMMON_PARAMS = ("period_from", "period_to", "first_day", "last_day", "org")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_HEADER = re.compile(r"^--\s*([a-z]+):\s*(.*)$")


@dataclass(frozen=True)
class Param:
    """A report's own parameter: its name, default (an int makes it an integer) and meaning."""

    name: str
    default: int | str
    about: str = ""


@dataclass(frozen=True)
class Chart:
    """A PNG chart: ``x`` column, money columns drawn as ``bars``, one ``line`` on a right axis."""

    x: str
    bars: tuple[str, ...]
    line: str | None = None


@dataclass(frozen=True)
class ReportSpec:
    """One report file and what its header says."""

    name: str
    path: Path
    title: str
    about: str = ""
    params: tuple[Param, ...] = ()
    titles: dict[str, str] = field(default_factory=dict)
    money: tuple[str, ...] = ()
    total: str | None = None
    sums: tuple[str, ...] = ()
    chart: Chart | None = None
    builtin: bool = True
    text: str | None = None  # the file's text, if read already (else read when run)

    @property
    def sql(self) -> str:
        return self.text if self.text is not None else self.path.read_text(encoding="utf-8")


def parse_spec(name: str, path: Path, text: str, builtin: bool) -> ReportSpec:
    """The :class:`ReportSpec` of ``text`` (the header lines before the first non-comment)."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        m = _HEADER.match(stripped)
        if m:
            fields.setdefault(m.group(1), []).append(m.group(2).strip())
    where = f"{path}"
    if not fields.get("title"):
        raise BillingError(f"Отчёт {where}: в заголовке нет строки «-- title: Название отчёта».")
    titles: dict[str, str] = {}
    for item in fields.get("column", []):
        column, sep, title = item.partition("=")
        if not sep:
            raise BillingError(f"Отчёт {where}: строка «-- column: {item}» — ожидалось «столбец = Название».")
        titles[column.strip()] = title.strip()
    params = []
    for item in fields.get("param", []):
        m = re.match(r"^([a-z_][a-z0-9_]*)\s*=\s*([^\s—-]+)\s*(?:[—-]+\s*(.*))?$", item)
        if not m:
            raise BillingError(f"Отчёт {where}: строка «-- param: {item}» — ожидалось "
                               "«имя = значение — смысл».")
        raw = m.group(2)
        params.append(Param(m.group(1), int(raw) if re.fullmatch(r"-?\d+", raw) else raw, m.group(3) or ""))
    chart = None
    if fields.get("chart"):
        parts = dict(p.split("=", 1) for p in fields["chart"][0].split() if "=" in p)
        if "x" not in parts or "bars" not in parts:
            raise BillingError(f"Отчёт {where}: «-- chart:» требует x=столбец bars=столбец,…")
        chart = Chart(parts["x"], tuple(parts["bars"].split(",")), parts.get("line"))

    def listed(key: str) -> tuple[str, ...]:
        return tuple(c.strip() for v in fields.get(key, []) for c in v.split(",") if c.strip())

    return ReportSpec(name=name, path=path, title=fields["title"][0], about=" ".join(fields.get("about", [])),
                      params=tuple(params), titles=titles, money=listed("money"),
                      total=fields["total"][0] if fields.get("total") else None, sums=listed("sum"),
                      chart=chart, builtin=builtin, text=text)


def _specs(folder: Path, builtin: bool) -> dict[str, ReportSpec]:
    out = {}
    for path in sorted(folder.glob("*.sql")) if folder.is_dir() else []:
        if _NAME.match(path.stem):
            out[path.stem] = parse_spec(path.stem, path, path.read_text(encoding="utf-8"), builtin)
    return out


def builtin_reports() -> dict[str, ReportSpec]:
    """The reports shipped in ``pipeline/report_sql/``."""
    return _specs(BUILTIN_DIR, True)


def workspace_dir(home: Path) -> Path:
    """Where an organization drops its own reports: ``HOME/reports/``."""
    return home / "reports"


@dataclass(frozen=True)
class Catalogue:
    """Every report of a workspace, and the workspace files a built-in name hides."""

    reports: dict[str, ReportSpec]
    ignored: tuple[Path, ...] = ()


def reports(home: Path | None) -> Catalogue:
    """Built-in reports, then the workspace's own (``HOME/reports/*.sql``, lower-case names
    of letters, digits, ``-`` and ``_``); a workspace file named like a built-in is ignored."""
    found = builtin_reports()
    ignored = []
    if home is not None:
        for name, spec in _specs(workspace_dir(home), False).items():
            if name in found:
                ignored.append(spec.path)
            else:
                found[name] = spec
    return Catalogue(found, tuple(ignored))


def find_report(home: Path | None, name: str) -> ReportSpec:
    catalogue = reports(home)
    if name not in catalogue.reports:
        raise BillingError(f"Нет отчёта «{name}». Отчёты: {', '.join(sorted(catalogue.reports))} "
                           "(список с названиями: billing report list).")
    return catalogue.reports[name]


# --------------------------------------------------------------------------- running a report

@dataclass(frozen=True)
class ReportResult:
    """A report's rows (money as Int64 ``*_kop``), with what it was asked for."""

    spec: ReportSpec
    periods: tuple[str, ...]
    org: str | None
    params: dict[str, Any]
    frame: pl.DataFrame

    @property
    def span(self) -> str:
        return self.periods[0] if len(self.periods) == 1 else f"{self.periods[0]}_{self.periods[-1]}"


def _own_params(spec: ReportSpec, given: dict[str, str]) -> dict[str, Any]:
    declared = {p.name: p for p in spec.params}
    unknown = [k for k in given if k not in declared]
    if unknown:
        have = ", ".join(f"{p.name} (по умолчанию {p.default})" for p in spec.params) or "нет"
        raise BillingError(f"У отчёта «{spec.name}» нет параметра «{unknown[0]}»; параметры: {have}.")
    out: dict[str, Any] = {}
    for p in spec.params:
        raw = given.get(p.name)
        if raw is None:
            out[p.name] = p.default
        elif isinstance(p.default, int):
            try:
                out[p.name] = int(raw)
            except ValueError:
                raise BillingError(f"Параметр {p.name} отчёта «{spec.name}» — целое число, "
                                   f"получено «{raw}».") from None
        else:
            out[p.name] = raw
    return out


def run_report(ws: Workspace, spec: ReportSpec, periods: list[str], org: str | None = None,
               given: dict[str, str] | None = None) -> ReportResult:
    """Run ``spec`` over the sealed ``periods`` (all of them must be sealed), limited to ``org``."""
    from pipeline.analytics import connect

    sealed = set(ws.sealed_periods())
    missing = [p for p in periods if p not in sealed]
    if missing:
        raise BillingError(f"Период {missing[0]} не закрыт: отчёты строятся только по закрытым периодам "
                           f"(закрыты: {', '.join(sorted(sealed)) or 'ни одного'}).")
    _own_params(spec, given or {})  # a wrong --param before the views are opened
    con = connect(ws, org)
    try:
        return run_on(con, spec, periods, org, given)
    finally:
        con.close()


def run_on(con: duckdb.DuckDBPyConnection, spec: ReportSpec, periods: list[str], org: str | None = None,
           given: dict[str, str] | None = None) -> ReportResult:
    """Run ``spec`` on a connection holding the views (read-only check first; no period check)."""
    import duckdb

    from pipeline.analytics import check_read_only, check_views_only, run_checked
    from pipeline.dates import Period

    own = _own_params(spec, given or {})
    values: dict[str, Any] = {"period_from": periods[0], "period_to": periods[-1],
                              "first_day": Period.parse(periods[0]).first,
                              "last_day": Period.parse(periods[-1]).last, "org": org, **own}
    sql = spec.sql
    with duckdb.connect(":memory:") as parser:
        try:
            check_read_only(parser, sql)
            if org is not None:
                check_views_only(parser, sql)
        except BillingError as err:
            raise BillingError(f"Отчёт {spec.path}: {err}") from err
        statements = parser.extract_statements(sql)
    if len(statements) != 1:
        raise BillingError(f"Отчёт {spec.path}: в файле должен быть один запрос SELECT, "
                           f"их {len(statements)}.")
    named = set(statements[0].named_parameters)
    strange = sorted(named - set(values))
    if strange:
        raise BillingError(f"Отчёт {spec.path}: параметр ${strange[0]} не объявлен "
                           f"(-- param: {strange[0]} = …); "
                           f"общие параметры: {', '.join('$' + p for p in COMMON_PARAMS)}.")
    try:
        frame = run_checked(con, sql, {k: v for k, v in values.items() if k in named})
    except BillingError as err:
        raise BillingError(f"Отчёт «{spec.name}» ({spec.path}): {err}") from err
    if frame is None:
        raise BillingError(f"Отчёт {spec.path}: запрос не вернул таблицы.")
    return ReportResult(spec, tuple(periods), org, own, _to_kopecks(spec, frame))


def _to_kopecks(spec: ReportSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """Money columns (DECIMAL rubles, at most 2 places) as Int64 kopecks named ``*_kop``."""
    import polars as pl

    exprs = []
    for column, dtype in frame.schema.items():
        if column not in spec.money:
            exprs.append(pl.col(column))
            continue
        if dtype == pl.Null:
            exprs.append(pl.lit(None, pl.Int64).alias(f"{column}_kop"))
            continue
        if dtype.is_integer():
            exprs.append((pl.col(column).cast(pl.Int64) * 100).alias(f"{column}_kop"))
            continue
        if not isinstance(dtype, pl.Decimal) or (dtype.scale or 0) > 2:
            raise BillingError(
                f"Отчёт {spec.path}: столбец «{column}» — деньги, но его тип {dtype}; деньги — "
                "DECIMAL рублей с двумя знаками (например CAST(x AS DECIMAL(18, 2))), не DOUBLE.")
        exprs.append((pl.col(column).cast(pl.Decimal(38, 2)) * 100).cast(pl.Int64).alias(f"{column}_kop"))
    missing = [c for c in spec.money if c not in frame.columns]
    if missing:
        raise BillingError(f"Отчёт {spec.path}: денежного столбца «{missing[0]}» нет в результате запроса.")
    return frame.select(exprs)


def with_total(result: ReportResult) -> pl.DataFrame:
    """The rows and, if the header asks (``-- total:``), an «Итого» row (kopecks summed)."""
    import polars as pl

    frame, label = result.frame, result.spec.total
    if not label or label not in frame.columns or not frame.height:
        return frame
    sums = [f"{c}_kop" for c in result.spec.money] + [c for c in result.spec.sums if c in frame.columns]
    total = frame.select(pl.lit("Итого").alias(label), *[pl.col(c).sum() for c in sums])
    if frame.schema[label] != pl.String:
        frame = frame.with_columns(pl.col(label).cast(pl.String))
    return pl.concat([frame, total], how="diagonal_relaxed").select(frame.columns)


def for_output(result: ReportResult, total: bool = True) -> tuple[pl.DataFrame, dict[str, str]]:
    """Rows for a person: money as DECIMAL(18,2) rubles under its own names, and the titles."""
    import polars as pl

    from pipeline.money import kopecks_to_decimal_expr

    frame = with_total(result) if total else result.frame
    money = {f"{c}_kop" for c in result.spec.money}
    out = frame.select(kopecks_to_decimal_expr(c).alias(c[:-4]) if c in money else pl.col(c)
                       for c in frame.columns)
    return out, {c: result.spec.titles.get(c, c) for c in out.columns}


def csv_bytes(result: ReportResult) -> bytes:
    """The report as Russian Excel opens a CSV (``;``, decimal comma, UTF-8 with BOM)."""
    from pipeline.tables import excel_csv_bytes

    frame, titles = for_output(result)
    return excel_csv_bytes(frame, titles)


def template_path(home: Path, name: str) -> Path | None:
    """``HOME/reports/NAME.xlsx``: the organization's workbook template for the report."""
    path = workspace_dir(home) / f"{name}.xlsx"
    return path if path.is_file() else None


def xlsx_bytes(result: ReportResult, created: datetime, template: Path | None = None) -> bytes:
    """The report as a workbook (numbers stay numbers); into ``template`` if given.

    A template's first sheet keeps everything it has; ``{title}``, ``{period_from}``,
    ``{period_to}`` and ``{org}`` in its cells are filled in; the rows go from the cell
    holding ``{rows}`` (without a title row), or, without that cell, with a title row
    below the last used row.
    """
    from pipeline import tables

    frame, titles = for_output(result)
    if template is None:
        return tables.xlsx_bytes(frame, created, sheet=result.spec.name[:31], titles=titles)
    from openpyxl import load_workbook

    from pipeline.xlsx import workbook_bytes

    try:
        book = load_workbook(template)
    except Exception as err:  # openpyxl raises several kinds for a damaged file
        raise BillingError(f"Шаблон {template} не читается как книга Excel: {err}") from err
    sheet = book.worksheets[0]
    fills = {"{title}": result.spec.title, "{period_from}": result.periods[0],
             "{period_to}": result.periods[-1], "{org}": result.org or ""}
    start: tuple[int, int] | None = None
    for row in sheet.iter_rows():
        for cell in row:
            if isinstance(cell.value, str):
                if cell.value.strip() == "{rows}":
                    start = (cell.row, cell.column)
                    cell.value = None
                    continue
                text = cell.value
                for key, value in fills.items():
                    text = text.replace(key, value)
                cell.value = text
    if start is None:
        first_row = sheet.max_row + 1 if sheet.max_row > 1 or sheet.cell(1, 1).value is not None else 1
        for j, column in enumerate(frame.columns):
            sheet.cell(first_row, 1 + j, titles.get(column, column))
        start = (first_row + 1, 1)
    money = set(result.spec.money)
    for i, values in enumerate(frame.iter_rows()):
        for j, value in enumerate(values):
            cell = sheet.cell(start[0] + i, start[1] + j, value)
            if frame.columns[j] in money:
                cell.number_format = "#,##0.00"
    return workbook_bytes(book, created)


def png_bytes(result: ReportResult) -> bytes:
    """The report's chart (``-- chart:``) as a PNG: money bars in rubles, a line on the right axis.

    Rubles become floats here only to be drawn; the numbers a person reads are the table's.
    """
    chart = result.spec.chart
    if chart is None:
        raise BillingError(f"У отчёта «{result.spec.name}» нет графика: форматы table, csv, xlsx.")
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    frame, titles = for_output(result, total=False)
    xs = [str(v) for v in frame[chart.x].to_list()]
    fig = Figure(figsize=(9, 5), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / max(len(chart.bars), 1)
    for k, column in enumerate(chart.bars):
        values = [float(v) if v is not None else 0.0 for v in frame[column].to_list()]
        ax.bar([i + (k - (len(chart.bars) - 1) / 2) * width for i in range(len(xs))], values, width,
               label=titles.get(column, column))
    ax.set_xticks(range(len(xs)), xs)
    ax.set_ylabel("₽")
    ax.legend(loc="upper left")
    if chart.line:
        right = ax.twinx()
        points = [float(v) if v is not None else float("nan") for v in frame[chart.line].to_list()]
        right.plot(range(len(xs)), points, color="black", marker="o",
                   label=titles.get(chart.line, chart.line))
        right.set_ylabel(titles.get(chart.line, chart.line))
        right.set_ylim(0, max([100.0, *(x * 1.1 for x in points if x == x)]))  # x == x: not NaN
        right.legend(loc="upper right")
    scope = f", {result.org}" if result.org else ""
    span = result.periods[0] if len(result.periods) == 1 else f"{result.periods[0]} — {result.periods[-1]}"
    ax.set_title(f"{result.spec.title}: {span}{scope}")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def table_text(result: ReportResult) -> str:
    """The report as the terminal shows it (the first :data:`TABLE_ROWS` rows)."""
    from pipeline.tables import render_table

    frame, titles = for_output(result)
    return render_table(frame, titles, limit=TABLE_ROWS)


# --------------------------------------------------------------------------- timing (for the benchmark)

def time_reports(ws: Workspace, periods: list[str], say: Any = None) -> dict[str, Any]:
    """Wall seconds of every built-in report over ``periods`` (run and written as CSV), beside a
    bare baseline measured in the same run: one plain DuckDB pass over the sealed balances'
    Parquet (``count(*)`` and ``sum(closing)`` of every row, no views, no verification).

    Returns ``{"baseline_seconds", "reports": [{"report", "seconds", "rows", "ratio"}, …]}``.
    """
    import time

    import duckdb

    from pipeline.sealed import duckdb_source

    sources = [s for p in periods if (s := duckdb_source(ws.period_dir(p), "balances")) is not None]
    listing = ", ".join("'" + s.replace("'", "''") + "'" for s in sources)
    start = time.perf_counter()
    with duckdb.connect(":memory:") as con:
        con.execute(f"SELECT count(*), sum(closing) FROM read_parquet([{listing}])").fetchall()
    baseline = time.perf_counter() - start
    out: dict[str, Any] = {"periods": periods, "baseline_seconds": round(baseline, 3), "reports": []}
    for name, spec in builtin_reports().items():
        start = time.perf_counter()
        result = run_report(ws, spec, periods)
        data = csv_bytes(result)
        seconds = time.perf_counter() - start
        row = {"report": name, "seconds": round(seconds, 2), "rows": result.frame.height,
               "csv_bytes": len(data), "ratio": round(seconds / baseline, 1) if baseline else None}
        out["reports"].append(row)
        if say is not None:
            say(f"{name}: {seconds:.2f} с, строк {result.frame.height}")
    return out
