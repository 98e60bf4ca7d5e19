-- A leaner outbox and capture, for write throughput.
--
-- Delete on publish: the relay deletes the rows it drains in the transaction that publishes
-- them (DELETE ... FOR UPDATE SKIP LOCKED ... RETURNING, committed after the broker's
-- confirms; rolled back if any is refused). A row is written once and deleted once, instead of
-- being rewritten whole by a claim and a mark and deleted an hour later by a purge; every row
-- in the table is unsent, and a relay that dies mid-drain releases its rows with its session.
DELETE FROM moa_outbox WHERE sent_at IS NOT NULL;
DROP INDEX IF EXISTS moa_outbox_unsent;
ALTER TABLE moa_outbox DROP COLUMN IF EXISTS claimed_until, DROP COLUMN IF EXISTS sent_at;

-- moa_capture_key(): defined in common/sql/functions/moa_capture_key.sql (applied on every start).

-- moa_capture(): defined in common/sql/functions/moa_capture.sql (applied on every start).
