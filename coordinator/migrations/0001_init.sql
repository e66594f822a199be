-- Ingot coordinator schema, version 1. Written for both SQLite and PostgreSQL:
-- only TEXT and BIGINT columns, the documents themselves are JSON in `data`.
-- Columns next to `data` exist for uniqueness, lookups and optimistic locking.
CREATE TABLE nodes (
    uuid TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    instance_uuid TEXT UNIQUE,
    provision_state TEXT NOT NULL,
    reservation TEXT,
    version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE ports (
    uuid TEXT PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    node_uuid TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX ports_node_uuid ON ports (node_uuid);
CREATE TABLE allocations (
    uuid TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    node_uuid TEXT,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
