-- Every user service instance keeps each user's recent views in memory, so /visit needs no
-- database round trip. recent_visit changes are captured like any other entity and fanned
-- out on user.visits, which only user service instances bind (views consumed by one instance
-- reach the others this way).
ALTER TABLE recent_visit ADD COLUMN IF NOT EXISTS viewed_at_us bigint;
UPDATE recent_visit SET viewed_at_us = (extract(epoch FROM viewed_at) * 1000000)::bigint WHERE viewed_at_us IS NULL;

INSERT INTO moa_entity_version (entity, key, version, deleted, data)
SELECT 'visit', r.user_id::text || ':' || r.item_id::text, nextval('moa_version_seq'), false, to_jsonb(r)
FROM recent_visit r
ON CONFLICT (entity, key) DO NOTHING;

DROP TRIGGER IF EXISTS moa_capture_visit ON recent_visit;
CREATE TRIGGER moa_capture_visit
    AFTER INSERT OR UPDATE OR DELETE ON recent_visit
    FOR EACH ROW EXECUTE FUNCTION moa_capture('visit', 'user.visits', 'user_id', 'item_id');
