package eventlog

import (
	"context"
	"database/sql"
	"time"
)

// checkpointInterval is how often, while appends happen, the WAL is copied
// back into the database file when no replica does it.
const checkpointInterval = time.Second

// restartFrames is the WAL length (in frames, pages) past which a
// checkpoint also makes the next commit start the WAL over, and then cut
// the file back to walSizeLimit.
const (
	restartFrames = 4096
	walSizeLimit  = restartFrames * 4096
)

// checkpointLoop copies the WAL back into the database file, on its own
// connection, once a second while events are appended. The writer's
// connection never checkpoints (wal_autocheckpoint(0)): SQLite's automatic
// checkpoint runs inside a commit, so one append in every few dozen paid for
// copying a thousand pages, and the appenders waiting behind it with it.
//
// A passive checkpoint takes no lock that appends wait for, but under
// steady appends it never catches up with the end of the WAL, and SQLite
// starts the WAL over only after a checkpoint that did: the file would grow
// without end. So once the WAL is longer than restartFrames, a RESTART
// checkpoint copies the few frames the passive one left, holding appends
// back only for that; the next commit starts the WAL over and truncates the
// file (journal_size_limit), and the loop looks again sooner.
//
// With a replica, Litestream checkpoints instead, after it has copied the
// frames; this loop does not run.
func (l *Log) checkpointLoop(ctx context.Context, db *sql.DB) {
	timer := time.NewTimer(checkpointInterval)
	defer timer.Stop()
	var done int64 // the seq the last checkpoint covered
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		next := checkpointInterval
		if seq := l.LastSeq(); seq != done {
			frames, err := checkpoint(ctx, db)
			switch {
			case err != nil && ctx.Err() == nil:
				l.Logger.Warn("cannot checkpoint the event log", "error", err)
			case err == nil:
				done = seq
			}
			if frames >= restartFrames/4 {
				next = checkpointInterval / 10 // a burst: keep up with it
			}
		}
		timer.Reset(next)
	}
}

// checkpoint runs a passive checkpoint and, when the WAL has grown past
// restartFrames, a RESTART one. It returns the WAL's length it found.
func checkpoint(ctx context.Context, db *sql.DB) (frames int64, err error) {
	var busy, copied int64
	if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
		return 0, err
	}
	if frames < restartFrames {
		return frames, nil
	}
	var after int64
	return frames, db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &after, &copied)
}
