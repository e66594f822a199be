-- The nodes a coordinator must look after (issue 21): a transient or wait
-- state, a pending power request, or an enabled console. Kept by every
-- insert and update of a node beside the list columns of 0007; the
-- coordinator fills it from `data` at start for rows that lack it (NULL:
-- every row written before this migration). The periodic sweep for orphans
-- (every hash_ring_reset_interval on PostgreSQL) and restart recovery read
-- these rows only, not every node.
-- Portable SQL (SQLite and PostgreSQL).
ALTER TABLE nodes ADD COLUMN needs_conductor BIGINT;
CREATE INDEX nodes_needing_a_conductor ON nodes (needs_conductor);
