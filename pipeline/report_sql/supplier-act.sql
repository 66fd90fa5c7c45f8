-- title: Акт сверки с поставщиком
-- about: По каждому поставщику за диапазон: долг жителей на начало, начислено (с перерасчётами
-- about: и пенями), собрано для поставщика (его доля полученных платежей по реестру
-- about: расщепления — распределения платежей, авансов и возвратов), перечислено — доля
-- about: поставщика в платежах тех дней, за которые агент перевёл деньги расчётному центру
-- about: (agent_settlements: агент и дни реестра), к перечислению — собрано минус перечислено,
-- about: долг жителей на конец. Своих платёжных поручений поставщикам биллинг не хранит.
-- params: $period_from, $period_to — первый и последний период (ГГГГ-ММ)
-- column: supplier_id = Поставщик (код)
-- column: supplier_name = Поставщик
-- column: inn = ИНН
-- column: opening = Долг жителей на начало
-- column: charged = Начислено
-- column: collected = Собрано для поставщика
-- column: transferred = Перечислено
-- column: owed = К перечислению
-- column: closing = Долг жителей на конец
-- money: opening, charged, collected, transferred, owed, closing
-- total: supplier_id
WITH settled_days AS (
    SELECT DISTINCT agent, CAST(strptime(trim(day), '%d.%m.%Y') AS DATE) AS paid_on
    FROM (SELECT agent, unnest(string_split(days, ',')) AS day FROM agent_settlements
          WHERE days IS NOT NULL AND days <> '')
), received AS (
    SELECT a.supplier_id, sum(a.amount) AS collected,
           coalesce(sum(a.amount) FILTER (WHERE s.agent IS NOT NULL), 0) AS transferred
    FROM allocations a LEFT JOIN settled_days s ON s.agent = a.agent AND s.paid_on = a.paid_on
    WHERE a.period BETWEEN $period_from AND $period_to AND a.kind IN ('payment', 'advance', 'refund')
        AND a.supplier_id IS NOT NULL
    GROUP BY a.supplier_id
), ledger AS (
    SELECT supplier_id,
           coalesce(sum(opening) FILTER (WHERE period = $period_from), 0) AS opening,
           sum(charged + recalculated + penalty) AS charged,
           coalesce(sum(closing) FILTER (WHERE period = $period_to), 0) AS closing
    FROM balances WHERE period BETWEEN $period_from AND $period_to AND supplier_id IS NOT NULL
    GROUP BY supplier_id
)
SELECT l.supplier_id, o.name AS supplier_name, o.inn, l.opening, l.charged,
       coalesce(r.collected, 0) AS collected, coalesce(r.transferred, 0) AS transferred,
       coalesce(r.collected, 0) - coalesce(r.transferred, 0) AS owed, l.closing
FROM ledger l
LEFT JOIN received r USING (supplier_id)
LEFT JOIN organizations o ON o.org_id = l.supplier_id
ORDER BY l.supplier_id
