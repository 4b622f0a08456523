-- Time-range queries binary-search seq instead (recorded_at grows with seq:
-- the writer never records a batch earlier than the one before it), so no
-- append pays for a fifth b-tree.
DROP INDEX IF EXISTS events_recorded_at;
