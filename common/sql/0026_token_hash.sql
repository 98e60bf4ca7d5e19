-- Users now leave the user service with their token's keyed hash instead of the token
-- (common::token::token_hash, docs/security.md). What this database held of other services'
-- users (the cache's hot copy, the read model) was keyed by token: dropped here, built again
-- from the owner. The read model's state is kept but made incomplete under an epoch no owner
-- has, so the next start rebuilds it (a new generation: a backfill still running in an
-- older instance cannot write into it).
DELETE FROM moa_cache_entry WHERE cache = 'user';
DELETE FROM moa_read_model WHERE kind = 'user';
UPDATE moa_read_model_state
   SET epoch = 'before-token-hashes', complete = false, cursor = NULL, copied = 0, max_version = 0,
       generation = generation + 1
 WHERE kind = 'user';
