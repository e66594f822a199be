-- Coordinators that share this database, with a heartbeat from the
-- database's own clock (milliseconds since the epoch). A reservation held
-- under a name that is not alive is released.
CREATE TABLE conductors (
    hostname TEXT PRIMARY KEY,
    conductor_group TEXT NOT NULL,
    api_url TEXT NOT NULL,
    online BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL
);
