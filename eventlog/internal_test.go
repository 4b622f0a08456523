package eventlog

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

// typesWithPrefix gives up (nil, and the page is read with one query) past
// maxPrefixTypes types, or when a stored type would itself read as a
// prefix; either way the page is what the unpaged query returns.
func TestTypesWithPrefix_GivesUp(t *testing.T) {
	ctx := context.Background()
	var many []string
	for i := 0; i <= maxPrefixTypes; i++ {
		many = append(many, fmt.Sprintf("a.t%02d", i))
	}
	for name, types := range map[string][]string{
		"too many types":     many,
		"a type ending in .": {"a.one", "a.family.", "a.two"},
		"a type ending in *": {"a.one", "a.star*", "a.two"},
	} {
		l := openTestLog(t)
		var events []moltgate.Event
		for i := 0; i < 30+3*len(types); i++ {
			events = append(events, moltgate.Event{ID: moltgate.NewID(), Stream: fmt.Sprint("s", i%5), Type: types[(i*7)%len(types)]})
		}
		if _, err := l.Append(ctx, events...); err != nil {
			t.Fatal(err)
		}
		if got, err := l.typesWithPrefix(ctx, "a."); err != nil || got != nil {
			t.Errorf("%s: typesWithPrefix = %v, %v; want nil", name, got, err)
		}
		page, err := l.Query(ctx, Filter{TypePrefix: "a.", Limit: 10, Desc: true})
		if err != nil {
			t.Fatal(err)
		}
		all, err := l.Query(ctx, Filter{TypePrefix: "a.", Desc: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != 10 || fmt.Sprint(seqsOf(page)) != fmt.Sprint(seqsOf(all[:10])) {
			t.Errorf("%s: page %v, want %v", name, seqsOf(page), seqsOf(all[:10]))
		}
	}
}

func seqsOf(events []moltgate.Event) []int64 {
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.Seq
	}
	return out
}

// A batch that mixes the retry of stored events with new ones fails on the
// multi-row INSERT and is redone row by row: the retries get the stored
// events back, the new events the next seqs without a gap, and the next
// batch carries on from there.
func TestCommit_DuplicatesAndNewEventsInOneBatch(t *testing.T) {
	l := openTestLog(t)
	ctx := context.Background()
	stored, err := l.Append(ctx,
		moltgate.Event{ID: moltgate.NewID(), Stream: "a", Type: "t.x"},
		moltgate.Event{ID: moltgate.NewID(), Stream: "b", Type: "t.x"})
	if err != nil {
		t.Fatal(err)
	}
	request := func(events ...moltgate.Event) *appendRequest {
		t.Helper()
		req, err := newAppendRequest(events)
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	fresh := func(stream string) moltgate.Event {
		return moltgate.Event{ID: moltgate.NewID(), Stream: stream, Type: "t.x"}
	}
	retry := stored[1] // as read back: Version set, so plan finds it stored
	retryAtEnd := stored[0]
	retryAtEnd.Version = 0 // goes to the end of its stream: only the INSERT finds it stored
	batch := []*appendRequest{
		request(fresh("a")),
		request(retryAtEnd, fresh("a")),
		request(retry),
		request(fresh("b"), fresh("c")),
	}
	// The writer is idle between appends; the test stands in for it.
	l.commit(batch)
	var got [][]int64
	for _, req := range batch {
		res := <-req.done
		if res.err != nil {
			t.Fatal(res.err)
		}
		var seqs []int64
		for _, e := range res.events {
			seqs = append(seqs, e.Seq, e.Version)
		}
		got = append(got, seqs)
	}
	// seq, version pairs
	want := [][]int64{{3, 2}, {1, 1, 4, 3}, {2, 1}, {5, 2, 6, 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batch answered %v, want %v", got, want)
	}
	if l.LastSeq() != 6 {
		t.Fatalf("LastSeq = %d, want 6", l.LastSeq())
	}
	next, err := l.Append(ctx, fresh("a"))
	if err != nil || next[0].Seq != 7 || next[0].Version != 4 {
		t.Fatalf("next append = %+v, %v; want seq 7 version 4", next, err)
	}
	if n, err := l.Count(ctx, Filter{}); err != nil || n != 7 {
		t.Fatalf("Count = %d, %v; want 7", n, err)
	}
}

// Readers see a consistent log while the writer checkpoints between
// commits: every scan reads the seqs 1..n without a gap, n never shrinks.
func TestCheckpoint_ConcurrentReaders(t *testing.T) {
	l := openTestLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // appends, asking the writer to checkpoint before every commit
		defer wg.Done()
		for ctx.Err() == nil {
			l.w.checkpointDue.Store(true)
			events := make([]moltgate.Event, 50)
			for i := range events {
				events[i] = moltgate.Event{ID: moltgate.NewID(), Stream: fmt.Sprint("s", i%4), Type: "t.x", Data: []byte(`{"text":"a payload of some length to fill pages"}`)}
			}
			if _, err := l.Append(context.Background(), events...); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			var last int
			for ctx.Err() == nil {
				var got []moltgate.Event
				var err error
				switch r {
				case 0:
					got, err = l.Query(context.Background(), Filter{})
				case 1:
					got, err = l.Query(context.Background(), Filter{Desc: true})
					slices.Reverse(got)
				default:
					var n int64
					if n, err = l.Count(context.Background(), Filter{}); err == nil {
						got = make([]moltgate.Event, n)
						for i := range got {
							got[i].Seq = int64(i + 1)
						}
					}
				}
				if err != nil {
					t.Errorf("reader %d: %v", r, err)
					return
				}
				for i, e := range got {
					if e.Seq != int64(i+1) {
						t.Errorf("reader %d: event %d has seq %d", r, i, e.Seq)
						return
					}
				}
				if len(got) < last {
					t.Errorf("reader %d: read %d events after %d", r, len(got), last)
					return
				}
				last = len(got)
			}
		}(r)
	}
	wg.Wait()
	if l.LastSeq() == 0 {
		t.Fatal("nothing was appended")
	}
}
