-- An entity's key: its key columns' values joined by ':' ("user_id:item_id"), 'null' for a
-- null (used by moa_capture).
CREATE OR REPLACE FUNCTION moa_capture_key(p_row jsonb, p_columns text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(coalesce(p_row ->> k.c, 'null'), ':' ORDER BY k.n)
    FROM unnest(p_columns) WITH ORDINALITY AS k(c, n)
$$;
