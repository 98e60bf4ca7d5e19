-- The owner epoch: what it is made of and what changes it is explained in
-- common/sql/0020_owner_epoch.sql (which creates moa_epoch_seed).
--
-- Computed once per session and kept in the session setting moa.epoch: reading the control
-- file (pg_control_checkpoint) took up to 250 ms under load, on every statement that carries
-- an epoch. None of its parts can change during a session (a promoted standby's sessions were
-- read-only; a restore restarts the server or re-creates the database).
CREATE OR REPLACE FUNCTION moa_epoch() RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_epoch text := current_setting('moa.epoch', true);
BEGIN
    IF coalesce(v_epoch, '') = '' THEN
        SELECT left(md5(concat_ws('/',
                   (SELECT system_identifier FROM pg_control_system()),
                   (SELECT timeline_id FROM pg_control_checkpoint()),
                   (SELECT oid FROM pg_database WHERE datname = current_database()),
                   (SELECT seed FROM moa_epoch_seed))), 16)
        INTO v_epoch;
        PERFORM set_config('moa.epoch', v_epoch, false);
    END IF;
    RETURN v_epoch;
END;
$$;
