package eventlog

import (
	"context"
	"database/sql"
	"time"
)

// checkpointInterval is how often, while appends happen, the WAL is copied
// back into the database file when no replica does it; ten times as often
// after burstEvents were appended in one interval.
const (
	checkpointInterval = time.Second
	burstEvents        = 1000
)

// restartFrames is the WAL length (in frames, pages) past which a
// checkpoint also makes the next commit start the WAL over, and then cut
// the file back to walSizeLimit.
const (
	restartFrames = 4096
	walSizeLimit  = restartFrames * 4096
)

// checkpointLoop copies the WAL back into the database file, on its own
// connection, once a second while events are appended (ten times a second
// during a burst). The writer's
// connection never checkpoints (wal_autocheckpoint(0)): SQLite's automatic
// checkpoint runs inside a commit, so one append in every few dozen paid for
// copying a thousand pages, and the appenders waiting behind it with it.
//
// A passive checkpoint takes no lock that appends wait for, but under
// steady appends it never catches up with the end of the WAL, and SQLite
// starts the WAL over only after a checkpoint that did: the file would grow
// without end. So once the WAL is longer than restartFrames, the loop asks
// the writer to checkpoint once itself, between two commits: with no other
// writer about, that checkpoint copies the few frames this one left and
// completes, and the next commit starts the WAL over and cuts the file back
// (journal_size_limit). A RESTART checkpoint from here would do the same
// but contend for the write lock, and an append that lost would sleep in
// SQLite's busy handler for milliseconds.
//
// With a replica, Litestream checkpoints instead, after it has copied the
// frames; this loop does not run.
func (l *Log) checkpointLoop(ctx context.Context, db *sql.DB) {
	timer := time.NewTimer(checkpointInterval / 10)
	defer timer.Stop()
	var done int64 // the seq the last checkpoint covered
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		next := checkpointInterval
		seq := l.LastSeq()
		if seq-done >= burstEvents {
			next = checkpointInterval / 10 // a burst: keep up with it
		}
		if seq != done && !l.w.checkpointDue.Load() {
			var busy, frames, copied int64
			err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
			switch {
			case err != nil && ctx.Err() == nil:
				l.Logger.Warn("cannot checkpoint the event log", "error", err)
			case err == nil:
				done = seq
			}
			if frames >= restartFrames {
				l.w.checkpointDue.Store(true)
			}
		}
		timer.Reset(next)
	}
}
