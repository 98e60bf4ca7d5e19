-- The user domain's answer to a lookup (store::Query::Lookup for entity "user", which the user
-- service registers: see user/src/store.rs, OWN_ENTITIES): the versioned rows of the users
-- holding one of p_tokens. Several tokens are the cache misses of many requests asked together
-- (common/src/replica/misses.rs): one statement for all, one index probe per token on
-- moa_entity_version_user_token (user/migrations/0010_user_capture.sql).
--
-- `OFFSET 0` keeps each probe from being flattened into a join: the planner has no statistics
-- for the indexed expression (the index is partial), estimated 0.5 % of the table per token
-- and, for 256 tokens at 1M users, hashed the whole table: 400 ms, past the RPC timeout, for
-- what takes 20 ms. The rows leave with the token replaced by its hash (store::query::OwnEntity::outward, user/src/store.rs).
-- A SQL function of one statement: inlined into the caller's query, planned as before.
CREATE OR REPLACE FUNCTION moa_user_rows_by_token(p_tokens text[])
RETURNS TABLE (key text, version bigint, deleted boolean, data jsonb)
LANGUAGE sql STABLE AS $$
    SELECT v.key, v.version, v.deleted, v.data
    FROM (SELECT DISTINCT unnest(p_tokens) AS t) t
    CROSS JOIN LATERAL (SELECT * FROM moa_entity_version v
        WHERE v.entity = 'user' AND v.data ->> 'access_token' = t.t OFFSET 0) v
$$;
