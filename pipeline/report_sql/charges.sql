-- title: Начисления по услугам и домам
-- about: Начислено (charges) и перерасчитано (recalculations) за периоды диапазона, по дому,
-- about: услуге и поставщику; объём — в единицах услуги (по начислениям, без перерасчётов).
-- params: $period_from, $period_to — первый и последний период (ГГГГ-ММ)
-- column: building_id = Дом (код)
-- column: address = Адрес дома
-- column: service_id = Услуга (код)
-- column: service_name = Услуга
-- column: unit = Ед. изм.
-- column: supplier_id = Поставщик (код)
-- column: supplier_name = Поставщик
-- column: accounts = Лицевых счетов
-- column: volume = Объём
-- column: charged = Начислено
-- column: recalculated = Перерасчёт
-- column: total = Итого начислено
-- money: charged, recalculated, total
-- total: building_id
WITH place AS (
    SELECT a.account_id, p.building_id
    FROM accounts a JOIN premises p USING (premise_id)
), charged AS (
    SELECT pl.building_id, c.service_id, c.supplier_id, count(DISTINCT c.account_id) AS accounts,
           sum(c.volume) AS volume, sum(c.amount) AS charged
    FROM charges c LEFT JOIN place pl USING (account_id)
    WHERE c.period BETWEEN $period_from AND $period_to
    GROUP BY ALL
), recalculated AS (
    SELECT pl.building_id, r.service_id, r.supplier_id, sum(r.amount) AS recalculated
    FROM recalculations r LEFT JOIN place pl USING (account_id)
    WHERE r.period BETWEEN $period_from AND $period_to
    GROUP BY ALL
), joined AS (
    SELECT coalesce(c.building_id, r.building_id) AS building_id,
           coalesce(c.service_id, r.service_id) AS service_id,
           coalesce(c.supplier_id, r.supplier_id) AS supplier_id,
           coalesce(c.accounts, 0) AS accounts, c.volume,
           coalesce(c.charged, 0) AS charged, coalesce(r.recalculated, 0) AS recalculated
    FROM charged c FULL JOIN recalculated r
        ON c.building_id IS NOT DISTINCT FROM r.building_id AND c.service_id = r.service_id
        AND c.supplier_id IS NOT DISTINCT FROM r.supplier_id
)
SELECT j.building_id, b.address, j.service_id, s.name AS service_name, s.unit, j.supplier_id,
       o.name AS supplier_name, j.accounts, j.volume, j.charged, j.recalculated,
       j.charged + j.recalculated AS total
FROM joined j
LEFT JOIN buildings b USING (building_id)
LEFT JOIN services s USING (service_id)
LEFT JOIN organizations o ON o.org_id = j.supplier_id
ORDER BY j.building_id NULLS LAST, j.service_id, j.supplier_id
