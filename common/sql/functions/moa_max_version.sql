-- The newest version this database has handed out (committed or not): a replica holding a
-- higher one holds rows of another history, or forged ones.
CREATE OR REPLACE FUNCTION moa_max_version() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM moa_version_seq
$$;
