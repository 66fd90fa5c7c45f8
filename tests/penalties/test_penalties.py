"""Penalties (ЖК РФ ст.155 ч.14, 14.1): gold vector, table tests in exact kopecks, a property
test of both engines against a plain day-by-day reference, calculator CLI and court statement."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.dates import Period
from pipeline.penalties import PenaltyPolicy, accrue, accrue_intervals, bucket_penalty, load_policy
from pipeline.penalties.calculator import penalty_command, register
from pipeline.workspace import BillingError, init_workspace
from schemas.rules import RULE_TABLES

DEFAULTS = Path(__file__).resolve().parents[2] / "rules" / "defaults"
LAW = load_policy(DEFAULTS)
CALC = load_policy(DEFAULTS, moratorium_variant="penalty_calc")


def rub(kop: int) -> str:
    return f"{kop // 100}.{kop % 100:02d}"


def one(amount_kop: int, period: str, until: date, payments: list[tuple[date, int]] = (),  # type: ignore[assignment]
        policy: PenaltyPolicy = LAW, scheme: str = "standard") -> int:
    """Penalty of one bucket by the scalar engine, checked against the vectorised one."""
    p = Period.parse(period)
    due = policy.due_date(p)
    scalar = bucket_penalty(amount_kop, p, due, until, list(payments), policy, scheme).penalty_kop
    vector = accrue(*frames([(period, amount_kop, due, scheme, list(payments))]), policy, until)
    assert vector["penalty_kop"].to_list() == [scalar]
    return scalar


def frames(buckets: list[tuple[str, int, date, str, list[tuple[date, int]]]],
           account: str = "A1") -> tuple[pl.DataFrame, pl.DataFrame]:
    b = pl.DataFrame(
        [(account, f"S{i % 2}", per, scheme, amt, due) for i, (per, amt, due, scheme, _) in enumerate(buckets)],
        schema={"account_id": pl.String, "supplier_id": pl.String, "charge_period": pl.String,
                "scheme": pl.String, "amount_kop": pl.Int64, "due_date": pl.Date},
        orient="row",
    )
    p = pl.DataFrame(
        [(account, f"S{i % 2}", per, d, a) for i, (per, _, _, _, pays) in enumerate(buckets) for d, a in pays],
        schema={"account_id": pl.String, "supplier_id": pl.String, "charge_period": pl.String,
                "paid_on": pl.Date, "amount_kop": pl.Int64},
        orient="row",
    )
    return b, p


# --------------------------------------------------------------------------- rules as data

def test_rule_tables_registered_and_defaults_parse() -> None:
    for name in ("penalty_schemes", "penalty_rate_caps", "moratoriums"):
        assert name in RULE_TABLES
        assert (DEFAULTS / f"{name}.csv").is_file()
    assert LAW.rate_basis == "payment_date" and LAW.moratorium_variant == "law"
    assert [(m.start, m.end, m.arisen_before) for m in LAW.moratoriums] == [
        (date(2020, 4, 6), date(2020, 12, 31), None),
        (date(2022, 4, 1), date(2022, 10, 1), date(2022, 4, 1)),
    ]
    assert [(m.start, m.end) for m in CALC.moratoriums] == [
        (date(2020, 4, 6), date(2021, 1, 1)), (date(2022, 3, 31), date(2022, 10, 1))]
    assert [(c.start, c.end, c.kind, c.rate_bp) for c in LAW.caps][:2] == [
        (date(2022, 2, 28), date(2022, 7, 31), "fixed", 950), (date(2022, 8, 1), date(2022, 12, 31), "min", 950)]
    assert LAW.caps[-1].end == date(2026, 12, 31)
    assert LAW.denominator == 3900


def test_rate_caps_by_payment_day() -> None:
    assert LAW.rate_on(date(2022, 2, 27)) == 950  # key 9.5, no cap yet
    assert LAW.rate_on(date(2022, 3, 1)) == 950  # key 20 → fixed 9.5 (ПП 474)
    assert LAW.rate_on(date(2022, 7, 31)) == 950  # key 8 but flat 9.5 until 31.07
    assert LAW.rate_on(date(2022, 8, 1)) == 800  # min(9.5, 8) from 01.08 (ПП 1681)
    assert LAW.rate_on(date(2024, 4, 18)) == 950  # min(9.5, 16)
    assert LAW.rate_on(date(2027, 1, 1)) == 1400  # caps end 31.12.2026
    assert LAW.rate_on(date(2019, 10, 8)) == 700


def test_bad_rules_are_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(DEFAULTS, rules)
    with pytest.raises(BillingError, match="нет варианта"):
        load_policy(rules, moratorium_variant="nope")
    with (rules / "moratoriums.csv").open("a", encoding="utf-8") as fh:
        fh.write("law,2020-12-01,2021-01-10,,пересечение\n")
    with pytest.raises(BillingError, match="пересекаются"):
        load_policy(rules)
    (rules / "penalty_policy.toml").write_text('[rate]\nbasis = "weekly"\n', encoding="utf-8")
    with pytest.raises(BillingError, match="база ставки"):
        load_policy(rules, moratorium_variant="penalty_calc")
    (rules / "penalty_rate_caps.csv").unlink()
    with pytest.raises(BillingError, match="penalty_rate_caps"):
        load_policy(rules)


# --------------------------------------------------------------------------- gold vector V1

V1 = dict(amount_kop=100_000, period="2019-05", until=date(2024, 4, 18), payments=[(date(2020, 1, 1), 10_000)])


def test_v1_law_boundaries_836_37() -> None:
    policy = LAW.with_fixed_rate(950)
    assert policy.due_date(Period(2019, 5)) == date(2019, 6, 10)
    assert one(**V1, policy=policy) == 83_637  # type: ignore[arg-type]
    res = bucket_penalty(100_000, Period(2019, 5), date(2019, 6, 10), V1["until"], V1["payments"], policy)  # type: ignore[arg-type]
    assert res.moratorium_days == 270 + 184
    assert res.first_day == date(2019, 6, 11)


def test_v1_calculator_boundaries_835_05() -> None:
    policy = CALC.with_fixed_rate(950)
    assert one(**V1, policy=policy) == 83_505  # type: ignore[arg-type]
    res = bucket_penalty(100_000, Period(2019, 5), date(2019, 6, 10), V1["until"], V1["payments"], policy)  # type: ignore[arg-type]
    # As published: 8 rows, moratorium 271 + 185 days, 205 days at 1 000 ₽ worth 103.04 ₽,
    # 1/300 days 90 (30 of them deferral), 1/130 days 1684.
    assert len(res.rows) == 8
    assert [r.days for r in res.rows if r.moratorium] == [271, 185]
    at_1000 = [r for r in res.rows if r.debt_kop == 100_000]
    assert sum(r.days for r in at_1000) == 205
    assert round(sum((r.share_kop for r in at_1000), Fraction(0))) == 10_304
    assert sum(r.days for r in res.rows if r.fraction == Fraction(1, 130)) == 1684
    assert sum(r.days for r in res.rows if r.fraction != Fraction(1, 130)) == 90
    # Rounding every day instead of once gives 837.73 — we must not.
    assert res.penalty_kop != 83_773


def test_v5_naive_formula_is_not_ours() -> None:
    # 5 000 ₽, 15 days late, 7.5 %: consumer sites print 18.75 ₽; ч.14 gives 0 (grace days).
    policy = LAW.with_fixed_rate(750)
    due = policy.due_date(Period(2019, 5))
    assert one(500_000, "2019-05", due + timedelta(days=15), policy=policy) == 0


# --------------------------------------------------------------------------- table tests

D = date(2019, 6, 10)  # due date of May 2019 (Monday)
FIX = LAW.with_fixed_rate(950)


@pytest.mark.parametrize(
    ("payments", "until", "expected"),
    [
        # paid in full inside the grace days → nothing
        ([(D + timedelta(days=21), 300_000)], D + timedelta(days=200), 0),
        # a third paid on day 21 (grace): 2 000 ₽ × 9.5 % / 300 × 60 days (31–90) = 38.00
        ([(D + timedelta(days=21), 100_000)], D + timedelta(days=90), 3_800),
        # half paid on day 60 (1/300 stretch): 3 000 × 30 + 1 500 × 30 days at 1/300 = 28.50 + 14.25
        ([(D + timedelta(days=60), 150_000)], D + timedelta(days=90), 4_275),
        # paid in full on day 120 (after day 90): 57.00 (60 days 1/300) + 65.769… (30 days 1/130)
        ([(D + timedelta(days=120), 300_000)], D + timedelta(days=400), 12_277),
        # the payment day itself still bears penalty: paid on day 31 → one day at 1/300 = 0.95
        ([(D + timedelta(days=31), 300_000)], D + timedelta(days=400), 95),
        # unpaid: 57.00 + 3 000 × 9.5 % / 130 × 10 days = 57.00 + 21.923… = 78.92
        ([], D + timedelta(days=100), 7_892),
    ],
)
def test_payment_timing(payments: list[tuple[date, int]], until: date, expected: int) -> None:
    assert one(300_000, "2019-05", until, payments, FIX) == expected


def test_payment_day_rate_is_the_statutory_default() -> None:
    # Paid in full on day 120 (08.10.2019, key rate 7.00 %): 3 000 × 7 % × (60/300 + 30/130) = 90.4615…
    assert one(300_000, "2019-05", date(2020, 3, 1), [(date(2019, 10, 8), 300_000)]) == 9_046
    # the same bucket at the calculation-day rate (6.00 % on 01.03.2020): 77.54
    assert one(300_000, "2019-05", date(2020, 3, 1), [(date(2019, 10, 8), 300_000)],
               LAW.with_rate_basis("calc_date")) == 7_754


def test_debt_spanning_rate_change_and_cap_periods() -> None:
    # January 2022, due 10.02.2022, unpaid. 1/300 days 13.03–11.05, 1/130 from 12.05;
    # ПП 497 moratorium 01.04–01.10.2022 applies (charge period ≤ 2022-03).
    # Outside the moratorium: 19 days at 1/300 (13–31.03), 91 days at 1/130 (02.10–31.12).
    # On 31.12.2022 the rate is min(9.5, key 7.5) = 7.5 %: 1 000 × 7.5 % × 229/300 = 57.25.
    assert one(100_000, "2022-01", date(2022, 12, 31)) == 5_725
    # Rate day by day: 9.5 % fixed in March (ПП 474, key 20 %), 7.5 % in Oct–Dec (min, key 7.5 %):
    # 1 000 × (9.5 % × 19/300 + 7.5 % × 91/130) = 6.0167 + 52.50 = 58.52.
    assert one(100_000, "2022-01", date(2022, 12, 31), policy=LAW.with_rate_basis("daily")) == 5_852
    # The cap switches from flat 9.5 % to min(9.5 %, key) between 31.07 and 01.08.2022 (key 8 %):
    assert one(100_000, "2022-01", date(2022, 7, 31)) == 602  # 1 000 × 9.5 % × 19/300 = 6.0167
    assert one(100_000, "2022-01", date(2022, 8, 1)) == 507  # 1 000 × 8 % × 19/300 = 5.0667
    # Without the cap (fixed key rate 20 %) the March days would cost 12.67.
    assert one(100_000, "2022-01", date(2022, 7, 31), policy=LAW.with_fixed_rate(2000)) == 1_267


def test_2022_moratorium_only_for_debts_arisen_before_april() -> None:
    # April 2022 is due 11.05.2022 (10.05 was a transferred day off) and accrues during the
    # window (ВС 20.11.2023): 60 days at 1/300 + 52 days at 1/130 (10.08–30.09) at 9.5 % = 19.00 + 38.00.
    assert LAW.due_date(Period(2022, 4)) == date(2022, 5, 11)
    assert one(100_000, "2022-04", date(2022, 9, 30), policy=FIX) == 5_700
    # the calculator variant zeroes every debt in the window
    assert one(100_000, "2022-04", date(2022, 9, 30), policy=CALC.with_fixed_rate(950)) == 0
    # March 2022 (due 11.04.2022, the 10th is a Sunday) waits until 02.10.2022, then is past day 91
    assert LAW.due_date(Period(2022, 3)) == date(2022, 4, 11)
    assert one(100_000, "2022-03", date(2022, 10, 2), policy=FIX) == round(100_000 * Fraction(950, 10_000 * 130))


def test_due_date_on_a_holiday() -> None:
    # May 2023: the 10th of June is a Saturday, 12.06 is Russia Day → due Tuesday 13.06.2023.
    assert LAW.due_date(Period(2023, 5)) == date(2023, 6, 13)
    # December 2020: 10.01.2021 is inside the New Year holidays → due 11.01.2021.
    assert LAW.due_date(Period(2020, 12)) == date(2021, 1, 11)
    # February 2026: due on the 15th (177-ФЗ), a Sunday → 16.03.2026.
    assert LAW.due_date(Period(2026, 2)) == date(2026, 3, 16)
    # Day 31 after 13.06.2023 is 14.07.2023: nothing up to the 13th, one day at 1/300 on the 14th.
    assert one(100_000, "2023-05", date(2023, 7, 13), policy=FIX) == 0
    assert one(100_000, "2023-05", date(2023, 7, 14), policy=FIX) == 32  # 1 000 × 9.5 % / 300 = 0.3167


def test_capital_repair_scheme() -> None:
    # ч.14.1: 30 grace days, then 1/300 throughout (no 1/130): 11.07–31.12.2019 = 174 days.
    assert one(100_000, "2019-05", date(2019, 12, 31), policy=FIX, scheme="capital_repair") == 5_510
    # the same debt under ч.14: 60 days at 1/300 + 114 days at 1/130 = 19.00 + 83.31
    assert one(100_000, "2019-05", date(2019, 12, 31), policy=FIX) == 10_231
    # moratoriums apply to capital repair too: V1 at 1/300 throughout, law boundaries
    assert one(**V1, policy=FIX, scheme="capital_repair") == round(  # type: ignore[arg-type]
        Fraction(950, 10_000 * 300) * (100_000 * 175 + 90_000 * (95 + 455 + 565)))


def test_no_moratoriums() -> None:
    # V1 without moratoriums: 103.038… + 900 × 9.5 % / 130 × 1569 = 103.038… + 1 031.919… = 1 134.96
    assert one(**V1, policy=FIX.without_moratoriums()) == 113_496  # type: ignore[arg-type]


def test_overpayment_and_late_payments_ignored() -> None:
    # 1 500 ₽ paid against 1 000 ₽ on day 40: 10 days at 1/300; payment after `until` not counted.
    assert one(100_000, "2019-05", date(2019, 12, 31), [(D + timedelta(days=40), 150_000)], FIX) == 317
    assert one(100_000, "2019-05", D + timedelta(days=60), [(D + timedelta(days=61), 100_000)], FIX) == 950


def test_accrue_many_buckets_and_intervals() -> None:
    rows = [
        ("2019-05", 100_000, date(2019, 6, 10), "standard", [(date(2020, 1, 1), 10_000)]),
        ("2019-05", 50_000, date(2019, 6, 10), "capital_repair", []),
        ("2022-03", 70_000, date(2022, 4, 11), "standard", [(date(2022, 5, 1), 20_000), (date(2022, 4, 1), 5_000)]),
        ("2026-02", 10_000, date(2026, 3, 16), "standard", []),
    ]
    b, p = frames(rows)
    out = accrue(b, p, LAW, date(2024, 4, 18))
    assert out.columns[:6] == list(b.columns)
    for (per, amt, due, scheme, pays), got in zip(rows, out.iter_rows(named=True), strict=True):
        exp = bucket_penalty(amt, Period.parse(per), due, date(2024, 4, 18), pays, LAW, scheme)
        assert got["penalty_kop"] == exp.penalty_kop
        assert got["debt_kop"] == exp.debt_kop
        assert got["paid_kop"] == exp.paid_kop
    assert out["rate_bp"].to_list() == [950] * 4
    iv = accrue_intervals(b, p, LAW, date(2024, 4, 18))
    assert set(iv["charge_period"]) == {"2019-05", "2022-03"}
    assert iv.filter(pl.col("moratorium"))["penalty_kop"].sum() == 0
    # a payment for an unknown bucket is ignored
    extra = pl.concat([p, pl.DataFrame([("A1", "S9", "2019-05", date(2019, 7, 1), 1)], schema=p.schema,
                                       orient="row")])
    assert accrue(b, extra, LAW, date(2024, 4, 18))["penalty_kop"].to_list() == out["penalty_kop"].to_list()


def test_accrue_refuses_unknown_scheme_and_early_periods() -> None:
    b, p = frames([("2019-05", 100, date(2019, 6, 10), "water_only", [])])
    with pytest.raises(BillingError, match="water_only"):
        accrue(b, p, LAW, date(2020, 1, 1))
    b, p = frames([("2015-05", 100, date(2015, 6, 10), "standard", [])])
    with pytest.raises(BillingError, match="2015-05"):
        accrue(b, p, LAW, date(2020, 1, 1))


# --------------------------------------------------------------------------- property test

def ref_rate(policy: PenaltyPolicy, day: date) -> int:
    """Rate on ``day``, by scanning the tables (independent of the engine's lookups)."""
    if policy.fixed_rate_bp is not None:
        return policy.fixed_rate_bp
    key = None
    for since, bp in policy.key_rates:
        if since <= day:
            key = bp
    assert key is not None
    for cap in policy.caps:
        if cap.start <= day <= cap.end:
            return cap.rate_bp if cap.kind == "fixed" else min(cap.rate_bp, key)
    return key


def reference(amount: int, period: Period, due: date, until: date, payments: list[tuple[date, int]],
              policy: PenaltyPolicy, scheme: str) -> int:
    """Day by day, Fraction per day: the plainest reading of ч.14 / ч.14.1."""
    rule = [r for r in policy.schemes if r.scheme == scheme and r.valid_from <= period.first][-1]
    paid = sorted((d, a) for d, a in payments if d <= until and a > 0)
    total = Fraction(0)
    day = due + timedelta(days=1)
    while day <= until:
        n = (day - due).days
        if n <= rule.grace_days:
            share = Fraction(0)
        elif n <= rule.step_day:
            share = Fraction(1, rule.den_before)
        else:
            share = Fraction(1, rule.den_after)
        blocked = any(m.start <= day <= m.end and (m.arisen_before is None or period.last < m.arisen_before)
                      for m in policy.moratoriums)
        if share and not blocked:
            left = amount
            for paid_on, kop in paid:
                part = min(kop, left)
                left -= part
                if paid_on >= day:  # not yet paid on `day`: the debt drops the day after payment
                    basis = day if policy.rate_basis == "daily" else (
                        paid_on if policy.rate_basis == "payment_date" else until)
                    total += part * ref_rate(policy, basis) * share
            basis = day if policy.rate_basis == "daily" else until
            total += left * ref_rate(policy, basis) * share
        day += timedelta(days=1)
    exact = total / 10_000
    return int(exact + Fraction(1, 2))  # half up (non-negative)


POLICIES = {
    "law": LAW, "penalty_calc": CALC, "none": LAW.without_moratoriums(),
}


@st.composite
def bucket_case(draw: st.DrawFn) -> tuple[Period, int, str, list[tuple[int, int]]]:
    period = Period(2016, 1).shift(draw(st.integers(0, 12 * 10 + 6)))
    amount = draw(st.integers(1, 5_000_000))
    scheme = draw(st.sampled_from(["standard", "capital_repair"]))
    payments = draw(st.lists(st.tuples(st.integers(-40, 900), st.integers(1, 3_000_000)), max_size=4))
    return period, amount, scheme, payments


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cases=st.lists(bucket_case(), min_size=1, max_size=4),
    until_offset=st.integers(-10, 1500),
    variant=st.sampled_from(sorted(POLICIES)),
    basis=st.sampled_from(["payment_date", "calc_date", "daily"]),
    fixed=st.one_of(st.none(), st.integers(1, 3000)),
)
def test_engines_match_day_by_day_reference(cases: list[tuple[Period, int, str, list[tuple[int, int]]]],
                                            until_offset: int, variant: str, basis: str,
                                            fixed: int | None) -> None:
    policy = POLICIES[variant].with_rate_basis(basis)
    if fixed is not None:
        policy = policy.with_fixed_rate(fixed)
    first_due = policy.due_date(cases[0][0])
    until = first_due + timedelta(days=until_offset)
    rows = []
    expected = []
    seen = set()
    for period, amount, scheme, offsets in cases:
        if period in seen:  # one bucket per (account, supplier, period)
            continue
        seen.add(period)
        due = policy.due_date(period)
        pays = [(due + timedelta(days=o), a) for o, a in offsets]
        exp = reference(amount, period, due, until, pays, policy, scheme)
        assert bucket_penalty(amount, period, due, until, pays, policy, scheme).penalty_kop == exp
        rows.append((str(period), amount, due, scheme, pays))
        expected.append(exp)
    b, p = frames(rows)
    assert accrue(b, p, policy, until)["penalty_kop"].to_list() == expected


