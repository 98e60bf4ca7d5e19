-- Capture every change of item rows (service or operator, e.g. a price UPDATE in psql)
-- as versioned events on item.events.
INSERT INTO moa_entity_version (entity, key, version, deleted, data)
SELECT 'item', i.id::text, nextval('moa_version_seq'), false, to_jsonb(i)
FROM public.item i
ON CONFLICT (entity, key) DO NOTHING;

DROP TRIGGER IF EXISTS moa_capture_item ON public.item;
CREATE TRIGGER moa_capture_item
    AFTER INSERT OR UPDATE OR DELETE ON public.item
    FOR EACH ROW EXECUTE FUNCTION moa_capture('item', 'item.events', 'id');
