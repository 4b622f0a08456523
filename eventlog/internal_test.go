package eventlog

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// openTestLog opens a log in a fresh temp dir and closes it with the test.
func openTestLog(tb testing.TB) *Log {
	tb.Helper()
	l := NewLog(filepath.Join(tb.TempDir(), "moltgate.db"))
	if err := l.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func appendTest(tb testing.TB, l *Log, n int) {
	tb.Helper()
	events := make([]moltgate.Event, n)
	for i := range events {
		events[i] = moltgate.Event{ID: moltgate.NewID(), Stream: "s", Type: "t.x"}
	}
	if _, err := l.Append(context.Background(), events...); err != nil {
		tb.Fatal(err)
	}
}

func (p *rawPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// A callback that panics must not take the range read's connection with it.
func TestScanRange_PanickingCallbackReturnsTheConnection(t *testing.T) {
	l := openTestLog(t)
	ctx := context.Background()
	appendTest(t, l, 3)
	if _, err := l.Query(ctx, Filter{}); err != nil {
		t.Fatal(err)
	}
	idle := l.raw.idleCount()
	func() {
		defer func() { recover() }()
		l.Scan(ctx, Filter{}, func(moltgate.Event) error { panic("boom") })
	}()
	if got := l.raw.idleCount(); got != idle {
		t.Fatalf("%d idle range connections after the panic, want %d", got, idle)
	}
	if got, err := l.Query(ctx, Filter{}); err != nil || len(got) != 3 {
		t.Fatalf("scan after the panic = %d events, %v", len(got), err)
	}
}

// Only seq ranges, limits and EnvelopeOnly go to the raw range read; any
// other field needs SQL.
func TestIsRange(t *testing.T) {
	for _, f := range []Filter{{}, {AfterSeq: 3, UntilSeq: 9, Limit: 2, EnvelopeOnly: []string{"t.x"}}} {
		if !isRange(f) {
			t.Errorf("isRange(%+v) = false", f)
		}
	}
	for _, f := range []Filter{
		{TypePrefix: "t."}, {Stream: "s"}, {Actor: "a"}, {Channel: "c"}, {Sender: "x"},
		{Since: time.Now()}, {Until: time.Now()}, {Desc: true}, {AfterSeq: 3, Desc: true},
	} {
		if isRange(f) {
			t.Errorf("isRange(%+v) = true", f)
		}
	}
}

// vfsOf returns the name of the VFS a raw connection opened the log with.
func vfsOf(t *testing.T, c *rawConn) string {
	t.Helper()
	pp := c.tls.Alloc(8)
	defer c.tls.Free(8)
	if rc := sqlite3.Xsqlite3_file_control(c.tls, c.db, 0, sqlite3.SQLITE_FCNTL_VFS_POINTER, pp); rc != sqlite3.SQLITE_OK {
		t.Fatalf("SQLITE_FCNTL_VFS_POINTER: %d", rc)
	}
	vfs := (*sqlite3.Tsqlite3_vfs)(cptr(*(*uintptr)(cptr(pp))))
	return libc.GoString(vfs.FzName)
}

// Every connection of a log writes and reads the WAL through the WAL VFS.
func TestWALVFS_InUse(t *testing.T) {
	if rc := registerWALVFS(); rc != sqlite3.SQLITE_OK {
		t.Fatalf("registerWALVFS = %d", rc)
	}
	if dsn := DSN("x.db"); !strings.Contains(dsn, "vfs="+walVFSName) {
		t.Fatalf("DSN = %s", dsn)
	}
	// Forget the wrapped io-methods tables that earlier tests built (files
	// still open keep theirs), so that only this log's WAL can build one.
	walVFS.mu.Lock()
	walVFS.methods = nil
	walVFS.mu.Unlock()
	l := openTestLog(t)
	appendTest(t, l, 10)
	walVFS.mu.Lock()
	wrapped := len(walVFS.methods)
	walVFS.mu.Unlock()
	if wrapped == 0 {
		t.Fatal("the log's WAL was not opened through the WAL VFS")
	}
	c, err := l.raw.get()
	if err != nil {
		t.Fatal(err)
	}
	defer l.raw.put(c)
	if name := vfsOf(t, c); name != walVFSName {
		t.Fatalf("a range read's connection uses the VFS %q, want %q", name, walVFSName)
	}
}

// Where the WAL VFS cannot be registered, the driver's and the raw
// connections alike fall back to SQLite's default VFS, and the log works.
func TestWALVFS_UnavailableFallsBack(t *testing.T) {
	register := registerWALVFS
	registerWALVFS = func() int32 { return sqlite3.SQLITE_ERROR }
	t.Cleanup(func() { registerWALVFS = register })
	if dsn := DSN("x.db"); strings.Contains(dsn, "vfs=") {
		t.Fatalf("DSN = %s, want SQLite's default VFS", dsn)
	}
	l := openTestLog(t)
	ctx := context.Background()
	appendTest(t, l, 10)
	for _, f := range []Filter{{}, {Desc: true}} { // the raw range read and SQL
		if got, err := l.Query(ctx, f); err != nil || len(got) != 10 {
			t.Fatalf("Query(%+v) = %d events, %v", f, len(got), err)
		}
	}
	c, err := l.raw.get()
	if err != nil {
		t.Fatal(err)
	}
	defer l.raw.put(c)
	if name := vfsOf(t, c); name != "unix" {
		t.Fatalf("a range read's connection uses the VFS %q, want unix", name)
	}
}

// An Append that found the log open but queued its request only after the
// writer had answered the queue and stopped (Close raced it) returns
// ErrClosed rather than waiting forever for an answer.
func TestAppend_QueuedAfterTheWriterStopped(t *testing.T) {
	l := openTestLog(t)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.closed.Store(false) // as when the check ran before Close
	defer l.closed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), moltgate.Event{ID: moltgate.NewID(), Stream: "s", Type: "t.x"})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Append = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Append still waits for a writer that stopped")
	}
}
