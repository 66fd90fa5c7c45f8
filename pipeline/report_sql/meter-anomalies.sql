-- title: Аномалии показаний приборов учёта
-- about: За периоды диапазона: (1) отклонённые показания (reading_issues, с причиной);
-- about: (2) нулевой или отрицательный расход по показаниям (meter_volumes, способ «по прибору»);
-- about: (3) скачок: расход по показаниям больше среднего расхода того же прибора по показаниям
-- about: за 6 предыдущих закрытых периодов (нужно не меньше 2 таких месяцев) в $jump раз и более.
-- params: $period_from, $period_to — первый и последний период (ГГГГ-ММ)
-- param: jump = 3 — во сколько раз расход больше среднего считается скачком
-- column: period = Период
-- column: meter_id = Прибор учёта
-- column: service_id = Услуга (код)
-- column: address = Адрес
-- column: anomaly = Аномалия
-- column: read_on = Дата показания
-- column: value = Показание или расход
-- column: average = Средний расход
-- column: detail = Подробности
WITH place AS (
    SELECT m.meter_id, m.service_id, coalesce(p.building_id, m.building_id) AS building_id,
           b.address || CASE WHEN p.premise_id IS NULL THEN ' (общедомовой)'
                             WHEN p.kind = 'residential' THEN ', кв. ' || p.number
                             ELSE ', пом. ' || p.number END AS address
    FROM meters m
    LEFT JOIN premises p ON p.premise_id = m.premise_id
    LEFT JOIN buildings b ON b.building_id = coalesce(p.building_id, m.building_id)
), metered AS (
    SELECT period, meter_id, service_id, volume, curr_read_on,
           CAST(substr(period, 1, 4) AS INTEGER) * 12 + CAST(substr(period, 6, 2) AS INTEGER) AS month
    FROM meter_volumes WHERE method = 'meter'
), history AS (
    SELECT c.period, c.meter_id, avg(h.volume) AS average, count(*) AS months
    FROM metered c JOIN metered h ON h.meter_id = c.meter_id AND h.month BETWEEN c.month - 6 AND c.month - 1
    WHERE c.period BETWEEN $period_from AND $period_to
    GROUP BY c.period, c.meter_id
), found AS (
    SELECT i.period, i.meter_id, NULL AS service_id, 'Показание отклонено' AS anomaly, i.read_on,
           CAST(i.value AS DECIMAL(18, 6)) AS value, CAST(NULL AS DECIMAL(18, 6)) AS average,
           i.reason AS detail
    FROM reading_issues i WHERE i.period BETWEEN $period_from AND $period_to
    UNION ALL
    SELECT period, meter_id, service_id,
           CASE WHEN volume = 0 THEN 'Нулевой расход' ELSE 'Отрицательный расход' END, curr_read_on,
           CAST(volume AS DECIMAL(18, 6)), NULL, 'расход по показаниям за месяц'
    FROM metered WHERE period BETWEEN $period_from AND $period_to AND volume <= 0
    UNION ALL
    SELECT c.period, c.meter_id, c.service_id, 'Скачок расхода', c.curr_read_on,
           CAST(c.volume AS DECIMAL(18, 6)), CAST(round(h.average, 6) AS DECIMAL(18, 6)),
           'больше среднего за ' || h.months || ' мес. в ' || $jump || ' раз и более'
    FROM metered c JOIN history h USING (period, meter_id)
    WHERE h.months >= 2 AND h.average > 0 AND c.volume >= $jump * h.average
)
SELECT f.period, f.meter_id, coalesce(f.service_id, pl.service_id) AS service_id, pl.address,
       f.anomaly, f.read_on, f.value, f.average, f.detail
FROM found f LEFT JOIN place pl USING (meter_id)
ORDER BY f.period, f.meter_id, f.anomaly, f.read_on
