-- The hot copy of the user and alarm caches (common/src/replica/cache.rs): one row per cached
-- entry (a user; one user's alarms), written behind the cache and deleted when the cache
-- evicts it, so it stays about the size of the cache, not of the owner's data. A start loads
-- the most recently saved entries, served only while their owner does not answer.
CREATE TABLE IF NOT EXISTS moa_cache_entry (
    cache    text        NOT NULL,
    grp      bigint      NOT NULL,
    epoch    text        NOT NULL,
    entry    jsonb       NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cache, grp)
);
CREATE INDEX IF NOT EXISTS moa_cache_entry_recent ON moa_cache_entry (cache, saved_at DESC);

-- Users and alarms were full copies persisted in moa_replica before; nothing reads those rows
-- any more (the item catalog still lives there).
DELETE FROM moa_replica WHERE entity IN ('user', 'alarm');
DELETE FROM moa_replica_epoch WHERE entity IN ('user', 'alarm');
