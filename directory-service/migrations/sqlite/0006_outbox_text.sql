-- PostgreSQL only (the outbox's column type); SQLite stores the text as it is.
SELECT 1;
