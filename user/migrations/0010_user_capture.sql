-- Capture every change of "user" rows (service or operator) as versioned events on user.events.
--
-- Its effect is unchanged since it was first applied; only how it gets there was made cheaper
-- for large tables (1M users: see docs/performance.md, "huge seed"), so databases that applied
-- the earlier text are in the same state as those applying this one.

-- The backfill below is one large transaction: do not wait for its WAL flush per statement,
-- and give the index builds memory enough to sort in one pass.
SET LOCAL synchronous_commit = off;
SET LOCAL maintenance_work_mem = '256MB';

-- Rows loaded before this trigger existed (the seed) get their first version here: one
-- set-based INSERT, with the primary key of moa_entity_version and the token index built once
-- after it (a sort each) rather than maintained row by row. Ids are unique in "user" (its
-- primary key); an existing version row wins (ON CONFLICT DO NOTHING before): NOT EXISTS
-- keeps it.
ALTER TABLE moa_entity_version DROP CONSTRAINT moa_entity_version_pkey;

INSERT INTO moa_entity_version (entity, key, version, deleted, data)
SELECT 'user', u.id::text, nextval('moa_version_seq'), false, to_jsonb(u)
FROM public."user" u
WHERE NOT EXISTS (SELECT 1 FROM moa_entity_version v WHERE v.entity = 'user' AND v.key = u.id::text);

ALTER TABLE moa_entity_version ADD CONSTRAINT moa_entity_version_pkey PRIMARY KEY (entity, key);

CREATE INDEX IF NOT EXISTS moa_entity_version_user_token
    ON moa_entity_version ((data ->> 'access_token')) WHERE entity = 'user';

DROP TRIGGER IF EXISTS moa_capture_user ON public."user";
CREATE TRIGGER moa_capture_user
    AFTER INSERT OR UPDATE OR DELETE ON public."user"
    FOR EACH ROW EXECUTE FUNCTION moa_capture('user', 'user.events', 'id');
