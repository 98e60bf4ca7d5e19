-- Stores one view in one round trip: the visit (once per event id), the latest view per item
-- (an older view arriving late loses), and the pair's versioned state for the caller's replica.
-- moa.request_id ties the recent_visit change event to the view's request (and tells the
-- capture trigger that the service wakes its relay itself).
CREATE OR REPLACE FUNCTION moa_record_visit(
    p_event_id uuid, p_user_id bigint, p_item_id bigint, p_viewed_at_us bigint, p_seq bigint, p_request_id text)
RETURNS TABLE (inserted boolean, key text, version bigint, deleted boolean, data jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_inserted boolean;
BEGIN
    PERFORM set_config('moa.request_id', coalesce(nullif(p_request_id, ''), '-'), true);
    INSERT INTO visit (event_id, user_id, item_id, viewed_at, seq)
    VALUES (p_event_id, p_user_id, p_item_id, to_timestamp(p_viewed_at_us / 1000000.0), p_seq)
    ON CONFLICT (event_id) DO NOTHING;
    v_inserted := FOUND;
    IF v_inserted THEN
        INSERT INTO recent_visit AS r (user_id, item_id, viewed_at, seq, viewed_at_us)
        VALUES (p_user_id, p_item_id, to_timestamp(p_viewed_at_us / 1000000.0), p_seq, p_viewed_at_us)
        ON CONFLICT (user_id, item_id) DO UPDATE
            SET viewed_at = EXCLUDED.viewed_at, seq = EXCLUDED.seq, viewed_at_us = EXCLUDED.viewed_at_us
            WHERE (r.viewed_at_us, r.seq) < (EXCLUDED.viewed_at_us, EXCLUDED.seq);
    END IF;
    RETURN QUERY
        SELECT v_inserted, v.key, v.version, v.deleted, v.data
        FROM (SELECT 1) AS one
        LEFT JOIN moa_entity_version v
            ON v.entity = 'visit' AND v.key = p_user_id::text || ':' || p_item_id::text;
END;
$$;