# --------------------------------------------------------------------------- calculator

@pytest.fixture
def home(tmp_path: Path) -> Path:
    return init_workspace(tmp_path / "home").home


def run_json(capsys: pytest.CaptureFixture[str], home: Path, **kw: object) -> dict:
    args: dict[str, object] = dict(amount="1000", period="2019-05", until="2024-04-18",
                                   payments=["2020-01-01=100"], rate="9.5", no_moratoriums=False,
                                   scheme="standard", as_json=True, home=home)
    args.update(kw)
    penalty_command(**args)  # type: ignore[arg-type]
    return json.loads(capsys.readouterr().out)


def test_calculator_default_workspace_836_37(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    out = run_json(capsys, home)
    assert out["total"] == "836.37"
    assert set(out) == {"total", "rows"}
    assert out["rows"][1] == {"from": "2019-07-11", "to": "2019-09-08", "days": 60, "debt": "1000.00",
                              "fraction": "1/300", "rate": "9.50", "moratorium": False, "penalty": "19.00"}
    assert [r["days"] for r in out["rows"] if r["moratorium"]] == [270, 184]
    assert len(out["rows"]) == 8


def test_calculator_variant_835_05(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    toml = home / "rules" / "penalty_policy.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('variant = "law"', 'variant = "penalty_calc"'),
                    encoding="utf-8")
    assert run_json(capsys, home)["total"] == "835.05"
    assert run_json(capsys, home, no_moratoriums=True)["total"] == "1134.96"


def test_calculator_text_and_key_rates(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    penalty_command("1000", "2019-05", "2024-04-18", ["2020-01-01=100"], None, False, "standard", False, home)
    text = capsys.readouterr().out
    assert "Итого пени: 832,84 ₽" in text  # 100 ₽ at 6.25 % (01.01.2020), 900 ₽ at min(9.5, 16) %
    assert "мораторий" in text and "11.06.2019" in text
    out = run_json(capsys, home, rate=None, payments=[], scheme="capital_repair", until="2019-12-31")
    assert out["total"] == rub(100_000 * 625 * 174 // (10_000 * 300)) == "36.25"  # 6.25 % on 31.12.2019


def app() -> typer.Typer:
    cli = typer.Typer()

    @cli.callback()
    def main() -> None:
        """Тест."""

    register(cli)
    return cli


def test_cli_registration_and_exit_codes(home: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app(), ["penalty", "--amount", "1000", "--period", "2019-05", "--until", "2024-04-18",
                               "--payment", "2020-01-01=100", "--rate", "9,5", "--json", "--home", str(home)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["total"] == "836.37"
    for bad in (["--period", "2019-13"], ["--amount", "-5"], ["--payment", "2020-01-01"],
                ["--rate", "abc"], ["--scheme", "gas"], ["--until", "18/04/2024"]):
        args = {"--amount": "1000", "--period": "2019-05", "--until": "2024-04-18"}
        extra: list[str] = []
        if bad[0] in args:
            args[bad[0]] = bad[1]
        else:
            extra = bad
        argv = ["penalty", *[x for kv in args.items() for x in kv], *extra, "--home", str(home)]
        res = runner.invoke(app(), argv)
        assert res.exit_code == 2, (bad, res.output)
    missing = runner.invoke(app(), ["penalty", "--amount", "1", "--period", "2019-05", "--until", "2020-01-01",
                                    "--home", str(home.parent / "nowhere")])
    assert isinstance(missing.exception, BillingError)
    early = runner.invoke(app(), ["penalty", "--amount", "1", "--period", "2014-05", "--until", "2020-01-01",
                                  "--home", str(home)])
    assert isinstance(early.exception, BillingError)


# --------------------------------------------------------------------------- statement and bench

def test_statement_pdf_and_xlsx(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from pipeline.penalties.statement import limitation_cutoff, write_statement

    buckets = [
        {"supplier_id": "UK1", "charge_period": "2019-05", "amount_kop": 100_000, "due_date": date(2019, 6, 10),
         "scheme": "standard"},
        {"supplier_id": "UK1", "charge_period": "2022-01", "amount_kop": 100_000, "due_date": None,
         "scheme": "standard"},
        {"supplier_id": "FKR", "charge_period": "2022-01", "amount_kop": 20_000, "due_date": date(2022, 2, 10),
         "scheme": "capital_repair"},
    ]
    payments = [{"supplier_id": "UK1", "charge_period": "2019-05", "paid_on": date(2020, 1, 1), "amount_kop": 10_000}]
    policy = LAW.with_fixed_rate(950)
    until = date(2024, 4, 18)
    pdf, xlsx = write_statement("A1", buckets, payments, policy, until, tmp_path)
    assert pdf.read_bytes()[:4] == b"%PDF"
    wb = load_workbook(xlsx)
    totals = wb["Итоги"]
    expected = [
        bucket_penalty(100_000, Period(2019, 5), date(2019, 6, 10), until, [(date(2020, 1, 1), 10_000)],
                       policy).penalty_kop,
        bucket_penalty(100_000, Period(2022, 1), date(2022, 2, 10), until, [], policy).penalty_kop,
        bucket_penalty(20_000, Period(2022, 1), date(2022, 2, 10), until, [], policy, "capital_repair").penalty_kop,
    ]
    assert expected[0] == 83_637
    assert float(totals["B2"].value) == 2_100.00  # debt 900 + 1 000 + 200
    assert round(float(totals["B3"].value) * 100) == sum(expected)
    # May 2019 (due 10.06.2019) is older than 18.04.2021: outside the limitation, with its penalty
    assert limitation_cutoff(until, policy.limitation_years(until)) == date(2021, 4, 18)
    assert float(totals["C2"].value) == 1_200.00
    assert round(float(totals["C3"].value) * 100) == sum(expected[1:])
    assert wb["Оплаты"]["E2"].value is not None and float(wb["Оплаты"]["E2"].value) == 100.0


def test_bench_small() -> None:
    from pipeline.penalties.bench import bench

    report = bench(300)
    assert report["buckets"] == 3600
    assert isinstance(report["accrue_s"], float)


def test_wide_numbers_take_the_int128_path() -> None:
    # 100 bn ₽ unpaid for four years at 20 %: the numerator no longer fits Int64.
    amount = 10_000_000_000_000
    until = date(2023, 6, 30)
    due = LAW.due_date(Period(2019, 5))
    for policy in (LAW.with_fixed_rate(2000), LAW.with_rate_basis("daily"), LAW):
        pays = [(date(2021, 3, 1), amount // 3)]
        exp = bucket_penalty(amount, Period(2019, 5), due, until, pays, policy).penalty_kop
        b, p = frames([("2019-05", amount, due, "standard", pays)])
        assert accrue(b, p, policy, until)["penalty_kop"].to_list() == [exp]


def test_a_bucket_keeps_the_due_date_the_previous_close_carried() -> None:
    """A migrated debt falls due on the old system's date (carried in the previous penalties),
    every other bucket by due_dates.csv; the cumulative continues from the previous one."""
    from pipeline.penalties.monthly import accrue_period
    from rules import read_rule_table

    services = read_rule_table(DEFAULTS, "services")
    charges = pl.DataFrame(
        [("A1", "maintenance", "UK", "2025-01", 100_000), ("A2", "maintenance", "UK", "2025-01", 100_000)],
        schema={"account_id": pl.String, "service_id": pl.String, "supplier_id": pl.String,
                "charge_period": pl.String, "amount_kop": pl.Int64}, orient="row")
    allocations = pl.DataFrame(schema={"account_id": pl.String, "supplier_id": pl.String,
                                       "charge_period": pl.String, "paid_on": pl.Date, "kind": pl.String,
                                       "amount_kop": pl.Int64})
    theirs = date(2025, 4, 1)  # the old system's due date for A1's debt, later than the rule's
    previous = pl.DataFrame(
        [("A1", "UK", "2025-01", 500, theirs), ("A2", "UK", "2025-01", 500, None)],
        schema={"account_id": pl.String, "supplier_id": pl.String, "charge_period": pl.String,
                "cumulative_kop": pl.Int64, "due_date": pl.Date}, orient="row")
    out = accrue_period(Period(2025, 6), charges, allocations, previous, services, LAW)
    rule_due = LAW.due_date(Period(2025, 1))
    assert out["due_date"].to_list() == [theirs, rule_due]
    until = Period(2025, 6).last
    for account, due in (("A1", theirs), ("A2", rule_due)):
        [row] = out.filter(pl.col("account_id") == account).iter_rows(named=True)
        expected = bucket_penalty(100_000, Period(2025, 1), due, until, [], LAW, "standard").penalty_kop
        assert row["cumulative_kop"] == expected and row["amount_kop"] == expected - 500
    assert out["cumulative_kop"][0] < out["cumulative_kop"][1]
