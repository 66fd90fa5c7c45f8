"""The workspace (HOME) on disk, its settings, atomic writes and the audit log.

Layout (``CONTRACT.md``)::

    HOME/rules/ registers/ inbox/ store/ rejects/ periods/YYYY-MM/ audit/

Every write that other commands read goes through :func:`atomic_write_bytes`,
:func:`write_parquet_atomic` or a directory rename, so a kill at any moment
leaves either the old state or the new one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pwd
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.errors import BillingError as BillingError
from pipeline.settings import Lock, Settings, load_section

if TYPE_CHECKING:  # polars costs ~0.1 s to import: `billing --help` must not pay it
    import polars as pl

F = TypeVar("F", bound=Callable[..., Any])

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

[ingest]
# Строка реестра отклонена, а запись с таким ключом есть в прошлой загрузке (квартира
# указана дважды, у жильца испорчена дата): без защиты запись пропала бы из реестров,
# и следующее закрытие сторнировало бы все её начисления.
# "refuse" — загрузка отменяется целиком: хранилище не меняется, отчёт — в rejects/;
# "keep_last" — в новую загрузку переносится прежняя версия записи, а в отчёте у строки
#   сказано «оставлена прежняя версия записи».
on_rejected_existing = "refuse"
# Загрузка отменяется, если исчезает больше этой доли лицевых счетов, помещений или
# проживающих прошлой загрузки (удалены из файла или отклонены): так ловятся потерянные
# ведущие нули в номерах и обрезанные файлы. 0.05 — 5 %: в реестре меньше 20 записей
# это любое удаление. Намеренное удаление: billing ingest --accept-removals.
max_removed_share = 0.05

[close]
# Сколько лицевых счетов в одной части закрытия (части собираются из целых домов).
# Память закрытия растёт с размером части, а не региона; регион меньше этого числа
# закрывается одной частью. Подробнее: docs/scaling.md.
partition_accounts = 250000
# Выгрузки сразу после закрытия (как billing export ВИД --period П): banks, post, gis, welfare.
# Неудавшаяся выгрузка закрытие не отменяет: о ней сказано, её можно повторить вручную.
exports = []

[migration]
# Переход из прежней системы (docs/migration.md). Расхождение сверки до стольких копеек
# (по лицевому счёту, поставщику и услуге) не считается расхождением; при большем первое
# закрытие не начнётся, пока расхождение не объяснено или не принято с причиной.
tolerance_kop = 0
# Годовые корректировки (отопление п.42(1), КР на СОИ) за год, закрытый или перенесённый
# не целиком: skip — не делать (часть года — не тот год, что сверяет закон), covered —
# корректировать только закрытые месяцы.
partial_years = "skip"
# Перенесённые месяцы считаются частями из целых домов примерно по столько лицевых счетов
# (память растёт с частью, а не с регионом), частями одновременно в стольких процессах
# (0 — по числу ядер).
partition_accounts = 25000
workers = 0

[receipts]
# Сколько процессов рендерит квитанции (0 — по числу ядер).
workers = 0
# Пачки для печати: один PDF на дом.
print_batches = true
# Куда платить (раздел 2 ЕПД, QR-код по ГОСТ Р 56042): payees — каждому получателю своя часть
# с его реквизитами, суммой и QR-кодом; agent — одна часть и один QR-код на всю сумму
# платёжному агенту (ЕИРЦ), код которого указан в agent (org_id из реестра организаций).
pay_to = "payees"
agent = ""
# Льготы и субсидии из ответа соцзащиты (billing import welfare) в графе льгот ЕПД:
# info — справочно (ЕДК выплачивается получателю), discount — вычесть из суммы к оплате.
benefits = "info"
# Отрывная часть: true — «Куда платить» печатается извещением под линией отрыва внизу лицевой
# стороны (плательщик, сумма к оплате, подпись), где в регионе так принято.
tear_off = false

[smtp]
# Почтовый сервер для «billing receipts send» (квитанции по e-mail тем, кто согласился:
# accounts.delivery = email или email_only). Пароль в файл не пишется: он берётся из
# переменной окружения, названной в password_env (если задан user).
host = ""
port = 587
# starttls (порт 587), ssl (порт 465) или none (только для сервера на этой же машине).
security = "starttls"
user = ""
password_env = "BILLING_SMTP_PASSWORD"
# Адрес и имя отправителя, например "epd@eirc.ru" и "ЕИРЦ г. Энска".
sender = ""
sender_name = ""
# Файл сертификатов, если сервер подписан своим удостоверяющим центром (иначе — системные).
ca_file = ""
timeout_seconds = 30
# Сколько раз пробовать одно письмо (по одному разу за запуск команды), прежде чем сдаться.
max_attempts = 5

[lock]
# Команды, которые меняют рабочее пространство (ingest, close, импорт платежей), выполняются
# по одной; следующая ждёт освобождения не дольше стольких секунд, затем сообщает, кто занял.
wait_seconds = 900

[schedule]
# Ночной импорт платежей (billing serve).
nightly_import_cron = "30 2 * * *"
timezone = "Europe/Moscow"

[inbox]
# Ночной импорт берёт файл из inbox/ только записанным до конца. Неполный файл остаётся
# в inbox/ нетронутым (в отчёте — «ожидает» с причиной) и проверяется при следующем запуске.
# Правило "settle": файл считается записанным, если не менялся столько секунд.
settle_seconds = 120

[inbox.complete]
# Как понять, что файл записан до конца, — по формату (sber, vtb, csv, 1c) или по шаблону
# имени файла, например "post-*.csv" = "done" (шаблон важнее формата):
#   "footer" — на месте итоговая строка реестра «=количество;сумма;…» (sber и vtb)
#              или «КонецФайла» выписки 1С (1c);
#   "settle" — файл не менялся settle_seconds секунд;
#   "done"   — рядом лежит файл-метка ИМЯ.done (например, payments.csv.done).
# Метка ИМЯ.done, если агент её кладёт, при правиле "settle" снимает ожидание; она уходит
# в архив вместе со своим файлом. Проверка итоговой строки и обрыва последней строки CSV
# выполняется всегда.
sber = "footer"
vtb = "footer"
csv = "settle"
1c = "footer"
"""


