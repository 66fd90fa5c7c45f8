-- title: Оборотно-сальдовая ведомость по лицевым счетам
-- about: Сальдо на начало — первого периода диапазона, обороты — за весь диапазон, сальдо на
-- about: конец — последнего периода (из таблицы balances закрытых периодов, все поставщики).
-- params: $period_from, $period_to — первый и последний период (ГГГГ-ММ)
-- column: account_id = Лицевой счёт
-- column: payer_name = Плательщик
-- column: address = Адрес
-- column: opening = Сальдо на начало
-- column: charged = Начислено
-- column: recalculated = Перерасчёт
-- column: penalty = Пени
-- column: paid = Оплачено
-- column: closing = Сальдо на конец
-- money: opening, charged, recalculated, penalty, paid, closing
-- total: account_id
WITH rows AS (
    SELECT * FROM balances WHERE period BETWEEN $period_from AND $period_to
), sheet AS (
    SELECT account_id,
           coalesce(sum(opening) FILTER (WHERE period = $period_from), 0) AS opening,
           sum(charged) AS charged, sum(recalculated) AS recalculated, sum(penalty) AS penalty,
           sum(paid) AS paid,
           coalesce(sum(closing) FILTER (WHERE period = $period_to), 0) AS closing
    FROM rows GROUP BY account_id
)
SELECT s.account_id, a.payer_name,
       b.address || ', ' || CASE WHEN p.kind = 'residential' THEN 'кв. ' ELSE 'пом. ' END || p.number
           AS address,
       s.opening, s.charged, s.recalculated, s.penalty, s.paid, s.closing
FROM sheet s
LEFT JOIN accounts a USING (account_id)
LEFT JOIN premises p ON p.premise_id = a.premise_id
LEFT JOIN buildings b ON b.building_id = p.building_id
ORDER BY s.account_id
