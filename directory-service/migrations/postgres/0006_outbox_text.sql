-- The outbox stores change sets as text instead of json. Only the directory writes
-- them, from its own encoder, and it reads them back with its own decoder; json made
-- PostgreSQL parse every change set as it was written, about a millisecond per
-- 1,000 memberships, inside the tenant's turn (7% of a bulk AddGroupMembers).
-- Changing the type rewrites the table once: its size is what the retention keeps.
ALTER TABLE change_events ALTER COLUMN changes TYPE text;
DO $$
BEGIN
    ALTER TABLE change_events ALTER COLUMN changes SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available; the outbox keeps pglz';
END
$$;
