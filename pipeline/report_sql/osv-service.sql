-- title: Оборотно-сальдовая ведомость по услугам
-- about: По таблице service_balances: сальдо на начало — первого периода, обороты — за
-- about: диапазон, сальдо на конец — последнего; строка на услугу и её поставщика.
-- params: $period_from, $period_to — первый и последний период (ГГГГ-ММ)
-- column: service_id = Услуга (код)
-- column: service_name = Услуга
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
-- total: service_id
-- sum: accounts
SELECT r.service_id,
       CASE WHEN r.service_id IS NULL THEN 'Аванс (не распределён)' ELSE any_value(s.name) END
           AS service_name,
       r.supplier_id, any_value(o.name) AS supplier_name,
       count(DISTINCT r.account_id) AS accounts,
       coalesce(sum(r.opening) FILTER (WHERE r.period = $period_from), 0) AS opening,
       sum(r.charged) AS charged, sum(r.recalculated) AS recalculated, sum(r.penalty) AS penalty,
       sum(r.paid) AS paid,
       coalesce(sum(r.closing) FILTER (WHERE r.period = $period_to), 0) AS closing
FROM service_balances r
LEFT JOIN services s ON s.service_id = r.service_id
LEFT JOIN organizations o ON o.org_id = r.supplier_id
WHERE r.period BETWEEN $period_from AND $period_to
GROUP BY r.service_id, r.supplier_id
ORDER BY r.service_id NULLS LAST, r.supplier_id NULLS LAST
