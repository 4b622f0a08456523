-- The event log. One row per event; rows are never updated or deleted.
CREATE TABLE events (
	seq         INTEGER PRIMARY KEY,
	id          TEXT    NOT NULL UNIQUE,
	stream      TEXT    NOT NULL,
	version     INTEGER NOT NULL,
	type        TEXT    NOT NULL,
	schema      INTEGER NOT NULL DEFAULT 1,
	data        BLOB    NOT NULL,
	meta        BLOB    NOT NULL,
	recorded_at INTEGER NOT NULL,
	UNIQUE (stream, version)
);

CREATE INDEX events_type_seq ON events (type, seq);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
	SELECT RAISE(ABORT, 'events are immutable: UPDATE is not allowed');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
	SELECT RAISE(ABORT, 'events are immutable: DELETE is not allowed');
END;
