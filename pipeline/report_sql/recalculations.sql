-- title: Перерасчёты по причинам
-- about: Перерасчёты, проведённые в периодах диапазона (recalculations), по причине, услуге и
-- about: поставщику: строк, лицевых счетов, доначислено (плюс), снято (минус) и итог.
-- params: $period_from, $period_to — первый и последний период (ГГГГ-ММ)
-- column: reason = Причина
-- column: service_id = Услуга (код)
-- column: service_name = Услуга
-- column: supplier_id = Поставщик (код)
-- column: supplier_name = Поставщик
-- column: lines = Строк перерасчёта
-- column: accounts = Лицевых счетов
-- column: added = Доначислено
-- column: removed = Снято
-- column: amount = Итого перерасчёт
-- money: added, removed, amount
-- total: reason
-- sum: lines
SELECT r.reason, r.service_id, any_value(s.name) AS service_name, r.supplier_id,
       any_value(o.name) AS supplier_name, count(*) AS lines, count(DISTINCT r.account_id) AS accounts,
       coalesce(sum(r.amount) FILTER (WHERE r.amount > 0), 0) AS added,
       coalesce(sum(r.amount) FILTER (WHERE r.amount < 0), 0) AS removed,
       sum(r.amount) AS amount
FROM recalculations r
LEFT JOIN services s ON s.service_id = r.service_id
LEFT JOIN organizations o ON o.org_id = r.supplier_id
WHERE r.period BETWEEN $period_from AND $period_to AND r.amount <> 0
GROUP BY r.reason, r.service_id, r.supplier_id
ORDER BY r.reason, r.service_id, r.supplier_id
