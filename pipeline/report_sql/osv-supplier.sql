-- title: Оборотно-сальдовая ведомость по поставщикам
-- about: Сальдо на начало — первого периода, обороты — за диапазон, сальдо на конец —
-- about: последнего. Строка без поставщика — аванс, ещё не распределённый по услугам.
-- params: $period_from, $period_to — первый и последний период (ГГГГ-ММ)
-- column: supplier_id = Поставщик (код)
-- column: supplier_name = Поставщик
-- column: accounts = Лицевых счетов
-- column: opening = Сальдо на начало
-- column: charged = Начислено
-- column: recalculated = Перерасчёт
-- column: penalty = Пени
-- column: paid = Оплачено
-- column: closing = Сальдо на конец
-- money: opening, charged, recalculated, penalty, paid, closing
-- total: supplier_id
-- sum: accounts
SELECT r.supplier_id,
       CASE WHEN r.supplier_id IS NULL THEN 'Аванс (не распределён)' ELSE any_value(o.name) END
           AS supplier_name,
       count(DISTINCT r.account_id) AS accounts,
       coalesce(sum(r.opening) FILTER (WHERE r.period = $period_from), 0) AS opening,
       sum(r.charged) AS charged, sum(r.recalculated) AS recalculated, sum(r.penalty) AS penalty,
       sum(r.paid) AS paid,
       coalesce(sum(r.closing) FILTER (WHERE r.period = $period_to), 0) AS closing
FROM balances r
LEFT JOIN organizations o ON o.org_id = r.supplier_id
WHERE r.period BETWEEN $period_from AND $period_to
GROUP BY r.supplier_id
ORDER BY r.supplier_id NULLS LAST
