-- The owner epoch: what it is made of and what changes it is explained in
-- common/sql/0020_owner_epoch.sql (which creates moa_epoch_seed).
--
-- Computed once per session and kept in the session setting moa.epoch: reading the control
-- file (pg_control_checkpoint) took up to 250 ms under load, on every statement that carries
-- an epoch. None of its parts can change during a session (a promoted standby's sessions were
-- read-only; a restore restarts the server or re-creates the database).
--
-- A failover keeps the epoch: a promoted standby has the primary's system identifier, database
-- oid and seed (it is a copy), and the timeline a promotion starts is not part of the epoch.
-- A point-in-time recovery is: the timeline switches that a recovery target ended (the reason
-- in the timeline's history file is the target, "before 2026-12-07 ..."; a promotion's is "no
-- recovery target specified"). Where no timeline switch was a recovery's, the part is '1', what
-- the timeline of a never-promoted server was in the earlier formula, so an upgrade from it
-- changes no epoch of such a database (nothing is rebuilt).
CREATE OR REPLACE FUNCTION moa_epoch() RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_epoch text := current_setting('moa.epoch', true);
    v_tli text;
    v_history text;
    v_recoveries text;
BEGIN
    IF coalesce(v_epoch, '') = '' THEN
        -- the current timeline: from the WAL position on a primary (the control file's
        -- checkpoint lags a promotion until its first checkpoint), else from the checkpoint
        IF pg_is_in_recovery() THEN
            SELECT lpad(upper(to_hex(timeline_id)), 8, '0') INTO v_tli FROM pg_control_checkpoint();
        ELSE
            v_tli := left(pg_walfile_name(pg_current_wal_lsn()), 8);
        END IF;
        IF v_tli <> '00000001' THEN
            BEGIN
                -- every switch since timeline 1, one line each: timeline, LSN, reason
                v_history := pg_read_file('pg_wal/' || v_tli || '.history', 0, 1048576, true);
            EXCEPTION WHEN insufficient_privilege THEN
                -- not a superuser (nor pg_read_server_files): promotions and recoveries alike
                -- then keep the epoch; the replicas' version check still catches a recovery
                v_history := NULL;
            END;
        END IF;
        SELECT string_agg(split_part(line, E'\t', 1) || '@' || split_part(line, E'\t', 2), ',' ORDER BY n)
          INTO v_recoveries
          FROM regexp_split_to_table(coalesce(v_history, ''), E'\n') WITH ORDINALITY AS h(line, n)
         WHERE line ~ '^[0-9]' AND split_part(line, E'\t', 3) <> 'no recovery target specified';
        SELECT left(md5(concat_ws('/',
                   (SELECT system_identifier FROM pg_control_system()),
                   coalesce(v_recoveries, '1'),
                   (SELECT oid FROM pg_database WHERE datname = current_database()),
                   (SELECT seed FROM moa_epoch_seed))), 16)
        INTO v_epoch;
        PERFORM set_config('moa.epoch', v_epoch, false);
    END IF;
    RETURN v_epoch;
END;
$$;
