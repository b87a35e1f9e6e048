-- The outbox compresses change sets with lz4 instead of pglz: a 1,000-member
-- change set is about 200 kB of JSON, and pglz spent several milliseconds on it
-- inside the writer's turn (a tenth of the database's time in a bulk add).
-- A server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE change_events ALTER COLUMN changes SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available; the outbox keeps pglz';
END
$$;
