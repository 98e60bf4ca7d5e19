-- The newest collected tombstone's version of p_entity, 0 if none was collected (the owner
-- answers Query::Epoch with it; see common/sql/0022_collect_tombstones.sql).
CREATE OR REPLACE FUNCTION moa_tombstone_horizon(p_entity text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT version FROM moa_tombstone_horizon WHERE entity = p_entity), 0)
$$;
