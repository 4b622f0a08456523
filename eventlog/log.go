// Package eventlog owns moltgate's SQLite file: the append-only events
// table, its migrations, group-committed appends, reads, subscriptions and
// replication of the file to S3/R2 with an embedded Litestream.
//
// No other package opens the database; everything else reads events through
// a *Log and derives its state from them.
package eventlog

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/internal/watermark"
	_ "modernc.org/sqlite" // the only SQLite driver: Litestream uses it too
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// rawPoolSize is how many range-read connections stay open between scans:
// a replay reads with two, and a gateway follows the log with two or three
// subscriptions.
const rawPoolSize = 4

// Defaults for a Log's tunables.
const (
	DefaultCriticalWait = 5 * time.Second
	DefaultMaxBatch     = 4096
)

// ErrConcurrency is returned when an event's expected stream version is
// already taken: someone else wrote to the stream first.
var ErrConcurrency = &moltgate.Error{Code: moltgate.ECONFLICT, Message: "stream version conflict"}

// ErrClosed is returned by appends and reads after Close, by appends to a
// read-only log, and by subscriptions that Close ended.
var ErrClosed = &moltgate.Error{Code: moltgate.EUNAVAILABLE, Message: "event log is closed"}

// Log is the event log. Create one with NewLog, set its fields, then Open.
type Log struct {
	// Path is the SQLite file.
	Path string

	// Replica, when set, streams the file to S3/R2 and restores it on Open
	// when the local file is missing. Nil is the laptop mode: no replica.
	Replica *ReplicaConfig

	// CriticalWait bounds how long AppendCritical waits for the replica.
	CriticalWait time.Duration

	// MaxBatch caps the number of events committed in one transaction.
	MaxBatch int

	// ReadOnly opens the file for reading only: no migrations, no writer,
	// no replication. For tools that inspect a log a gateway may be writing.
	ReadOnly bool

	// Progress, when set, is told how a restore is going.
	Progress func(stage string, done, total int64)

	Logger *slog.Logger

	wdb *sql.DB  // the writer's single connection
	rdb *sql.DB  // a pool for readers
	cdb *sql.DB  // the checkpointer's connection, without a replica
	raw *rawPool // connections for range reads (replays, subscriptions)

	appendCh   chan *appendRequest
	writerDone chan struct{} // closed when writeLoop has returned
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	closed     atomic.Bool
	done       chan struct{} // closed by Close: subscriptions end

	committed *watermark.Watermark // the last committed seq

	// w is the writer's state. Open makes it and Close closes it once
	// writeLoop has returned; in between only writeLoop uses it, but for
	// its atomic checkpointDue, which checkpointLoop sets.
	w *writer

	replicator   *replicator
	restoredFrom string
}

// NewLog returns a Log for the SQLite file at path with default settings.
func NewLog(path string) *Log {
	return &Log{
		Path:         path,
		CriticalWait: DefaultCriticalWait,
		MaxBatch:     DefaultMaxBatch,
		Logger:       slog.Default(),
		committed:    watermark.New(0),
		done:         make(chan struct{}),
	}
}

// DSN returns the connection string for path: pragmas go in the DSN so that
// every connection of a pool gets them (an Exec("PRAGMA …") reaches one).
//
// Every connection it describes keeps journal_mode=WAL and
// synchronous=FULL, which the WAL VFS needs (see walVFSName): an extra that
// sets either is a programming error, and DSN panics on it. (The driver
// sorts the _pragma values, so an extra cannot be ordered after ours.)
func DSN(path string, extra ...string) string {
	for _, e := range extra {
		if setting := fixedSetting(e); setting != "" {
			panic(fmt.Sprintf("eventlog.DSN: %q changes %s, which every connection to the log must keep", e, setting))
		}
	}
	q := []string{
		"_pragma=journal_mode(WAL)",
		"_pragma=busy_timeout(5000)",
		"_pragma=synchronous(FULL)",
		"_pragma=foreign_keys(1)",
		// Statement journals and sort scratch stay in memory rather than
		// in a temp file written with a syscall a page.
		"_pragma=temp_store(MEMORY)",
		"_txlock=immediate",
	}
	if registerWALVFS() == sqlite3.SQLITE_OK {
		q = append(q, "vfs="+walVFSName)
	}
	return "file:" + path + "?" + strings.Join(append(q, extra...), "&")
}

