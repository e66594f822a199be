-- Coordinators that share one database (issue 17): the drivers each one
-- offers, a fencing token on every node, and the per-node journal of what
-- each coordinator did to each node. Portable SQL (SQLite and PostgreSQL).
ALTER TABLE conductors ADD COLUMN drivers TEXT NOT NULL DEFAULT '';
-- Grows every time another coordinator takes the node's reservation. A write
-- or an action under an older token is refused.
ALTER TABLE nodes ADD COLUMN fence BIGINT NOT NULL DEFAULT 0;
-- Every power and agent command, with the coordinator and the token it held;
-- times from the database's clock (milliseconds since the epoch). finished_ms
-- stays NULL when the coordinator died before the command returned.
CREATE TABLE node_events (
    id TEXT PRIMARY KEY,
    node_uuid TEXT NOT NULL,
    conductor TEXT NOT NULL,
    fence BIGINT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT
);
CREATE INDEX node_events_node ON node_events (node_uuid, started_ms);
