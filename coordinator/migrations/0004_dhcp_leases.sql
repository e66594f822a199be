-- Addresses the coordinator's DHCP server (full mode) has offered or leased.
-- One row per address and per MAC. expires_ms: milliseconds since the epoch
-- (an offer holds the address for a short while, an ACK for the lease time).
-- Portable SQL: the same file runs on SQLite and PostgreSQL.
CREATE TABLE dhcp_leases (
    ip TEXT PRIMARY KEY,
    mac TEXT NOT NULL UNIQUE,
    expires_ms BIGINT NOT NULL,
    hostname TEXT
);