// fixedSetting returns the setting among journal_mode and synchronous that
// the DSN parameter param would change, or "". The driver takes them as
// _pragma values (written with or without parentheses, spaces or a schema
// name, so any mention counts) and as shorthand keys.
func fixedSetting(param string) string {
	q, err := url.ParseQuery(param)
	if err != nil {
		return ""
	}
	for key, values := range q {
		switch strings.ToLower(key) {
		case "_journal_mode", "_journal":
			return "journal_mode"
		case "_synchronous", "_sync":
			return "synchronous"
		case "_pragma":
			for _, v := range values {
				for _, setting := range []string{"journal_mode", "synchronous"} {
					if strings.Contains(strings.ToLower(v), setting) {
						return setting
					}
				}
			}
		}
	}
	return ""
}

// Open restores the file from the replica if it is missing locally, opens
// and migrates it, starts the writer and, with a replica, replication.
func (l *Log) Open() error {
	if l.ReadOnly {
		return l.openReadOnly()
	}
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o700); err != nil {
		return fmt.Errorf("cannot create data directory: %w", err)
	}
	if rc := registerWALVFS(); rc != sqlite3.SQLITE_OK {
		l.Logger.Warn("cannot register the WAL VFS: commits write the WAL page by page", "code", rc)
	}
	if l.Replica != nil {
		if err := l.restoreIfMissing(); err != nil {
			return err
		}
	}

	// Create the file owner-only: it holds hashes of device tokens and the
	// whole conversation history. SQLite gives -wal and -shm the same mode.
	if f, err := os.OpenFile(l.Path, os.O_RDONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}

	// No connection of ours checkpoints in a commit: with a replica,
	// Litestream checkpoints the WAL itself (a checkpoint of ours could move
	// pages before Litestream has copied them); without, checkpointLoop does.
	extra := []string{"_pragma=wal_autocheckpoint(0)"}
	writerExtra := slices.Clone(extra)
	if l.Replica == nil {
		// Once a checkpoint has copied the whole WAL (see checkpointLoop),
		// the next commit starts it over and cuts the file back to this.
		writerExtra = append(writerExtra, fmt.Sprintf("_pragma=journal_size_limit(%d)", walSizeLimit))
	}
	var err error
	if l.wdb, err = sql.Open("sqlite", DSN(l.Path, writerExtra...)); err != nil {
		return fmt.Errorf("cannot open event log: %w", err)
	}
	l.wdb.SetMaxOpenConns(1)
	l.wdb.SetConnMaxIdleTime(0)
	l.wdb.SetConnMaxLifetime(0)
	if err := migrate(l.wdb); err != nil {
		l.wdb.Close()
		return err
	}
	if l.w, err = newWriter(context.Background(), l.wdb); err != nil {
		l.closeDBs()
		return err
	}
	if l.rdb, err = openReaders(l.Path, extra...); err != nil {
		l.closeDBs()
		return err
	}
	l.raw = newRawPool(l.Path, rawPoolSize)
	l.committed.Advance(l.w.lastSeq)

	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.appendCh = make(chan *appendRequest, 1024)
	l.writerDone = make(chan struct{})
	l.wg.Add(1)
	go func() { defer l.wg.Done(); defer close(l.writerDone); l.writeLoop(ctx) }()

	if l.Replica != nil {
		l.replicator = newReplicator(l, *l.Replica)
		l.replicator.open()
	} else {
		if l.cdb, err = sql.Open("sqlite", DSN(l.Path, extra...)); err != nil {
			l.Close(context.Background())
			return fmt.Errorf("cannot open event log: %w", err)
		}
		l.cdb.SetMaxOpenConns(1)
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.checkpointLoop(ctx, l.cdb) }()
	}
	return nil
}

