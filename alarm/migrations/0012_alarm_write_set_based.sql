-- Alarm writes as set-based statements: a batch of N requests is a handful of statements, not
-- N times (an INSERT or DELETE, a trigger call with its two statements, a SELECT).
--
-- The function records the changes it makes itself (version rows and outbox events, exactly
-- what moa_capture would write, with each request's own id) and tells the capture trigger to
-- skip them with moa.capture = 'caller' (transaction-local, reset before it returns). Every
-- other writer (an operator's psql, a future code path) is still captured by the trigger.
DROP TRIGGER IF EXISTS moa_capture_alarm ON public.alarm;
CREATE TRIGGER moa_capture_alarm
    AFTER INSERT OR UPDATE OR DELETE ON public.alarm
    FOR EACH ROW
    WHEN (current_setting('moa.capture', true) IS DISTINCT FROM 'caller')
    EXECUTE FUNCTION moa_capture('alarm', 'alarm.events', 'user_id', 'item_id');

-- moa_write_alarms(): defined in alarm/sql/functions/moa_write_alarms.sql (applied on every start).