class IncompleteFileError(BillingError):
    """A file refused because it is not complete yet (cut mid-line, no footer): retried later."""


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

    @property
    def settings_path(self) -> Path:
        return self.home / "settings.toml"

    def typed_settings(self) -> Settings:
        """All of ``settings.toml``, parsed and checked (:class:`pipeline.settings.Settings`)."""
        return Settings.load(self.settings_path)

    def sealed_periods(self) -> list[str]:
        """Periods with a manifest, oldest first."""
        if not self.periods.is_dir():
            return []
        return sorted(
            p.name for p in self.periods.iterdir()
            # A ".NAME.<uuid>.tmp" staging directory is not sealed, even once its manifest is written.
            if not p.name.startswith(".") and (p / "manifest.json").is_file()
        )


def default_home() -> Path:
    """The workspace of a command without ``--home``: ``BILLING_HOME``, else ``./billing-home``."""
    return Path(os.environ.get("BILLING_HOME") or "./billing-home")


def init_workspace(home: Path) -> Workspace:
    """Create an empty workspace with the default rules (``billing init``)."""
    ws = Workspace(home)
    if ws.exists():
        raise BillingError(f"Рабочее пространство уже существует: {home}")
    if home.exists() and any(home.iterdir()):
        raise BillingError(f"Каталог {home} не пуст: выберите пустой или новый каталог.")
    # Personal data lives here (names, birth dates, receipts): owner only.
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
    for sub in SUBDIRS:
        (home / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    defaults = resources.files("rules") / "defaults"
    for entry in defaults.iterdir():
        if entry.name.endswith((".csv", ".toml")):
            atomic_write_bytes(ws.rules / entry.name, entry.read_bytes())
    # A header-only template per register (docs/registers.md describes the columns): an empty
    # optional register loads as empty, an empty required one is named by billing ingest.
    from pipeline.docs import templates

    for name, text in templates().items():
        atomic_write_bytes(ws.registers / name, text.encode())
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


def write_parquet_atomic(frame: pl.DataFrame, path: Path, row_group_size: int | None = None,
                         compression_level: int | None = None) -> None:
    """``row_group_size`` fixes the file's layout whatever the frame's chunks (else one group a chunk);
    ``compression_level``: zstd's (None: the writer's default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    frame.write_parquet(tmp, compression="zstd", compression_level=compression_level, statistics=True,
                        row_group_size=row_group_size)
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
    the line being written. The user is the OS account running the command (uid
    and its name), never an environment variable such as ``LOGNAME``.
    """
    ws.audit.mkdir(parents=True, exist_ok=True, mode=0o700)
    uid, name = os_user()
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": name,
        "uid": uid,
        "command": command,
        **details,
    }
    line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode()
    fd = os.open(ws.audit / "log.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def os_user() -> tuple[int, str]:
    """The effective OS account: uid and its name from the password database."""
    uid = os.geteuid()
    try:
        return uid, pwd.getpwuid(uid).pw_name
    except KeyError:
        return uid, str(uid)


# --- The workspace lock -----------------------------------------------------------------

LOCK_FILE = ".lock"

#: Locks this process holds: home → (descriptor, depth). Re-entrant, so a command that
#: runs others (the demo runs ingest, imports and closes) takes the lock once.
_HELD: dict[Path, list[int]] = {}
# A forked child is another command: it takes the lock anew (and waits for its parent).
os.register_at_fork(after_in_child=_HELD.clear)


def _holder_text(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 65536).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "другая команда"
    since = info.get("since", "")
    with suppress(TypeError, ValueError):
        since = datetime.fromisoformat(since).astimezone().strftime("%d.%m.%Y %H:%M:%S")
    return (f"«billing {info.get('command', '?')}» (процесс {info.get('pid', '?')}, "
            f"пользователь {info.get('user', '?')}) с {since}")


@contextmanager
def workspace_lock(ws: Workspace, command: str, wait_seconds: float | None = None,
                   say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the workspace's exclusive lock (an OS file lock on ``HOME/.lock``) for a writer.

    Commands that change the workspace (ingest, close, payment import and match)
    run one at a time: a second one waits up to ``wait_seconds`` (default: env
    ``BILLING_LOCK_WAIT``, else settings.toml ``[lock] wait_seconds``), telling
    once who holds the lock and since when, then
    stops with that message. The kernel drops the lock when its process dies, so a
    killed command never leaves it behind. Readers (``sql``, ``explain``) never
    take it: they read sealed periods and complete snapshots only.

    Once acquired, scratch files and folders left by a killed writer (``.*.tmp``
    in ``periods/`` and ``store/``) are removed: under the lock nobody else owns them.
    """
    ws.require()
    home = ws.home.resolve()
    held = _HELD.get(home)
    if held is not None:
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    if wait_seconds is None:
        value: Any = os.environ.get("BILLING_LOCK_WAIT")
        if value is not None:
            try:
                value = float(value)
            except ValueError:
                raise BillingError(f"BILLING_LOCK_WAIT={value!r}: нужно число секунд") from None
        else:
            value = load_section(ws.settings_path, Lock).wait_seconds
        wait_seconds = float(value)
    tell = say or (lambda text: print(text, file=sys.stderr, flush=True))
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder_text(fd)
                if time.monotonic() >= deadline:
                    raise BillingError(
                        f"Рабочее пространство {home} занято: выполняется {holder}. "
                        "Дождитесь её окончания и повторите команду.") from None
                if not told:
                    tell(f"Рабочее пространство занято: выполняется {holder}; жду (не дольше "
                         f"{wait_seconds:g} с)…")
                    told = True
                time.sleep(0.2)
        uid, name = os_user()
        info = {"command": command, "pid": os.getpid(), "user": name, "uid": uid,
                "since": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info, ensure_ascii=False).encode(), 0)
        _HELD[home] = [fd, 1]
        try:
            remove_stale_scratch(ws)
            yield
        finally:
            del _HELD[home]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holds_lock(ws: Workspace) -> bool:
    """Whether this process holds the workspace lock."""
    return ws.home.resolve() in _HELD


def locked(command: str) -> Callable[[F], F]:
    """Decorator: run a function whose first argument is the workspace under its lock."""
    import functools

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(ws: Workspace, *args: Any, **kwargs: Any) -> Any:
            with workspace_lock(ws, command):
                return fn(ws, *args, **kwargs)
        return inner  # type: ignore[return-value]
    return wrap


def remove_stale_scratch(ws: Workspace) -> list[Path]:
    """Remove the scratch left by a killed writer: ``.NAME.<uuid>.tmp`` files and folders.

    Only safe under the workspace lock (nobody else writes then).
    """
    removed: list[Path] = []
    for parent in (ws.periods, ws.store, ws.store / "registers", ws.rejects):
        if not parent.is_dir():
            continue
        for path in parent.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed
