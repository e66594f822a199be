-- The node list in SQL (issue 21 item 5): the fields the list filters and
-- sorts on, copied out of `data` into columns, with indexes that end in the
-- creation order (created_at, uuid) so that a filtered page is read in order
-- and stops at its limit. Written by every insert and update of a node; the
-- coordinator fills them from `data` at start for rows that lack them
-- (driver IS NULL: rows written before this migration, on SQLite and on
-- PostgreSQL alike, since the two spell JSON access differently).
-- conductor_group is stored lower-cased (its filter ignores case).
-- Portable SQL (SQLite and PostgreSQL).
ALTER TABLE nodes ADD COLUMN driver TEXT;
ALTER TABLE nodes ADD COLUMN resource_class TEXT;
ALTER TABLE nodes ADD COLUMN conductor_group TEXT;
ALTER TABLE nodes ADD COLUMN owner TEXT;
ALTER TABLE nodes ADD COLUMN lessee TEXT;
ALTER TABLE nodes ADD COLUMN maintenance BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN retired BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN fault TEXT;
ALTER TABLE nodes ADD COLUMN parent_node TEXT;
ALTER TABLE nodes ADD COLUMN shard TEXT;
CREATE INDEX nodes_created ON nodes (created_at, uuid);
CREATE INDEX nodes_by_provision_state ON nodes (provision_state, created_at, uuid);
CREATE INDEX nodes_by_driver ON nodes (driver, created_at, uuid);
CREATE INDEX nodes_by_resource_class ON nodes (resource_class, created_at, uuid);
CREATE INDEX nodes_by_conductor_group ON nodes (conductor_group, created_at, uuid);
CREATE INDEX nodes_by_owner ON nodes (owner, created_at, uuid);
CREATE INDEX nodes_by_lessee ON nodes (lessee, created_at, uuid);
CREATE INDEX nodes_by_maintenance ON nodes (maintenance, created_at, uuid);
CREATE INDEX nodes_by_fault ON nodes (fault, created_at, uuid);
CREATE INDEX nodes_by_parent_node ON nodes (parent_node, created_at, uuid);
CREATE INDEX nodes_by_shard ON nodes (shard, created_at, uuid);
