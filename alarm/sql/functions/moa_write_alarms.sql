-- The function records the changes it makes itself (version rows and outbox events, exactly
-- what moa_capture would write, with each request's own id) and tells the capture trigger to
-- skip them with moa.capture = 'caller' (transaction-local, reset before it returns). Every
-- other writer (an operator's psql, a future code path) is still captured by the trigger
-- (alarm/migrations/0012_alarm_write_set_based.sql gives it that WHEN clause).
--
-- Sets or clears several alarms in one transaction (the service coalesces concurrent requests,
-- see common::batch) and returns each pair's versioned state after the batch, tagged with the
-- 1-based position of the request it answers. An alarm loaded before capture existed that the
-- batch did not change (a set of an alarm already set) has no version row: its state is the
-- row at version 0 (moa_alarm_state.sql; moa_alarm_rows() reads the same row, without data). A batch that names one (user, item) pair twice
-- is run request by request (the answers must then be the states in between), as before.
--
-- Every statement here reaches its rows by key through a unique index; enable_seqscan = off
-- keeps the plans there even when the statistics say the alarm table is empty (it was
-- vacuumed after every alarm was cleared) while it holds thousands of dead rows.
CREATE OR REPLACE FUNCTION moa_write_alarms(p_user_ids integer[], p_item_ids integer[], p_sets boolean[],
                                            p_request_ids text[])
RETURNS TABLE (ord integer, key text, version bigint, deleted boolean, data jsonb)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    i integer;
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(p_user_ids, p_item_ids) AS r(user_id, item_id)
               GROUP BY r.user_id, r.item_id HAVING count(*) > 1) THEN
        FOR i IN 1 .. coalesce(array_length(p_user_ids, 1), 0) LOOP
            PERFORM set_config('moa.request_id', coalesce(nullif(p_request_ids[i], ''), '-'), true);
            IF p_sets[i] THEN
                INSERT INTO public.alarm (item_id, user_id, created)
                VALUES (p_item_ids[i], p_user_ids[i], now()::timestamp)
                ON CONFLICT (user_id, item_id) DO NOTHING;
            ELSE
                DELETE FROM public.alarm a WHERE a.user_id = p_user_ids[i] AND a.item_id = p_item_ids[i];
            END IF;
            RETURN QUERY
                SELECT i, s.key, s.version, s.deleted, s.data FROM moa_alarm_state(p_user_ids[i], p_item_ids[i]) s;
        END LOOP;
        RETURN;
    END IF;

    PERFORM set_config('moa.capture', 'caller', true);
    -- The keys and event payloads are the ones moa_capture builds: "user_id:item_id", the row
    -- as JSON; the versions are drawn in request order, so are the outbox ids. (A data-modifying
    -- CTE runs to completion whether or not the main statement reads it: "versioned" does.)
    WITH req AS (
        SELECT r.user_id, r.item_id, r.is_set, coalesce(nullif(r.request_id, ''), '-') AS request_id,
               r.user_id::text || ':' || r.item_id::text AS key, r.ord
        FROM unnest(p_user_ids, p_item_ids, p_sets, p_request_ids)
             WITH ORDINALITY AS r(user_id, item_id, is_set, request_id, ord)
    ), inserted AS (
        INSERT INTO public.alarm (item_id, user_id, created)
        SELECT r.item_id, r.user_id, now()::timestamp FROM req r WHERE r.is_set ORDER BY r.ord
        ON CONFLICT (user_id, item_id) DO NOTHING
        RETURNING *
    ), removed AS (
        DELETE FROM public.alarm a USING req r
        WHERE NOT r.is_set AND a.user_id = r.user_id AND a.item_id = r.item_id
        RETURNING a.*
    ), changed AS (
        SELECT r.key, r.ord, r.request_id, c.deleted, c.data
        FROM (SELECT ins.user_id, ins.item_id, false AS deleted, to_jsonb(ins) AS data FROM inserted ins
              UNION ALL
              SELECT del.user_id, del.item_id, true, to_jsonb(del) FROM removed del) c
        JOIN req r ON r.user_id = c.user_id AND r.item_id = c.item_id
    ), numbered AS (
        SELECT c.*, nextval('moa_version_seq') AS version
        FROM (SELECT * FROM changed ch ORDER BY ch.ord) c
    ), versioned AS (
        INSERT INTO moa_entity_version (entity, key, version, deleted, data)
        SELECT 'alarm', n.key, n.version, n.deleted, n.data FROM numbered n
        ON CONFLICT (entity, key) DO UPDATE
            SET version = EXCLUDED.version, deleted = EXCLUDED.deleted, data = EXCLUDED.data
    )
    INSERT INTO moa_outbox (exchange, payload, request_id)
    SELECT 'alarm.events',
           jsonb_build_object('entity', 'alarm', 'key', n.key, 'version', n.version,
                              'deleted', n.deleted, 'data', n.data),
           n.request_id
    FROM numbered n
    ORDER BY n.version;
    PERFORM set_config('moa.capture', '', true);

    RETURN QUERY
        SELECT r.ord::integer, s.key, s.version, s.deleted, s.data
        FROM unnest(p_user_ids, p_item_ids) WITH ORDINALITY AS r(user_id, item_id, ord)
        CROSS JOIN LATERAL moa_alarm_state(r.user_id, r.item_id) s
        ORDER BY r.ord;
END;
$$;
