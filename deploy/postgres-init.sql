-- Runs once, when the PostgreSQL volume is new: the authorization service keeps its
-- projection in a database of its own, beside the directory's.
CREATE DATABASE authz OWNER cohort;
