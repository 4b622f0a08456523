package eventlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/superfly/ltx"
)

// ErrNoBackup is returned by Restore when the replica holds no backup yet.
var ErrNoBackup = errors.New("the replica holds no backup")

// RestoreOptions choose what Restore writes. At most one of Timestamp, TXID
// and Seq is set; none means the newest state.
type RestoreOptions struct {
	OutputPath string
	Timestamp  time.Time // the state as replicated at that time
	TXID       uint64    // Litestream's transaction id
	Seq        int64     // exactly the events up to and including this seq
}

// Restore writes the replica's database to opt.OutputPath, which must not
// exist. It never touches a live file. The file is owner-only, like the
// live one: it holds device-token hashes and every conversation.
func Restore(ctx context.Context, cfg ReplicaConfig, opt RestoreOptions) error {
	set := 0
	for _, b := range []bool{!opt.Timestamp.IsZero(), opt.TXID != 0, opt.Seq != 0} {
		if b {
			set++
		}
	}
	if set > 1 {
		return fmt.Errorf("restore takes at most one of timestamp, txid and seq")
	}
	if opt.OutputPath == "" {
		return fmt.Errorf("restore needs an output path")
	}
	if _, err := os.Stat(opt.OutputPath); err == nil {
		return fmt.Errorf("cannot restore: %s already exists", opt.OutputPath)
	}
	if err := os.MkdirAll(filepath.Dir(opt.OutputPath), 0o700); err != nil {
		return err
	}
	// Litestream creates its output with the process umask (often 0644).
	// Restoring inside a private directory and moving the file into place
	// once it is owner-only leaves no moment when others could open it.
	dir, err := os.MkdirTemp(filepath.Dir(opt.OutputPath), ".restore-*")
	if err != nil {
		return fmt.Errorf("cannot restore: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "restored.db")
	if opt.Seq > 0 {
		// The log is append-only, so the newest state cut at opt.Seq is
		// exactly the log as it was when opt.Seq was the newest event.
		full := filepath.Join(dir, "full.db")
		if err := restoreFile(ctx, cfg, RestoreOptions{}, full); err != nil {
			return err
		}
		err = CopyUntil(ctx, full, tmp, opt.Seq)
	} else {
		err = restoreFile(ctx, cfg, opt, tmp)
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("cannot restore: %w", err)
	}
	// A link, unlike a rename, fails when the output exists: a file that
	// appeared there during the restore is never replaced.
	if err := os.Link(tmp, opt.OutputPath); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cannot restore: %s already exists", opt.OutputPath)
	} else if err != nil {
		return fmt.Errorf("cannot restore: %w", err)
	}
	return os.Remove(tmp)
}

// restoreFile has Litestream write the replica's database, at the point opt
// names, to path.
func restoreFile(ctx context.Context, cfg ReplicaConfig, opt RestoreOptions, path string) error {
	cfg.setDefaults()
	client := newS3Client(cfg)
	if err := client.Init(ctx); err != nil {
		return fmt.Errorf("cannot reach replica %s: %w", cfg, err)
	}
	lo := litestream.NewRestoreOptions()
	lo.OutputPath = path
	lo.Timestamp = opt.Timestamp
	lo.TXID = ltx.TXID(opt.TXID)
	lo.IntegrityCheck = litestream.IntegrityCheckQuick
	err := litestream.NewReplicaWithClient(nil, client).Restore(ctx, lo)
	switch {
	case errors.Is(err, litestream.ErrNoSnapshots) || errors.Is(err, litestream.ErrTxNotAvailable):
		return ErrNoBackup
	case errorCode(err) == "NoSuchBucket":
		return fmt.Errorf("the bucket %s does not exist at %s: there is nothing to restore: %w", cfg.Bucket, cfg.endpoint(), err)
	case err != nil:
		return fmt.Errorf("cannot restore from %s: %w", cfg, err)
	}
	return nil
}

// CopyUntil writes a new log at dst holding the events of src with
// seq <= until. The file at dst holds them all by itself, without a WAL:
// Restore moves that file alone.
func CopyUntil(ctx context.Context, src, dst string, until int64) error {
	// Open creates the file, owner-only, with the current schema.
	out := NewLog(dst)
	if err := out.Open(); err != nil {
		return err
	}
	if err := out.Close(ctx); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", DSN(dst))
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", dst, err)
	}
	if err := copyEvents(ctx, db, src, until); err != nil {
		db.Close()
		return err
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("cannot close %s: %w", dst, err)
	}
	return nil
}

// copyEvents copies the events of src with seq <= until into db, then
// checkpoints the whole WAL into db's file and empties it. The checkpoint
// SQLite makes when the last connection closes is not enough: it is
// skipped, without an error, while any other connection has the file open.
func copyEvents(ctx context.Context, db *sql.DB, src string, until int64) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("cannot open the copy: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ? AS src`, "file:"+src+"?mode=ro"); err != nil {
		return fmt.Errorf("cannot open %s: %w", src, err)
	}
	res, err := conn.ExecContext(ctx, `INSERT INTO main.events SELECT `+eventColumns+` FROM src.events WHERE seq <= ? ORDER BY seq`, until)
	if err != nil {
		return fmt.Errorf("cannot copy events: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("the replica has no events up to seq %d", until)
	}
	if _, err := conn.ExecContext(ctx, `DETACH DATABASE src`); err != nil {
		return fmt.Errorf("cannot close %s: %w", src, err)
	}
	var busy, frames, copied int64
	if err := conn.QueryRowContext(ctx, `PRAGMA main.wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied); err != nil {
		return fmt.Errorf("cannot checkpoint the copy: %w", err)
	}
	if busy != 0 {
		return fmt.Errorf("cannot checkpoint the copy: another connection is using it (%d of %d frames copied)", copied, frames)
	}
	return nil
}

// restoreIfMissing restores the log from the replica when the local file
// does not exist (a new container, a wiped disk). An empty replica is a
// first start; an unreachable one is an error, because starting empty would
// fork the history that the replica holds.
func (l *Log) restoreIfMissing() error {
	// A zero-byte file is what a start that died before migrating leaves.
	if st, err := os.Stat(l.Path); err == nil && st.Size() > 0 {
		return nil
	} else if err == nil {
		os.Remove(l.Path)
	} else if !os.IsNotExist(err) {
		return err
	}
	if l.Progress != nil {
		l.Progress("restore", 0, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	err := ensureBucket(ctx, *l.Replica, l.Logger)
	var missing *bucketMissingError
	if errors.As(err, &missing) {
		return err // its first words say what is wrong
	} else if err == nil {
		err = Restore(ctx, *l.Replica, RestoreOptions{OutputPath: l.Path})
	}
	switch {
	case errors.Is(err, ErrNoBackup):
		l.Logger.Info("replica holds no backup yet: starting a new log", "replica", l.Replica.String())
		return nil
	case err != nil:
		return fmt.Errorf("local log is missing and cannot be restored (refusing to start empty over an existing backup): %w", err)
	}
	l.restoredFrom = l.Replica.String()
	if l.Progress != nil {
		l.Progress("restore", 1, 1)
	}
	l.Logger.Info("restored the event log from the replica", "replica", l.restoredFrom)
	return nil
}
