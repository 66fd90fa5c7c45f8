"""``billing sql``: DuckDB views over the store, the rules and the sealed periods.

Views: one per register (current snapshot), one per rule table, ``payments``,
and one per output table across all sealed periods (each row has ``period``).
Only sealed periods are visible: a dry run or an interrupted close is not.

Read-only and confined to the workspace: the sealed periods are verified against
their manifests first (:func:`pipeline.verify.check_sealed`); once the views are
defined the connection may read only the views' own files (``allowed_paths``; a table
sealed in parts through its parts' glob, so that one directory is ``allowed_directories``;
``enable_external_access=false``), loads no extension and its configuration is
locked; and :func:`run_sql` runs only SELECT statements (and EXPLAIN of one).

``--org ORG`` limits every view to one organization (:func:`org_predicate`, the one
definition the reports use too) and lets a query read views only
(:func:`check_views_only`). :func:`shell` is ``billing sql`` without a query (a REPL on
the same confined connection); :func:`write_database` is ``billing sql --db FILE``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from pipeline.ingest.registers import current_version
from pipeline.sealed import PART_GLOB, duckdb_source
from pipeline.workspace import BillingError, Workspace
from schemas.outputs import OUTPUT_TABLES
from schemas.outputs import empty as empty_output
from schemas.registers import REGISTERS
from schemas.rules import RULE_TABLES

if TYPE_CHECKING:
    import polars as pl


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def connect(ws: Workspace, org: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with every view defined, closed to anything else.

    The views read the current register snapshot, the rule tables, the store's
    payments and the verified sealed periods; afterwards no other file can be read
    or written, no extension loaded and no setting changed. ``org`` limits every
    view to one organization's rows (:func:`org_predicate`).
    """
    con = duckdb.connect(":memory:")
    readable, parts_dirs = define_views(con, ws, org)
    _confine(con, readable, parts_dirs)
    return con


#: Store tables shown as views (``store/NAME.parquet``), and the debt-collection tables
#: another stage keeps under ``store/collection/`` (view name → file).
STORE_VIEWS = ("payments", "imported_files", "agent_settlements")
COLLECTION_VIEWS = {"collection_cases": "collection/cases.parquet",
                    "collection_events": "collection/events.parquet"}


def view_sources(ws: Workspace) -> tuple[dict[str, str], list[Path], list[Path]]:
    """Every view's defining SELECT (by absolute path), the files it reads and the part
    directories of partitioned tables. Sealed periods are verified first."""
    from pipeline.verify import check_sealed

    sealed = ws.sealed_periods()
    check_sealed(ws, sealed)
    sources: dict[str, str] = {}
    readable: list[Path] = []
    parts_dirs: list[Path] = []
    version = current_version(ws)
    empty = empty_schemas()
    base = ws.store / "registers" / version if version else None
    for name in REGISTERS:
        path = base / f"{name}.parquet" if base else None
        if path is not None and path.is_file():
            readable.append(path)
            sources[name] = f"SELECT * FROM read_parquet({_quote(path)})"
        else:
            sources[name] = _empty_select(empty[name])
    for path in sorted(ws.rules.glob("*.csv")):
        readable.append(path)
        sources[path.stem] = f"SELECT * FROM read_csv({_quote(path)}, header=true, all_varchar=false)"
    for name in RULE_TABLES:
        if not (ws.rules / f"{name}.csv").is_file():
            sources[name] = _empty_select(empty[name])
    store_files = {name: f"{name}.parquet" for name in STORE_VIEWS} | COLLECTION_VIEWS
    for name, rel in store_files.items():
        path = ws.store / rel
        if path.is_file():
            readable.append(path)
            sources[name] = f"SELECT * FROM read_parquet({_quote(path)})"
        elif name in empty:
            sources[name] = _empty_select(empty[name])
    for table in OUTPUT_TABLES:
        # One file per period, or the glob of its parts (pipeline.sealed): the parts'
        # directory becomes readable, only it (DuckDB expands the glob when queried).
        found = [Path(s) for p in sealed if (s := duckdb_source(ws.period_dir(p), table)) is not None]
        if found:
            for source in found:
                if source.name == PART_GLOB:
                    parts_dirs.append(source.parent)
                else:
                    readable.append(source)
            listing = ", ".join(_quote(source) for source in found)
            sources[table] = f"SELECT * FROM read_parquet([{listing}], union_by_name=true)"
        else:
            sources[table] = _empty_select(empty[table])
    return sources, readable, parts_dirs


