"""The command line in Russian: one parser of dates and periods, usage errors and help chrome.

Dates on the command line (``statement --until``, ``penalty --until``, ``--payment
DATE=RUB``, ``report --from/--to``…) are ``ГГГГ-ММ-ДД`` or ``ДД.ММ.ГГГГ`` — the form
of the registers and the form a bookkeeper writes. Periods are ``ГГГГ-ММ`` or
``ММ.ГГГГ`` and are normalised to ``ГГГГ-ММ`` before anything else sees them (file
names, manifests and the audit log keep one spelling). A bad value is a usage error
(exit 2) with a Russian message naming the option.

Typer (and the Click it vendors) writes its own words in English: "Usage:",
"Options", "[required]", "Show this message and exit.", "Missing option", "No such
option". :func:`install_russian_help` replaces them in the help pages, and
:func:`usage_message` turns a usage error into Russian for ``pipeline.cli.main``.
The patches touch typer 0.29's classes (pinned in ``pyproject.toml``); each is
guarded, so another version degrades to English words, not to a crash.

Only ``typer`` is imported here: ``billing --help`` must not load polars.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import typer

DAY_FORMS = "ГГГГ-ММ-ДД или ДД.ММ.ГГГГ"
PERIOD_FORMS = "ГГГГ-ММ или ММ.ГГГГ"
DAY_METAVAR = "ДАТА"
PERIOD_METAVAR = "ПЕРИОД"

_PERIOD_ISO = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_PERIOD_RU = re.compile(r"^(0[1-9]|1[0-2])\.(\d{4})$")


def parse_day(text: str) -> date:
    """``ГГГГ-ММ-ДД`` or ``ДД.ММ.ГГГГ`` → date; ``ValueError`` with a Russian message.

    >>> parse_day("2026-11-30") == parse_day("30.11.2026") == date(2026, 11, 30)
    True
    """
    value = text.strip()
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"дата должна быть {DAY_FORMS}, получено «{text}»")


def parse_period(text: str) -> str:
    """``ГГГГ-ММ`` or ``ММ.ГГГГ`` → ``ГГГГ-ММ``; ``ValueError`` with a Russian message.

    >>> parse_period("11.2026"), parse_period("2026-11")
    ('2026-11', '2026-11')
    """
    value = text.strip()
    if m := _PERIOD_ISO.match(value):
        return f"{m.group(1)}-{m.group(2)}"
    if m := _PERIOD_RU.match(value):
        return f"{m.group(2)}-{m.group(1)}"
    raise ValueError(f"период должен быть {PERIOD_FORMS}, получено «{text}»")


def day_option(text: str, option: str) -> date:
    """:func:`parse_day` for an option: a bad value is a usage error (exit 2)."""
    try:
        return parse_day(text)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=option) from None


def period_option(text: str, option: str) -> str:
    """:func:`parse_period` for an option: a bad value is a usage error (exit 2)."""
    try:
        return parse_period(text)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=option) from None


# --------------------------------------------------------------------------- usage errors

_MESSAGES = (
    (re.compile(r"Input should be a valid integer.*", re.S), "нужно целое число"),
    (re.compile(r"Input should be a valid number.*", re.S), "нужно число"),
    (re.compile(r"Input should be greater than or equal to (\S+)"), r"должно быть не меньше \1"),
    (re.compile(r"Input should be less than or equal to (\S+)"), r"должно быть не больше \1"),
    (re.compile(r"Input should be greater than (\S+)"), r"должно быть больше \1"),
    (re.compile(r"Input should be less than (\S+)"), r"должно быть меньше \1"),
    (re.compile(r"Option '?([^' ]+)'? requires an argument\.?"), r"у параметра \1 нет значения"),
    (re.compile(r"Got unexpected extra arguments? \((.*)\)"), r"лишние аргументы: \1"),
    (re.compile(r"No such command '(.*)'\.?"), r"неизвестная команда «\1»"),
    (re.compile(r"Missing command\.?"), "не указана команда"),
)


def _russian(message: str) -> str:
    for pattern, text in _MESSAGES:
        if pattern.fullmatch(message.strip()):
            return pattern.sub(text, message.strip())
    return message


def _param_name(err: Any) -> str:
    hint = getattr(err, "param_hint", None)
    if hint:
        return hint if isinstance(hint, str) else " / ".join(hint)
    param = getattr(err, "param", None)
    if param is None:
        return ""
    opts = [o for o in getattr(param, "opts", []) if o.startswith("-")]
    return " / ".join(opts) if opts else (param.metavar or param.name or "").upper()


def usage_message(err: Exception) -> str:
    """The Russian text of a usage error (bad, missing or unknown parameter, extra argument).

    >>> usage_message(typer.BadParameter("нужно ГГГГ-ММ", param_hint="--period"))
    'недопустимое значение --period: нужно ГГГГ-ММ'
    """
    from typer._click import exceptions as ex

    if isinstance(err, ex.MissingParameter):
        param = err.param
        kind = "аргумент" if param is not None and param.param_type_name == "argument" else "параметр"
        return f"не указан обязательный {kind} {_param_name(err)}".rstrip()
    if isinstance(err, ex.BadParameter):
        name = _param_name(err)
        return f"недопустимое значение {name}: {_russian(err.message)}" if name else \
            f"недопустимое значение: {_russian(err.message)}"
    if isinstance(err, ex.NoSuchOption):
        text = f"неизвестный параметр {err.option_name}"
        if err.possibilities:
            text += f" (может быть, {', '.join(sorted(err.possibilities))}?)"
        return text
    return _russian(getattr(err, "message", str(err)))


def usage_report(err: Exception) -> str:
    """What ``billing`` prints for a usage error: the reason, the call form and where help is."""
    ctx = getattr(err, "ctx", None)
    lines = [f"Ошибка в команде: {usage_message(err)}"]
    if ctx is not None:
        lines.append(ctx.get_usage())
        lines.append(f"Справка: {ctx.command_path} --help")
    return "\n".join(lines)


# --------------------------------------------------------------------------- help pages

HELP_OPTION_TEXT = "Показать эту справку и выйти."
OPTIONS_METAVAR = "[ПАРАМЕТРЫ]"
SUBCOMMAND_METAVAR = "КОМАНДА [АРГУМЕНТЫ]..."
_WORDS = {
    "Options": "Параметры", "Arguments": "Аргументы", "Commands": "Команды",
    "default: {default}": "по умолчанию: {default}", "required": "обязательно",
    "Aborted!": "Прервано.",
}
_RICH = {
    "ARGUMENTS_PANEL_TITLE": "Аргументы", "OPTIONS_PANEL_TITLE": "Параметры",
    "COMMANDS_PANEL_TITLE": "Команды", "ERRORS_PANEL_TITLE": "Ошибка",
    "REQUIRED_LONG_STRING": "[обязательно]", "DEFAULT_STRING": "[по умолчанию: {}]",
    "ENVVAR_STRING": "[переменная окружения: {}]", "DEPRECATED_STRING": "(устарело) ",
    "ABORTED_TEXT": "Прервано.", "RICH_HELP": "Справка: [blue]'{command_path} {help_option}'[/]",
}
_TYPES = {"str": "ТЕКСТ", "int": "ЧИСЛО", "int range": "ЧИСЛО", "float": "ЧИСЛО", "path": "ПУТЬ",
          "file": "ФАЙЛ", "directory": "КАТАЛОГ", "bool": ""}
_installed: list[bool] = []


def _rich_words() -> None:
    from typer import rich_utils

    for name, text in _RICH.items():
        if hasattr(rich_utils, name):
            setattr(rich_utils, name, text)


def install_russian_help() -> None:
    """Russian words in typer's help pages (idempotent; costs no import until help is shown)."""
    if _installed:
        return
    _installed.append(True)
    from typer import _click, core

    command = _click.core.Command
    if hasattr(command, "get_help_option"):
        get_help_option = command.get_help_option

        def russian_help_option(self: Any, ctx: Any) -> Any:
            option = get_help_option(self, ctx)
            if option is not None:
                option.help = HELP_OPTION_TEXT
            return option

        command.get_help_option = russian_help_option  # type: ignore[method-assign]
    formatter = _click.formatting.HelpFormatter
    write_usage = formatter.write_usage

    def russian_usage(self: Any, prog: str, args: str = "", prefix: str | None = None) -> None:
        write_usage(self, prog, args, "Вызов: " if prefix is None else prefix)

    formatter.write_usage = russian_usage  # type: ignore[method-assign]
    parameter = getattr(core, "_TyperParameter", None)
    if parameter is not None and hasattr(parameter, "display_type"):
        display_type = parameter.display_type

        def russian_type(self: Any, ctx: Any) -> str:
            if getattr(self, "param_type_name", "") == "argument" and self.metavar:
                return ""  # the metavar says it already (СЧЁТ, ФАЙЛ)
            label = display_type(self, ctx)
            inner = label[1:-1] if label.startswith("<") and label.endswith(">") else None
            return _TYPES.get(inner, label) if inner is not None else label

        parameter.display_type = russian_type
    if hasattr(core, "_"):
        core._ = lambda message: _WORDS.get(message, message)
    for cls in (core.TyperCommand, core.TyperGroup):
        format_help = cls.format_help

        def russian_format_help(self: Any, ctx: Any, out: Any, _format: Any = format_help) -> None:
            if core.HAS_RICH and getattr(self, "rich_markup_mode", None) is not None:
                _rich_words()
            _format(self, ctx, out)

        cls.format_help = russian_format_help  # type: ignore[method-assign,assignment]
