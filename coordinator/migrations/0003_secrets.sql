-- Secrets the coordinators of one database share, made once by the first
-- to need them (the key that signs image URLs).
CREATE TABLE coordinator_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