def define_views(con: duckdb.DuckDBPyConnection, ws: Workspace,
                 org: str | None = None) -> tuple[list[Path], list[Path]]:
    """Create every view on ``con`` (limited to ``org`` if given); returns the files and part
    directories the views read (for :func:`_confine`)."""
    sources, readable, parts_dirs = view_sources(ws)
    for name, select in sources.items():
        con.execute(f"CREATE VIEW {_ident(name)} AS {select}")
    if org is None:
        return readable, parts_dirs
    known = con.execute("SELECT count(*) FROM organizations WHERE org_id = $org", {"org": org}).fetchone()
    if not known or not known[0]:
        raise BillingError(f"Организация «{org}» не найдена в реестре organizations (столбец org_id).")
    for scope, select in org_scope(sources, org).items():
        con.execute(f"CREATE VIEW {scope} AS {select}")
    for name, select in sources.items():
        columns = [d[0] for d in con.execute(f"SELECT * FROM {_ident(name)} LIMIT 0").description]
        where = org_predicate(name, columns, org)
        if where is not None:
            con.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS SELECT * FROM ({select}) WHERE {where}")
    return readable, parts_dirs


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --------------------------------------------------------------------------- one organization's rows
# `--org ORG` (reports, `billing sql`, `--db`): an organization sees the buildings it manages
# (buildings.manager_id) with every row of them, and its own services (supplier_id) wherever
# they are. Defined here once: the views of `billing sql` and the frames of `billing report
# osv|card` (:func:`limit_frame`) are limited by the same predicate.

#: Views kept whole under ``--org``: rule tables (every CSV in rules/), the organizations
#: register (names and requisites every document prints), the ГИС ЖКХ reference codes, and
#: the store tables of files and agents' transfers (no building or account in them).
WHOLE_VIEWS = frozenset({"organizations", "gis_nsi", "imported_files", "agent_settlements"})

#: The scope views ``--org`` adds (each lists keys the organization may see).
SCOPE_VIEWS = ("_org_managed", "_org_buildings", "_org_premises", "_org_accounts", "_org_meters",
               "_org_persons")


def org_scope(sources: dict[str, str], org: str) -> dict[str, str]:
    """The scope views of ``org`` over the registers' own SELECTs (not the limited views).

    ``_org_managed``: buildings it manages; ``_org_buildings``: those and the buildings it
    supplies (building_services); premises, accounts (with ``managed``), meters (of the
    premises or the buildings) and persons (residents of the accounts) of those buildings.
    """
    o = _literal(org)
    s = sources
    return {
        "_org_managed": f"SELECT DISTINCT building_id FROM ({s['buildings']}) WHERE manager_id = {o}",
        "_org_buildings": f"SELECT building_id FROM _org_managed UNION SELECT DISTINCT building_id FROM "
                          f"({s['building_services']}) WHERE supplier_id = {o}",
        "_org_premises": "SELECT premise_id, building_id IN (SELECT building_id FROM _org_managed) AS "
                         f"managed FROM ({s['premises']}) WHERE building_id IN "
                         "(SELECT building_id FROM _org_buildings)",
        "_org_accounts": "SELECT a.account_id, bool_or(p.managed) AS managed "
                         f"FROM ({s['accounts']}) a JOIN _org_premises p USING (premise_id) "
                         "GROUP BY a.account_id",
        "_org_meters": f"SELECT DISTINCT meter_id FROM ({s['meters']}) WHERE premise_id IN "
                       "(SELECT premise_id FROM _org_premises) OR building_id IN "
                       "(SELECT building_id FROM _org_buildings)",
        "_org_persons": f"SELECT DISTINCT person_id FROM ({s['residents']}) WHERE account_id IN "
                        "(SELECT account_id FROM _org_accounts)",
    }


