-- Compaction deletes change sets by age.
CREATE INDEX change_events_by_commit_time ON change_events (commit_time);
