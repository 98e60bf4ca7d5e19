-- The visit book keeps what /visit needs (see user/src/store.rs, TrimVisits).
--
-- visit: every stored view, keyed by its event id so a redelivered view is stored once. Kept
-- for VISIT_RETENTION (30 days, by the time it was received): long past any redelivery (a
-- view waits in user.views or item_db's outbox for at most an outage), and a month of views
-- an operator can still look at. A view redelivered after that would be stored again, and
-- change nothing: recent_visit keeps the latest view per item, which it already holds.
-- recent_visit: each user's latest view per item; /visit shows the newest 3, so older rows
-- are removed (their deletions reach every instance's book through user.visits like any
-- change). A late view older than a user's newest 3 is stored and trimmed again.
CREATE INDEX IF NOT EXISTS visit_received ON visit (received_at);

CREATE OR REPLACE FUNCTION moa_trim_visits(p_retention interval, p_keep int)
RETURNS TABLE (visits bigint, recent bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_visits bigint;
    v_recent bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(4242003);
    DELETE FROM visit WHERE received_at < clock_timestamp() - p_retention;
    GET DIAGNOSTICS v_visits = ROW_COUNT;
    DELETE FROM recent_visit r
    USING (SELECT user_id, item_id,
                  row_number() OVER (PARTITION BY user_id ORDER BY viewed_at_us DESC, seq DESC) AS n
           FROM recent_visit) k
    WHERE k.n > p_keep AND r.user_id = k.user_id AND r.item_id = k.item_id;
    GET DIAGNOSTICS v_recent = ROW_COUNT;
    RETURN QUERY SELECT v_visits, v_recent;
END;
$$;
