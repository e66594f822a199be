-- The per-node journal becomes the node history of Ironic's API (1.78,
-- with the fields of 1.113 and 1.115): what happened, how bad, to which
-- state, who asked, and how it ended (issue 21). Rows written before this
-- migration keep NULLs and read as INFO events. Portable SQL (SQLite and
-- PostgreSQL).
ALTER TABLE node_events ADD COLUMN severity TEXT NOT NULL DEFAULT 'INFO';
-- The text of the event; NULL: made from kind and detail when read.
ALTER TABLE node_events ADD COLUMN event TEXT;
-- The API caller who asked (user and project ids), when known.
ALTER TABLE node_events ADD COLUMN user_id TEXT;
ALTER TABLE node_events ADD COLUMN project TEXT;
-- The node's provision state and target when the event was recorded.
ALTER TABLE node_events ADD COLUMN state TEXT;
ALTER TABLE node_events ADD COLUMN target_state TEXT;
-- How the action or step ended (`succeeded`, or why it failed).
ALTER TABLE node_events ADD COLUMN result TEXT;
-- A duration that is not finished_ms - started_ms: the time the node spent
-- in its previous state (state changes), or a step that another
-- coordinator started.
ALTER TABLE node_events ADD COLUMN duration_ms BIGINT;
