"""The workspace (HOME) on disk, its settings, atomic writes and the audit log.

Layout (``CONTRACT.md``)::

    HOME/rules/ registers/ inbox/ store/ rejects/ periods/YYYY-MM/ audit/

Every write that other commands read goes through :func:`atomic_write_bytes`,
:func:`write_parquet_atomic` or a directory rename, so a kill at any moment
leaves either the old state or the new one.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

SUBDIRS = ("rules", "registers", "inbox", "store", "rejects", "periods", "audit")

DEFAULT_SETTINGS = """\
# Настройки рабочего пространства биллинга.

[readings]
# Окно приёма показаний (п.31, п.34 Правил 354): показания, снятые по этот день
# месяца включительно, относятся к этому месяцу; позже — к следующему.
window_start_day = 15
window_end_day = 25
# Расход больше среднего по прибору во столько раз не принимается до подтверждения
# (столбец confirmed в readings); 0 — не проверять.
spike_multiple = 5
# Когда показания приходят после месяцев по нормативу (после трёх месяцев по среднему),
# объём, уже начисленный по нормативу, вычитается так же, как средний (п.61; практика).
settle_norm_months = true

[heating]
# Как платят за отопление (ПП 603/2016, выбор региона):
# "even" — равномерно весь год: без ОДПУ по нормативу на м² (формула 2), с ОДПУ — по
#   среднемесячному объёму тепла за прошлый год с делением по площади (формула 3(1)) и
#   корректировкой по фактическим показаниям ОДПУ в месяце true_up_month следующего года;
# "in_season" — только в отопительный сезон, по ОДПУ дома с делением по площади
#   (формула 3), а без ОДПУ — по нормативу.
payment = "even"
season_months = [1, 2, 3, 4, 5, 10, 11, 12]
# Месяц годовой корректировки при оплате равномерно (I квартал; на практике — январь).
true_up_month = 1

[recalculation]
# Сколько закрытых месяцев пересчитывать, если изменились реестры или правила.
horizon_months = 36

[receipts]
# Сколько процессов рендерит квитанции (0 — по числу ядер).
workers = 0
# Пачки для печати: один PDF на дом.
print_batches = true

[schedule]
# Ночной импорт платежей (billing serve).
nightly_import_cron = "30 2 * * *"
timezone = "Europe/Moscow"
"""


class BillingError(Exception):
    """A business error: the CLI prints the message in Russian and exits with 1."""


@dataclass(frozen=True)
class Workspace:
    """A billing workspace rooted at ``home``."""

    home: Path

    @property
    def rules(self) -> Path:
        return self.home / "rules"

    @property
    def registers(self) -> Path:
        return self.home / "registers"

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def store(self) -> Path:
        return self.home / "store"

    @property
    def rejects(self) -> Path:
        return self.home / "rejects"

    @property
    def periods(self) -> Path:
        return self.home / "periods"

    @property
    def audit(self) -> Path:
        return self.home / "audit"

    def period_dir(self, period: str) -> Path:
        return self.periods / period

    def exists(self) -> bool:
        return (self.home / "settings.toml").is_file() and self.rules.is_dir()

    def require(self) -> Workspace:
        if not self.exists():
            raise BillingError(
                f"Рабочее пространство не найдено: {self.home}. "
                f"Создайте его командой «billing init {self.home}» или укажите --home."
            )
        return self

    def settings(self) -> dict[str, Any]:
        path = self.home / "settings.toml"
        try:
            with open(path, "rb") as fh:
                return tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise BillingError(f"{path}: файл настроек не читается: {err}") from err

    def sealed_periods(self) -> list[str]:
        """Periods with a manifest, oldest first."""
        if not self.periods.is_dir():
            return []
        return sorted(
            p.name for p in self.periods.iterdir() if (p / "manifest.json").is_file()
        )


def init_workspace(home: Path) -> Workspace:
    """Create an empty workspace with the default rules (``billing init``)."""
    ws = Workspace(home)
    if ws.exists():
        raise BillingError(f"Рабочее пространство уже существует: {home}")
    if home.exists() and any(home.iterdir()):
        raise BillingError(f"Каталог {home} не пуст: выберите пустой или новый каталог.")
    for sub in SUBDIRS:
        (home / sub).mkdir(parents=True, exist_ok=True)
    defaults = resources.files("rules") / "defaults"
    for entry in defaults.iterdir():
        if entry.name.endswith((".csv", ".toml")):
            atomic_write_bytes(ws.rules / entry.name, entry.read_bytes())
    atomic_write_bytes(home / "settings.toml", DEFAULT_SETTINGS.encode())
    return ws


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so readers see either the old content or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_parquet_atomic(frame: pl.DataFrame, path: Path, row_group_size: int | None = None) -> None:
    """``row_group_size`` fixes the file's layout whatever the frame's chunks (else one group a chunk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    frame.write_parquet(tmp, compression="zstd", statistics=True, row_group_size=row_group_size)
    os.replace(tmp, path)


@contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A scratch directory next to ``final``, renamed onto it on success.

    The rename is atomic and refuses an existing target, so a sealed period is
    never overwritten; on any error the scratch directory is removed.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            raise BillingError(f"{final} уже существует и не будет перезаписан.")
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def audit(ws: Workspace, command: str, **details: Any) -> None:
    """Append one line to ``audit/log.jsonl``: who, when, what, inputs, outputs.

    A line is written with a single ``write`` on an ``O_APPEND`` descriptor and
    fsynced, so concurrent commands do not interleave and a kill loses at most
    the line being written.
    """
    ws.audit.mkdir(parents=True, exist_ok=True)
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": _user(),
        "command": command,
        **details,
    }
    line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode()
    fd = os.open(ws.audit / "log.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
