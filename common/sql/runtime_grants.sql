-- What a service's runtime login role (item_service, ...) may do in its own database, and no
-- more: read and write rows of every table, use the sequences, call the functions; no DDL (it
-- owns nothing, and PUBLIC may not create in the schema), no connection to this database for
-- any other role but the owner and superusers. Run by the owner role (common::db::migrate) in
-- the transaction after each migration step, so a table a migration adds is covered at once.
-- The role is the session setting moa.runtime_role (an identifier cannot be a parameter).
-- See docs/security.md, "PostgreSQL: a role per service".
DO $$
DECLARE
    v_role text := current_setting('moa.runtime_role');
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), v_role);
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', v_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I', v_role);
    -- the applied migrations are read (a start checks them), never written, at run time
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON moa_migrations FROM %I', v_role);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', v_role);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO %I', v_role);
END
$$;
