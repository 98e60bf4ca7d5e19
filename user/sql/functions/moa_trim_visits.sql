-- Trims the visit book (see user/migrations/0014_visit_retention.sql and TrimVisits in
-- user/src/store.rs): views received longer than p_retention ago, and each user's recent_visit
-- rows past the newest p_keep. Answers how many of each were deleted. Instances take turns
-- (advisory lock).
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