func (l *Log) openReadOnly() error {
	if _, err := os.Stat(l.Path); err != nil {
		return moltgate.Errorf(moltgate.ENOTFOUND, "no event log at %s (is MOLTGATE_DATA_DIR right?)", l.Path)
	}
	var err error
	if l.rdb, err = openReaders(l.Path); err != nil {
		return err
	}
	l.raw = newRawPool(l.Path, rawPoolSize)
	if err := l.loadLastSeq(); err != nil {
		l.rdb.Close()
		return err
	}
	return nil
}

// readerCacheKiB is each reader's page cache. Readers page through the log
// (the admin, the CLI) and rarely meet a page twice, so SQLite's default of
// 2 MB a connection mostly held memory.
const readerCacheKiB = 512

// openReaders opens the pool of reading connections. Idle ones close after
// a minute, so that a burst of admin queries leaves no memory behind.
func openReaders(path string, extra ...string) (*sql.DB, error) {
	extra = append(extra, "_pragma=query_only(1)", fmt.Sprintf("_pragma=cache_size(-%d)", readerCacheKiB))
	db, err := sql.Open("sqlite", DSN(path, extra...))
	if err != nil {
		return nil, fmt.Errorf("cannot open event log for reading: %w", err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	return db, nil
}

// loadLastSeq reads the end of the log for a read-only Log, which has no
// writer to read it.
func (l *Log) loadLastSeq() error {
	var last sql.NullInt64
	if err := l.rdb.QueryRow(`SELECT MAX(seq) FROM events`).Scan(&last); err != nil {
		return fmt.Errorf("cannot read last seq: %w", err)
	}
	l.committed.Advance(last.Int64)
	return nil
}

// Close stops accepting appends, finishes the ones in flight, ends the
// subscriptions, performs a final replica sync (bounded by ctx) and closes
// the file.
func (l *Log) Close(ctx context.Context) error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(l.done)
	if l.ReadOnly {
		l.closeDBs()
		return nil
	}
	var errs []error
	if l.cancel != nil {
		l.cancel()
		l.wg.Wait()
	}
	if l.replicator != nil {
		l.replicator.stopLoop()
		if err := l.replicator.syncNow(ctx); err != nil {
			errs = append(errs, fmt.Errorf("final replica sync: %w", err))
		}
	}
	l.closeDBs()
	if l.replicator != nil {
		if err := l.replicator.close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (l *Log) closeDBs() {
	if l.w != nil {
		l.w.close()
	}
	if l.rdb != nil {
		l.rdb.Close()
	}
	if l.cdb != nil {
		l.cdb.Close()
	}
	if l.raw != nil {
		l.raw.close()
	}
	if l.wdb != nil {
		l.wdb.Close()
	}
}

// LastSeq returns the seq of the newest committed event (0 when empty).
func (l *Log) LastSeq() int64 { return l.committed.Get() }

// RestoredFrom describes the replica the file was restored from at Open, or
// "" when the local file was used.
func (l *Log) RestoredFrom() string { return l.restoredFrom }

// migrate applies the embedded migrations that are not yet recorded in
// schema_migrations, each in its own transaction.
func migrate(db *sql.DB) error {
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("cannot create migrations table: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if err := applyMigration(db, name); err != nil {
			return err
		}
	}
	return nil
}

func applyMigration(db *sql.DB, name string) error {
	tx, err := db.Begin()
	if err != nil {
		return fmt.Errorf("cannot begin migration: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRow(`SELECT COUNT(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil {
		return fmt.Errorf("cannot read migrations: %w", err)
	}
	if n > 0 {
		return nil
	}
	body, err := migrationFS.ReadFile(name)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(string(body)); err != nil {
		return fmt.Errorf("migration %s: %w", name, err)
	}
	if _, err := tx.Exec(`INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)`, name, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("cannot record migration %s: %w", name, err)
	}
	return tx.Commit()
}
