-- title: Оборотно-сальдовая ведомость по домам
-- about: Сальдо на начало — первого периода, обороты — за диапазон, сальдо на конец —
-- about: последнего (balances по всем поставщикам, сложенные по домам).
-- params: $period_from, $period_to — первый и последний период (ГГГГ-ММ)
-- column: building_id = Дом (код)
-- column: address = Адрес
-- column: accounts = Лицевых счетов
-- column: opening = Сальдо на начало
-- column: charged = Начислено
-- column: recalculated = Перерасчёт
-- column: penalty = Пени
-- column: paid = Оплачено
-- column: closing = Сальдо на конец
-- money: opening, charged, recalculated, penalty, paid, closing
-- total: building_id
-- sum: accounts
WITH rows AS (
    SELECT r.*, p.building_id
    FROM balances r
    LEFT JOIN accounts a USING (account_id)
    LEFT JOIN premises p ON p.premise_id = a.premise_id
    WHERE r.period BETWEEN $period_from AND $period_to
)
SELECT r.building_id, b.address, count(DISTINCT r.account_id) AS accounts,
       coalesce(sum(r.opening) FILTER (WHERE r.period = $period_from), 0) AS opening,
       sum(r.charged) AS charged, sum(r.recalculated) AS recalculated, sum(r.penalty) AS penalty,
       sum(r.paid) AS paid,
       coalesce(sum(r.closing) FILTER (WHERE r.period = $period_to), 0) AS closing
FROM rows r LEFT JOIN buildings b USING (building_id)
GROUP BY r.building_id, b.address
ORDER BY r.building_id NULLS LAST
