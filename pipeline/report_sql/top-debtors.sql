-- title: Крупнейшие должники
-- about: Лицевые счета с наибольшим долгом на конец последнего периода (сальдо на конец по
-- about: всем поставщикам, balances), первые $top; месяцев долга и самый старый месяц — по
-- about: таблице debts того же периода; последняя оплата — по распределениям до его конца.
-- params: $period_to — период, на конец которого берётся долг (ГГГГ-ММ)
-- param: top = 50 — сколько должников показать
-- column: place = №
-- column: account_id = Лицевой счёт
-- column: payer_name = Плательщик
-- column: payer_kind = Вид плательщика
-- column: address = Адрес
-- column: debt = Долг
-- column: months = Месяцев долга
-- column: oldest = Самый старый месяц долга
-- column: last_paid_on = Последняя оплата
-- money: debt
WITH debt AS (
    SELECT account_id, sum(closing) AS debt FROM balances WHERE period = $period_to
    GROUP BY account_id HAVING sum(closing) > 0
), age AS (
    SELECT account_id, count(DISTINCT charge_period) AS months, min(charge_period) AS oldest
    FROM debts WHERE period = $period_to AND outstanding > 0 GROUP BY account_id
), paid AS (
    SELECT account_id, max(paid_on) AS last_paid_on FROM allocations
    WHERE period <= $period_to AND kind IN ('payment', 'advance') GROUP BY account_id
), ranked AS (
    SELECT row_number() OVER (ORDER BY d.debt DESC, d.account_id) AS place, d.*
    FROM debt d
)
SELECT r.place, r.account_id, a.payer_name,
       CASE a.payer_kind WHEN 'person' THEN 'гражданин' WHEN 'organization' THEN 'организация'
            ELSE a.payer_kind END AS payer_kind,
       b.address || ', ' || CASE WHEN p.kind = 'residential' THEN 'кв. ' ELSE 'пом. ' END || p.number
           AS address,
       r.debt, coalesce(g.months, 0) AS months, g.oldest, pd.last_paid_on
FROM ranked r
LEFT JOIN accounts a USING (account_id)
LEFT JOIN premises p ON p.premise_id = a.premise_id
LEFT JOIN buildings b ON b.building_id = p.building_id
LEFT JOIN age g USING (account_id)
LEFT JOIN paid pd USING (account_id)
WHERE r.place <= $top
ORDER BY r.place
