-- Capture every change of "user" rows (service or operator) as versioned events on user.events.
CREATE INDEX IF NOT EXISTS moa_entity_version_user_token
    ON moa_entity_version ((data ->> 'access_token')) WHERE entity = 'user';

-- Rows loaded before this trigger existed (the seed) get their first version here.
INSERT INTO moa_entity_version (entity, key, version, deleted, data)
SELECT 'user', u.id::text, nextval('moa_version_seq'), false, to_jsonb(u)
FROM public."user" u
ON CONFLICT (entity, key) DO NOTHING;

DROP TRIGGER IF EXISTS moa_capture_user ON public."user";
CREATE TRIGGER moa_capture_user
    AFTER INSERT OR UPDATE OR DELETE ON public."user"
    FOR EACH ROW EXECUTE FUNCTION moa_capture('user', 'user.events', 'id');
