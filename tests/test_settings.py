"""settings.toml as one typed value (pipeline/settings.py): the defaults, defined once, and the checks."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from pipeline.calc.charges import HeatingPolicy
from pipeline.ingest.registers import IngestPolicy
from pipeline.settings import (
    Heating,
    Inbox,
    Ingest,
    Lock,
    Readings,
    Receipts,
    Schedule,
    Settings,
    load_section,
)
from pipeline.workspace import DEFAULT_SETTINGS, BillingError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_text_billing_init_writes_states_exactly_the_dataclass_defaults(tmp_path: Path) -> None:
    assert Settings.load(write(tmp_path, DEFAULT_SETTINGS)) == Settings()
    # ...and it names every key of every section (nothing is only in the code).
    text = tomllib.loads(DEFAULT_SETTINGS)
    for f in fields(Settings):
        assert set(text[f.name]) == {k.name for k in fields(getattr(Settings(), f.name))}, f.name


def test_an_empty_file_gives_the_same_defaults(tmp_path: Path) -> None:
    assert Settings.load(write(tmp_path, "")) == Settings()
    assert Settings.load(write(tmp_path, "# только комментарий\n")) == Settings()


def test_the_defaults_of_the_stages_are_the_settings_defaults() -> None:
    assert Settings().readings.spike_multiple == 5  # one default: was 0 in the close, 5 in init
    policy = HeatingPolicy()
    assert (policy.payment, policy.season_months, policy.true_up_month) == (
        Heating.payment, Heating.season_months, Heating.true_up_month)
    assert (IngestPolicy().on_rejected_existing, IngestPolicy().max_removed_share) == (
        Ingest.on_rejected_existing, Ingest.max_removed_share)


def test_values_are_typed(tmp_path: Path) -> None:
    path = write(tmp_path, """\
[readings]
spike_multiple = 0
[heating]
payment = "in_season"
season_months = [1, 2, 12]
[lock]
wait_seconds = 5
[ingest]
max_removed_share = 1
[inbox]
settle_seconds = 0
[inbox.complete]
csv = "done"
"post-*.csv" = "settle"
""")
    s = Settings.load(path)
    assert s.readings == Readings(spike_multiple=0)
    assert s.heating == Heating(payment="in_season", season_months=(1, 2, 12))
    assert s.lock.wait_seconds == 5.0 and isinstance(s.lock.wait_seconds, float)
    assert s.ingest.max_removed_share == 1.0 and isinstance(s.ingest.max_removed_share, float)
    assert s.inbox == Inbox(0, (("sber", "footer"), ("vtb", "footer"), ("csv", "done"), ("1c", "footer"),
                                ("post-*.csv", "settle")))
    assert load_section(path, Lock) == Lock(5.0)
    assert load_section(path, Receipts) == Receipts()


@pytest.mark.parametrize(("text", "message"), [
    ("[readings]\nwindow_end_day = 32", "[readings] window_end_day = 32: нужен день месяца 1–31"),
    ("[readings]\nwindow_start_day = 0", "[readings] window_start_day = 0: нужен день месяца 1–31"),
    ("[readings]\nspike_multiple = -1", "[readings] spike_multiple = -1: нужно целое ≥ 0"),
    ("[readings]\nspike_multiple = 2.5", "[readings] spike_multiple = 2.5: нужно целое ≥ 0"),
    ("[readings]\nspike_multiple = true", "[readings] spike_multiple = True: нужно целое ≥ 0"),
    ('[readings]\nsettle_norm_months = "no"', "[readings] settle_norm_months = 'no': нужно true или false"),
    ('[heating]\npayment = "monthly"', "[heating] payment = 'monthly': допустимо «even» или «in_season»"),
    ("[heating]\nseason_months = [1, 13]", "[heating] season_months = [1, 13]: нужен номер месяца 1–12 в списке"),
    ('[heating]\nseason_months = "1-5"', "[heating] season_months = '1-5': нужен номер месяца 1–12 в списке"),
    ("[heating]\ntrue_up_month = 13", "[heating] true_up_month = 13: нужен номер месяца 1–12"),
    ("[recalculation]\nhorizon_months = -1", "[recalculation] horizon_months = -1: нужно целое число месяцев"),
    ('[ingest]\non_rejected_existing = "skip"',
     "[ingest] on_rejected_existing = 'skip': допустимо «refuse» или «keep_last»"),
    ("[ingest]\nmax_removed_share = 5", "[ingest] max_removed_share = 5: нужна доля от 0 до 1"),
    ("[receipts]\nworkers = -2", "[receipts] workers = -2: нужно целое ≥ 0"),
    ('[receipts]\nprint_batches = "yes"', "[receipts] print_batches = 'yes': нужно true или false"),
    ("[lock]\nwait_seconds = -1", "[lock] wait_seconds = -1: нужно число секунд ≥ 0"),
    ('[lock]\nwait_seconds = "15m"', "[lock] wait_seconds = '15m': нужно число секунд ≥ 0"),
    ('[schedule]\nnightly_import_cron = "every night"',
     "[schedule] nightly_import_cron = 'every night': нужно расписание cron из пяти полей"),
    ('[schedule]\ntimezone = ""', "[schedule] timezone = '': нужен часовой пояс"),
    ("[inbox]\nsettle_seconds = -1", "[inbox] settle_seconds: ожидается целое число секунд не меньше 0"),
    ('[inbox.complete]\ncsv = "footer"', "правило footer — только для реестров sber и vtb"),
    ('[inbox.complete]\ncsv = "later"', "правило «later» неизвестно — допустимы footer, settle, done"),
    ('[inbox.complete]\nxls = "done"', "«xls» — не формат (sber, vtb, csv, 1c)"),
    ("readings = 5", "[readings]: ожидается раздел настроек"),
])
def test_a_bad_value_is_named_with_its_section_key_and_value(tmp_path: Path, text: str,
                                                             message: str) -> None:
    with pytest.raises(BillingError) as err:
        Settings.load(write(tmp_path, text + "\n"))
    assert message in str(err.value)


def test_an_unknown_key_of_a_known_section_is_refused_with_the_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "[readings]\nspike_multiplier = 5\n")
    with pytest.raises(BillingError, match=r"settings\.toml \[readings\]: неизвестный ключ «spike_multiplier» "
                                           r"— допустимы window_start_day, window_end_day, spike_multiple, "
                                           "settle_norm_months"):
        Settings.load(path)
    with pytest.raises(BillingError, match=r"\[inbox\]: неизвестный ключ «settle»"):
        Settings.load(write(tmp_path, "[inbox]\nsettle = 5\n"))


def test_an_unknown_section_is_ignored(tmp_path: Path) -> None:
    """A workspace written by another version (a section this one does not know) still loads."""
    assert Settings.load(write(tmp_path, "[reports]\nformat = \"xlsx\"\n[lock]\nwait_seconds = 1\n")) == \
        Settings(lock=Lock(1.0))


def test_one_section_is_read_without_checking_the_others(tmp_path: Path) -> None:
    path = write(tmp_path, '[heating]\npayment = "monthly"\n[lock]\nwait_seconds = 3\n')
    assert load_section(path, Lock) == Lock(3.0)
    assert load_section(path, Schedule) == Schedule()
    with pytest.raises(BillingError, match="payment = 'monthly'"):
        load_section(path, Heating)


def test_a_broken_or_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(BillingError, match=r"settings\.toml: файл настроек не читается"):
        Settings.load(write(tmp_path, "[readings\n"))
    with pytest.raises(BillingError, match=r"settings\.toml: файл настроек не найден"):
        Settings.load(tmp_path / "missing" / "settings.toml")