def org_predicate(view: str, columns: Sequence[str], org: str) -> str | None:
    """The WHERE condition limiting ``view`` (with ``columns``) to ``org``; None: kept whole.

    * a row with ``supplier_id``: the organization's own (``supplier_id = ORG``), or a row
      of a building it manages (by ``building_id``, else ``account_id``, ``premise_id``,
      ``meter_id``); a row with no such key is only its own;
    * a row without ``supplier_id`` (accounts, premises, residents, meters, readings,
      payments, …): of a building it manages or supplies — by ``account_id`` (and
      ``person_id``), else ``meter_id``, ``premise_id``, ``building_id``, ``person_id``;
    * ``collection_events``: the events of the ``collection_cases`` it sees;
    * rule tables and :data:`WHOLE_VIEWS`: whole; any other view without those keys: no rows.

    >>> org_predicate("balances", ["period", "account_id", "supplier_id"], "VK")
    "(supplier_id = 'VK' OR account_id IN (SELECT account_id FROM _org_accounts WHERE managed))"
    >>> org_predicate("services", ["service_id", "name"], "VK") is None
    True
    """
    if view in WHOLE_VIEWS or view in RULE_TABLES:
        return None
    cols = set(columns)
    managed = {
        "building_id": "building_id IN (SELECT building_id FROM _org_managed)",
        "account_id": "account_id IN (SELECT account_id FROM _org_accounts WHERE managed)",
        "premise_id": "premise_id IN (SELECT premise_id FROM _org_premises WHERE managed)",
        "meter_id": "meter_id IN (SELECT m.meter_id FROM _org_meters m)",
    }
    if "supplier_id" in cols:
        own = f"supplier_id = {_literal(org)}"
        key: str | None = next((k for k in ("building_id", "account_id", "premise_id") if k in cols), None)
        return f"({own} OR {managed[key]})" if key else own
    scoped = {
        "account_id": "account_id IN (SELECT account_id FROM _org_accounts)",
        "meter_id": "meter_id IN (SELECT meter_id FROM _org_meters)",
        "premise_id": "premise_id IN (SELECT premise_id FROM _org_premises)",
        "building_id": "building_id IN (SELECT building_id FROM _org_buildings)",
        "person_id": "person_id IN (SELECT person_id FROM _org_persons)",
    }
    if "account_id" in cols and "person_id" in cols:  # benefits: the account may be empty
        return f"({scoped['account_id']} OR {scoped['person_id']})"
    key = next((k for k in scoped if k in cols), None)
    if key is not None:
        return scoped[key]
    if "case_id" in cols:  # collection_events: the events of the cases it sees
        return "case_id IN (SELECT case_id FROM collection_cases)"
    return "false"


def limit_frame(ws: Workspace, org: str, tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """``tables`` (view name → frame of that view's rows) limited to ``org`` by :func:`org_predicate`."""
    con = duckdb.connect(":memory:")
    try:
        define_views(con, ws, org)
        out = {}
        for name, frame in tables.items():
            where = org_predicate(name, frame.columns, org)
            if where is None:
                out[name] = frame
                continue
            con.register("_frame", frame.to_arrow())
            out[name] = con.sql(f"SELECT * FROM _frame WHERE {where}").pl()
            con.unregister("_frame")
        return out
    finally:
        con.close()


def empty_schemas() -> dict[str, pl.Schema]:
    """The columns of every view while it has no data: registers, rule tables, payments,
    imported files and the sealed tables (as :mod:`schemas.outputs` declares them)."""
    import polars as pl

    from pipeline.ingest.onec import SETTLEMENTS_SCHEMA
    from pipeline.ingest.payments import FILES_SCHEMA, STORE_SCHEMA

    schemas: dict[str, pl.Schema] = {
        spec.name: pl.Schema({"source_row": pl.Int64(), **{c.name: c.dtype for c in spec.columns}})
        for spec in (*REGISTERS.values(), *RULE_TABLES.values())
    }
    schemas["payments"] = STORE_SCHEMA
    schemas["imported_files"] = FILES_SCHEMA
    schemas["agent_settlements"] = SETTLEMENTS_SCHEMA
    try:  # the debt-collection store (pipeline.collect), empty views while it has no file
        from pipeline.collect.cases import CASE_SCHEMA, EVENT_SCHEMA
    except ImportError:  # pragma: no cover - a build without the collection stage
        pass
    else:
        schemas["collection_cases"] = CASE_SCHEMA
        schemas["collection_events"] = EVENT_SCHEMA
    schemas.update((name, empty_output(name).schema) for name in OUTPUT_TABLES)
    return schemas


def _sql_type(dtype: pl.DataType) -> str:
    """DuckDB's name of a polars type (the ones the views' files hold)."""
    import polars as pl

    if isinstance(dtype, pl.Decimal):
        return f"DECIMAL({dtype.precision or 38}, {dtype.scale})"
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        return f"{_sql_type(inner() if isinstance(inner, type) else inner)}[]"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    names = {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Int32: "INTEGER", pl.Int16: "SMALLINT",
             pl.Int8: "TINYINT", pl.Float64: "DOUBLE", pl.Float32: "FLOAT", pl.Boolean: "BOOLEAN",
             pl.Date: "DATE"}
    for polars_type, name in names.items():
        if dtype == polars_type:
            return name
    raise TypeError(f"no DuckDB type for {dtype}")


def _empty_select(schema: pl.Schema) -> str:
    """A typed SELECT without rows, reading no file (the view a table has before its data)."""
    columns = ", ".join(f"CAST(NULL AS {_sql_type(dtype)}) AS {_ident(column)}"
                        for column, dtype in schema.items())
    return f"SELECT {columns} WHERE false"


def _confine(con: duckdb.DuckDBPyConnection, readable: list[Path],
             parts_dirs: Sequence[Path] = ()) -> None:
    """Only the views' files and partitioned tables' part directories stay readable;
    no extension, no further setting."""
    listing = ", ".join(_quote(p) for p in readable)
    con.execute(f"SET allowed_paths = [{listing}]" if readable else "SET allowed_paths = []")
    # With a trailing separator: that directory, not every path beginning with its name.
    dirs = ", ".join("'" + str(d).replace("'", "''") + "/'" for d in parts_dirs)
    con.execute(f"SET allowed_directories = [{dirs}]")
    for setting in ("enable_external_access = false", "autoinstall_known_extensions = false",
                    "autoload_known_extensions = false", "lock_configuration = true"):
        con.execute(f"SET {setting}")


_EXPLAIN = re.compile(r"\s*explain\s+(?:analy[sz]e\s+)?(.*)", re.IGNORECASE | re.DOTALL)
_KEYWORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*([A-Za-z_]+)", re.DOTALL)


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but SELECT (or EXPLAIN of a SELECT), statement by statement."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as err:
        raise BillingError(f"Ошибка SQL: {err}") from err
    if not statements:
        raise BillingError("Пустой запрос SQL: укажите SELECT …")
    for statement in statements:
        if statement.type == duckdb.StatementType.SELECT:
            continue
        if statement.type == duckdb.StatementType.EXPLAIN:
            inner = _EXPLAIN.match(statement.query)
            try:
                explained = con.extract_statements(inner.group(1)) if inner else []
            except duckdb.Error:
                explained = []
            if len(explained) == 1 and explained[0].type == duckdb.StatementType.SELECT:
                continue
            raise BillingError("Команда SQL «EXPLAIN» разрешена только для SELECT: billing sql "
                               "только читает данные.")
        word = _KEYWORD.match(statement.query)
        keyword = word.group(1).upper() if word else ""
        if keyword in ("", "WITH"):  # WITH … INSERT: name what it does
            keyword = statement.type.name
        raise BillingError(f"Команда SQL «{keyword}» запрещена: billing sql только читает данные "
                           "(разрешён SELECT).")


#: Table functions a query limited to one organization may call (they read no file).
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})


def check_views_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Under ``--org``, a query reads views only: no table function that reads files
    (``read_parquet``, ``read_csv``, ``glob``, ``query`` …) and no file named in FROM, so
    the organization's limit cannot be stepped around by naming a workspace file."""
    import json

    for statement in con.extract_statements(query):
        raw = con.execute("SELECT json_serialize_sql($q)", {"q": statement.query}).fetchall()[0][0]
        tree = json.loads(raw)
        stack: list[object] = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(node)
                continue
            if not isinstance(node, dict):
                continue
            kind = node.get("type")
            if kind == "TABLE_FUNCTION":
                function = node.get("function", {})
                name = function.get("function_name", "") if isinstance(function, dict) else ""
                if name.lower() not in SAFE_TABLE_FUNCTIONS:
                    raise BillingError(f"Функция «{name}» недоступна при --org: запрос организации читает "
                                       "только представления.")
            elif kind == "BASE_TABLE" and any(c in str(node.get("table_name", "")) for c in "/\\."):
                raise BillingError(f"Файл «{node.get('table_name')}» недоступен при --org: запрос "
                                   "организации читает только представления.")
            stack.extend(node.values())


#: Rows ``billing sql --format table`` prints (the rest: ``--format csv|xlsx --out FILE``).
TABLE_ROWS = 200


def run_sql(ws: Workspace, query: str, fmt: str = "table", org: str | None = None) -> str:
    """Run a read-only query and format the result (``table``, ``csv`` or ``json``)."""
    frame = query_frame(ws, query, org)
    if frame is None:
        return "OK"
    return format_frame(frame, fmt)


def format_frame(frame: pl.DataFrame, fmt: str) -> str:
    """A query's result as text: ``table`` (the first :data:`TABLE_ROWS`), ``csv`` or ``json``."""
    if fmt == "csv":
        return frame.write_csv()
    if fmt == "json":
        return frame.write_json()
    from pipeline.tables import render_table

    return render_table(frame, limit=TABLE_ROWS, max_width=60)


