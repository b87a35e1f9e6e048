-- PostgreSQL only (the outbox's compression); SQLite does not compress.
SELECT 1;
