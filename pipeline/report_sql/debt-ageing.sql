-- title: Возраст задолженности
-- about: Неоплаченные начисления на конец периода $period_to (таблица debts) по поставщикам,
-- about: разложенные по возрасту: возраст — число месяцев от периода начисления до отчётного
-- about: (начисление отчётного и предыдущего месяца — «до 1 мес.», 2–3 месяца назад — «1–3 мес.»,
-- about: 4–6 — «3–6 мес.», 7–12 — «6–12 мес.», раньше — «более 12 мес.»). Пени не входят.
-- params: $period_to — отчётный период (ГГГГ-ММ)
-- column: supplier_id = Поставщик (код)
-- column: supplier_name = Поставщик
-- column: accounts = Лицевых счетов с долгом
-- column: upto_1 = До 1 мес.
-- column: m1_3 = 1–3 мес.
-- column: m3_6 = 3–6 мес.
-- column: m6_12 = 6–12 мес.
-- column: over_12 = Более 12 мес.
-- column: total = Всего долг
-- money: upto_1, m1_3, m3_6, m6_12, over_12, total
-- total: supplier_id
-- sum: accounts
WITH aged AS (
    SELECT supplier_id, account_id, outstanding,
           (CAST(substr($period_to, 1, 4) AS INTEGER) * 12 + CAST(substr($period_to, 6, 2) AS INTEGER))
           - (CAST(substr(charge_period, 1, 4) AS INTEGER) * 12 + CAST(substr(charge_period, 6, 2) AS INTEGER))
           AS age
    FROM debts WHERE period = $period_to AND outstanding <> 0
)
SELECT g.supplier_id, any_value(o.name) AS supplier_name,
       count(DISTINCT g.account_id) FILTER (WHERE g.outstanding > 0) AS accounts,
       coalesce(sum(g.outstanding) FILTER (WHERE g.age <= 1), 0) AS upto_1,
       coalesce(sum(g.outstanding) FILTER (WHERE g.age BETWEEN 2 AND 3), 0) AS m1_3,
       coalesce(sum(g.outstanding) FILTER (WHERE g.age BETWEEN 4 AND 6), 0) AS m3_6,
       coalesce(sum(g.outstanding) FILTER (WHERE g.age BETWEEN 7 AND 12), 0) AS m6_12,
       coalesce(sum(g.outstanding) FILTER (WHERE g.age > 12), 0) AS over_12,
       sum(g.outstanding) AS total
FROM aged g LEFT JOIN organizations o ON o.org_id = g.supplier_id
GROUP BY g.supplier_id
ORDER BY g.supplier_id NULLS LAST