def query_frame(ws: Workspace, query: str, org: str | None = None,
                params: dict[str, object] | None = None) -> pl.DataFrame | None:
    """The result of a read-only query (None for a statement without rows)."""
    with duckdb.connect(":memory:") as parser:  # before anything is opened or verified
        check_read_only(parser, query)
        if org is not None:
            check_views_only(parser, query)
    con = connect(ws, org)
    try:
        return run_checked(con, query, params)
    finally:
        con.close()


def run_checked(con: duckdb.DuckDBPyConnection, query: str,
                params: dict[str, object] | None = None) -> pl.DataFrame | None:
    """Run an already checked query on a confined connection; Russian errors."""
    try:
        rel = con.sql(query, params=params) if params else con.sql(query)
    except duckdb.PermissionException as err:
        named = re.search(r'"([^"]+)"', str(err))
        what = f"к файлу «{named.group(1)}»" if named else "к файлам"
        raise BillingError(
            f"Доступ {what} запрещён: billing sql читает только представления рабочего "
            "пространства (реестры, правила, платежи, закрытые периоды)."
        ) from err
    except duckdb.Error as err:
        raise BillingError(f"Ошибка SQL: {err}") from err
    if rel is None:
        return None
    try:
        return rel.pl()
    except duckdb.Error as err:
        raise BillingError(f"Ошибка SQL: {err}") from err


# --------------------------------------------------------------------------- the interactive shell

SHELL_HELP = """\
Запросы SQL (DuckDB) к представлениям рабочего пространства; запрос кончается «;».
  .tables        список представлений
  .schema ИМЯ    столбцы представления
  .help          эта справка
  .quit, .exit   выход (или Ctrl+D)
Разрешены только SELECT и EXPLAIN SELECT: оболочка только читает данные."""
PROMPT = "billing> "
MORE = "     ..> "


def view_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The views a user queries (without the ``--org`` scope views)."""
    rows = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                       "ORDER BY view_name").fetchall()
    return [r[0] for r in rows if not r[0].startswith("_org_")]


def shell(ws: Workspace, org: str | None, read_line: Callable[[str], str | None],
          write: Callable[[str], None]) -> int:
    """The interactive ``billing sql``: statements end with ``;``, dot commands, read-only.

    ``read_line(prompt)`` gives the next line (None at the end of input); ``write`` prints.
    Returns how many statements failed (the shell goes on after an error).
    """
    con = connect(ws, org)
    failed = 0
    scope = f" (организация {org})" if org else ""
    write(f"billing sql{scope}: представлений {len(view_names(con))}. Справка: .help, выход: .quit")
    buffer: list[str] = []
    try:
        while True:
            line = read_line(MORE if buffer else PROMPT)
            if line is None:
                break
            stripped = line.strip()
            if not buffer and stripped.startswith("."):
                word, _, arg = stripped.partition(" ")
                if word in (".quit", ".exit", ".q"):
                    break
                if word == ".help":
                    write(SHELL_HELP)
                elif word == ".tables":
                    write("  ".join(view_names(con)))
                elif word == ".schema" and arg.strip() in view_names(con):
                    rows = con.execute(f"DESCRIBE {_ident(arg.strip())}").fetchall()
                    write("\n".join(f"{r[0]}  {r[1]}" for r in rows))
                elif word == ".schema":
                    failed += 1
                    write(f"Нет представления «{arg.strip()}»: .tables — список представлений.")
                else:
                    failed += 1
                    write(f"Неизвестная команда «{stripped}»: .help — список команд.")
                continue
            if not stripped and not buffer:
                continue
            buffer.append(line)
            text = "\n".join(buffer)
            if not text.rstrip().endswith(";"):
                continue
            buffer.clear()
            try:
                check_read_only(con, text)
                if org is not None:
                    check_views_only(con, text)
                frame = run_checked(con, text)
                write("OK" if frame is None else format_frame(frame, "table"))
            except BillingError as err:
                failed += 1
                write(str(err))
    finally:
        con.close()
    return failed


# --------------------------------------------------------------------------- a database file for analysts

def write_database(ws: Workspace, path: Path, org: str | None = None) -> int:
    """A DuckDB file at ``path`` whose views read the workspace's Parquet by absolute path.

    An analyst opens it in DBeaver, Jupyter or Superset; the sealed periods are those of
    the moment it is written (write it again after a close). With ``org`` the views are
    limited as in ``billing sql --org``. Returns the number of views. Written beside and
    renamed, so a reader never sees half a file.
    """
    import os

    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(scratch))
        try:
            define_views(con, ws, org)
            count = len(view_names(con))
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
        Path(str(scratch) + ".wal").unlink(missing_ok=True)
    return count
