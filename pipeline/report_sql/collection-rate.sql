-- title: Собираемость платежей по месяцам
-- about: По каждому периоду: начислено за месяц (начисления и перерасчёты, balances), оплачено
-- about: в месяце (полученные деньги — распределения платежей, авансов и возвратов), процент
-- about: собираемости = оплачено / начислено × 100, округлённый до сотых половина вверх.
-- params: $period_from, $period_to — первый и последний период (ГГГГ-ММ)
-- column: period = Период
-- column: charged = Начислено
-- column: paid = Оплачено
-- column: rate = Собираемость, %
-- column: closing = Долг на конец месяца
-- money: charged, paid, closing

-- chart: x=period bars=charged,paid line=rate
WITH months AS (
    SELECT period, CAST(round(sum(charged + recalculated) * 100) AS BIGINT) AS charged_kop,
           sum(closing) AS closing
    FROM balances WHERE period BETWEEN $period_from AND $period_to GROUP BY period
), received AS (
    SELECT period, CAST(round(sum(amount) * 100) AS BIGINT) AS paid_kop
    FROM allocations
    WHERE period BETWEEN $period_from AND $period_to AND kind IN ('payment', 'advance', 'refund')
    GROUP BY period
)
SELECT m.period,
       CAST(m.charged_kop AS DECIMAL(18, 0)) * CAST(0.01 AS DECIMAL(3, 2)) AS charged,
       CAST(coalesce(r.paid_kop, 0) AS DECIMAL(18, 0)) * CAST(0.01 AS DECIMAL(3, 2)) AS paid,
       -- exact, half up: basis points of paid over charged, in integers (no float)
       CASE WHEN m.charged_kop > 0 THEN CAST(
           CASE WHEN coalesce(r.paid_kop, 0) >= 0
                THEN (2 * 10000 * coalesce(r.paid_kop, 0) + m.charged_kop) // (2 * m.charged_kop)
                ELSE -((2 * 10000 * -r.paid_kop + m.charged_kop) // (2 * m.charged_kop)) END
           AS DECIMAL(18, 0)) * CAST(0.01 AS DECIMAL(3, 2)) END AS rate,
       m.closing
FROM months m LEFT JOIN received r USING (period)
ORDER BY m.period
