package eventlog

import (
	"context"
	"fmt"
	"sync"
	"time"
	"unsafe"

	moltgate "github.com/moltgate/moltgate"
	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// rawConn is a read-only SQLite connection opened without the database/sql
// driver, for reading ranges of the log in seq order: replays and
// subscriptions. The driver opens every connection with
// SQLITE_OPEN_FULLMUTEX, so each of the dozen column calls a row makes
// locks and unlocks the connection's mutex, and it boxes every value in an
// interface; on a full replay that was most of the CPU. This connection is
// opened with SQLITE_OPEN_NOMUTEX (the pool hands it to one goroutine at a
// time), reads columns straight from SQLite's memory with one prepared
// statement, and never copies the payload of a row the caller does not read.
type rawConn struct {
	tls    *libc.TLS
	db     uintptr
	stmt   uintptr           // rangeQuery, prepared once
	intern map[string]string // stream and type names, which repeat
}

const rangeQuery = `SELECT ` + eventColumns + ` FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3`

// rawCacheKiB is each raw connection's page cache. A range read visits each
// page once, so a cache buys nothing beyond the b-tree's upper levels.
const rawCacheKiB = 256

// maxInterned bounds a connection's table of names.
const maxInterned = 4096

// openRawConn opens the log at path for range reads.
func openRawConn(path string) (c *rawConn, err error) {
	c = &rawConn{tls: libc.NewTLS(), intern: map[string]string{}}
	defer func() {
		if err != nil {
			c.close()
			c = nil
		}
	}()
	name, err := libc.CString("file:" + path)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(c.tls, name)
	var vfs uintptr // SQLite's default, like DSN's when the WAL VFS is unavailable
	if registerWALVFS() == sqlite3.SQLITE_OK {
		if vfs, err = libc.CString(walVFSName); err != nil {
			return nil, err
		}
		defer libc.Xfree(c.tls, vfs)
	}
	pp := c.tls.Alloc(8)
	defer c.tls.Free(8)
	// READWRITE without CREATE, like the driver's connections: a read-only
	// open could not create the WAL index of a file closed cleanly.
	rc := sqlite3.Xsqlite3_open_v2(c.tls, name, pp, sqlite3.SQLITE_OPEN_READWRITE|sqlite3.SQLITE_OPEN_NOMUTEX|sqlite3.SQLITE_OPEN_URI, vfs)
	c.db = *(*uintptr)(cptr(pp))
	if rc != sqlite3.SQLITE_OK {
		return nil, c.errorf(rc, "cannot open %s", path)
	}
	if err := c.exec(fmt.Sprintf("PRAGMA query_only=1; PRAGMA busy_timeout=5000; PRAGMA cache_size=-%d", rawCacheKiB)); err != nil {
		return nil, err
	}
	q, err := libc.CString(rangeQuery)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(c.tls, q)
	if rc := sqlite3.Xsqlite3_prepare_v2(c.tls, c.db, q, -1, pp, 0); rc != sqlite3.SQLITE_OK {
		return nil, c.errorf(rc, "cannot prepare the range query")
	}
	c.stmt = *(*uintptr)(cptr(pp))
	return c, nil
}

func (c *rawConn) exec(sql string) error {
	q, err := libc.CString(sql)
	if err != nil {
		return err
	}
	defer libc.Xfree(c.tls, q)
	if rc := sqlite3.Xsqlite3_exec(c.tls, c.db, q, 0, 0, 0); rc != sqlite3.SQLITE_OK {
		return c.errorf(rc, "cannot run %q", sql)
	}
	return nil
}

func (c *rawConn) errorf(rc int32, format string, args ...any) error {
	msg := fmt.Sprintf("error %d", rc)
	if c.db != 0 {
		msg = libc.GoString(sqlite3.Xsqlite3_errmsg(c.tls, c.db))
	}
	return fmt.Errorf(format+": %s", append(args, msg)...)
}

func (c *rawConn) close() {
	if c.stmt != 0 {
		sqlite3.Xsqlite3_finalize(c.tls, c.stmt)
	}
	if c.db != 0 {
		sqlite3.Xsqlite3_close_v2(c.tls, c.db)
	}
	c.tls.Close()
}

// scan calls fn for the events with after < seq <= until (until 0: no
// bound), at most limit of them (0: no limit), in seq order. Events whose
// type is in envelopeOnly come without payload and meta, as with
// Filter.EnvelopeOnly.
func (c *rawConn) scan(ctx context.Context, after, until int64, limit int, envelopeOnly map[string]bool, fn func(moltgate.Event) error) (err error) {
	tls, st := c.tls, c.stmt
	if until <= 0 {
		until = 1<<63 - 1
	}
	if limit <= 0 {
		limit = -1
	}
	sqlite3.Xsqlite3_bind_int64(tls, st, 1, after)
	sqlite3.Xsqlite3_bind_int64(tls, st, 2, until)
	sqlite3.Xsqlite3_bind_int64(tls, st, 3, int64(limit))
	// Reset ends the read transaction, whatever happens below.
	defer sqlite3.Xsqlite3_reset(tls, st)
	for n := 0; ; n++ {
		if n%256 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		switch rc := sqlite3.Xsqlite3_step(tls, st); rc {
		case sqlite3.SQLITE_ROW:
		case sqlite3.SQLITE_DONE:
			return nil
		default:
			return c.errorf(rc, "cannot read events")
		}
		var e moltgate.Event
		e.Seq = sqlite3.Xsqlite3_column_int64(tls, st, 0)
		e.ID = string(c.bytes(1))
		e.Stream = c.name(2)
		e.Version = sqlite3.Xsqlite3_column_int64(tls, st, 3)
		e.Type = c.name(4)
		e.Schema = int(sqlite3.Xsqlite3_column_int64(tls, st, 5))
		e.RecordedAt = time.UnixMilli(sqlite3.Xsqlite3_column_int64(tls, st, 8))
		if !envelopeOnly[e.Type] {
			e.Data = append([]byte(nil), c.bytes(6)...)
			finishEvent(&e, c.bytes(7))
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// bytes returns column i of the current row as SQLite holds it: valid only
// until the next step. A TEXT column (rows written by hand) reads the same.
func (c *rawConn) bytes(i int32) []byte {
	p := sqlite3.Xsqlite3_column_blob(c.tls, c.stmt, i)
	n := sqlite3.Xsqlite3_column_bytes(c.tls, c.stmt, i)
	if p == 0 || n <= 0 {
		return nil
	}
	return unsafe.Slice((*byte)(cptr(p)), n)
}

// name returns column i as a string shared with earlier rows that held the
// same name: replays then allocate one string per event (its id), not three.
func (c *rawConn) name(i int32) string {
	b := c.bytes(i)
	if s, ok := c.intern[string(b)]; ok {
		return s
	}
	if len(c.intern) >= maxInterned {
		clear(c.intern)
	}
	s := string(b)
	c.intern[s] = s
	return s
}

// rawPool keeps a few raw connections open between scans: opening one and
// reading the schema costs more than a subscription's page of events.
type rawPool struct {
	path string
	size int

	mu     sync.Mutex
	idle   []*rawConn
	closed bool
}

func newRawPool(path string, size int) *rawPool {
	return &rawPool{path: path, size: size}
}

func (p *rawPool) get() (*rawConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	return openRawConn(p.path)
}

// put returns c to the pool, or closes it when the pool is full or closed.
func (p *rawPool) put(c *rawConn) {
	c.intern = map[string]string{} // names of this scan need not outlive it
	p.mu.Lock()
	if !p.closed && len(p.idle) < p.size {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// close closes the idle connections; those in use close when they return.
func (p *rawPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}
