-- Time-range queries (events list --since, replay --until TIME) seek by time.
CREATE INDEX events_recorded_at ON events (recorded_at);
