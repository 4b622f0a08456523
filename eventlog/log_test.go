package eventlog_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
)

// MustOpenLog opens a log in a fresh temp dir and closes it with the test.
func MustOpenLog(tb testing.TB) *eventlog.Log {
	tb.Helper()
	l := eventlog.NewLog(filepath.Join(tb.TempDir(), "moltgate.db"))
	if err := l.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func ev(stream, typ string, version int64, data string) moltgate.Event {
	return moltgate.Event{ID: moltgate.NewID(), Stream: stream, Type: typ, Version: version, Data: json.RawMessage(data)}
}

func TestLog_Append(t *testing.T) {
	ctx := context.Background()
	t.Run("AssignsSeqAndVersion", func(t *testing.T) {
		l := MustOpenLog(t)
		got, err := l.Append(ctx, ev("a", "x.happened", 0, `{"n":1}`), ev("a", "x.happened", 0, `{"n":2}`), ev("b", "x.happened", 0, `{}`))
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []struct{ seq, ver int64 }{{1, 1}, {2, 2}, {3, 1}} {
			if got[i].Seq != want.seq || got[i].Version != want.ver {
				t.Errorf("event %d: seq %d version %d, want %d %d", i, got[i].Seq, got[i].Version, want.seq, want.ver)
			}
		}
		if l.LastSeq() != 3 {
			t.Errorf("LastSeq = %d, want 3", l.LastSeq())
		}
	})

	t.Run("ErrConcurrency", func(t *testing.T) {
		l := MustOpenLog(t)
		if _, err := l.Append(ctx, ev("s", "t.x", 1, `{}`)); err != nil {
			t.Fatal(err)
		}
		// A second writer who also believed the stream was new loses.
		_, err := l.Append(ctx, ev("s", "t.x", 1, `{}`), ev("other", "t.x", 0, `{}`))
		if !errors.Is(err, eventlog.ErrConcurrency) {
			t.Fatalf("err = %v, want ErrConcurrency", err)
		}
		// Nothing of the refused append was written, not even the other stream.
		if n, _ := l.Count(ctx, eventlog.Filter{}); n != 1 {
			t.Fatalf("count = %d, want 1", n)
		}
		if _, err := l.Append(ctx, ev("s", "t.x", 2, `{}`)); err != nil {
			t.Fatalf("append at the right version: %v", err)
		}
	})

	t.Run("IdempotentReappend", func(t *testing.T) {
		l := MustOpenLog(t)
		e := ev("s", "t.x", 1, `{"a":1}`)
		first, err := l.Append(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		again, err := l.Append(ctx, e)
		if err != nil {
			t.Fatalf("re-append: %v", err)
		}
		if again[0].Seq != first[0].Seq || again[0].Version != 1 {
			t.Fatalf("re-append returned seq %d v%d, want the stored seq %d v1", again[0].Seq, again[0].Version, first[0].Seq)
		}
		if n, _ := l.Count(ctx, eventlog.Filter{}); n != 1 {
			t.Fatalf("count = %d, want 1", n)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		l := MustOpenLog(t)
		for name, e := range map[string]moltgate.Event{
			"no id":        {Stream: "s", Type: "t"},
			"no stream":    {ID: "1", Type: "t"},
			"no type":      {ID: "1", Stream: "s"},
			"invalid json": {ID: "1", Stream: "s", Type: "t", Data: json.RawMessage(`{`)},
		} {
			if _, err := l.Append(ctx, e); moltgate.ErrorCode(err) != moltgate.EINVALID {
				t.Errorf("%s: err = %v, want invalid", name, err)
			}
		}
	})

	t.Run("GroupCommitUnderConcurrency", func(t *testing.T) {
		l := MustOpenLog(t)
		const writers, each = 32, 50
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					// Every writer owns its stream and states the version it expects.
					if _, err := l.Append(ctx, ev(fmt.Sprintf("w%d", w), "t.x", int64(i+1), `{}`)); err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n, _ := l.Count(ctx, eventlog.Filter{}); n != writers*each {
			t.Fatalf("count = %d, want %d", n, writers*each)
		}
	})
}

func TestLog_Immutable(t *testing.T) {
	l := MustOpenLog(t)
	ctx := context.Background()
	if _, err := l.Append(ctx, ev("s", "t.x", 0, `{}`)); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", eventlog.DSN(l.Path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{`UPDATE events SET type = 'forged'`, `DELETE FROM events`} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "immutable") {
			t.Errorf("%s: err = %v, want refusal", q, err)
		}
	}
}

func TestLog_UnknownTypeAndUpcast(t *testing.T) {
	l := MustOpenLog(t)
	ctx := context.Background()
	unknown := ev("future", "hologram.projected", 0, `{"beam":42}`)
	unknown.Schema = 7
	old := ev("session:main", moltgate.EventChatMessageAdded, 0, `{"sessionKey":"main","role":"user","text":"hi"}`)
	old.Schema = 1
	if _, err := l.Append(ctx, unknown, old); err != nil {
		t.Fatal(err)
	}
	got, err := l.Query(ctx, eventlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Type != "hologram.projected" || got[0].Schema != 7 || string(got[0].Data) != `{"beam":42}` {
		t.Errorf("unknown event came back as %+v", got[0])
	}
	var msg moltgate.ChatMessageAddedData
	if err := got[1].Decode(&msg); err != nil {
		t.Fatal(err)
	}
	if got[1].Schema != 2 || msg.Content != "hi" {
		t.Errorf("upcast: schema %d content %q, want 2 and \"hi\"", got[1].Schema, msg.Content)
	}
}

func TestLog_Reads(t *testing.T) {
	l := MustOpenLog(t)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		typ := "device.pairing.requested"
		if i%2 == 1 {
			typ = "chat.message.added"
		}
		if _, err := l.Append(ctx, ev(fmt.Sprintf("s%d", i%3), typ, 0, `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(name string, f eventlog.Filter, want []int64) {
		t.Helper()
		got, err := l.Query(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		if fmt.Sprint(seqs) != fmt.Sprint(want) {
			t.Errorf("%s: seqs %v, want %v", name, seqs, want)
		}
	}
	check("after+limit", eventlog.Filter{AfterSeq: 3, Limit: 3}, []int64{4, 5, 6})
	check("until", eventlog.Filter{UntilSeq: 2}, []int64{1, 2})
	check("type prefix", eventlog.Filter{TypePrefix: "chat."}, []int64{2, 4, 6, 8, 10})
	check("exact type", eventlog.Filter{TypePrefix: "device.pairing.requested", AfterSeq: 5}, []int64{7, 9})
	check("stream", eventlog.Filter{Stream: "s1"}, []int64{2, 5, 8})
	check("desc", eventlog.Filter{Desc: true, Limit: 2}, []int64{10, 9})
	check("future", eventlog.Filter{Since: time.Now().Add(time.Hour)}, nil)

	back, err := l.ReadStream(ctx, "s0", 0, 2, true)
	if err != nil || len(back) != 2 || back[0].Version != 4 || back[1].Version != 3 {
		t.Errorf("ReadStream backwards = %v, %v", back, err)
	}
	fwd, err := l.ReadStream(ctx, "s0", 2, 0, false)
	if err != nil || len(fwd) != 3 || fwd[0].Version != 2 {
		t.Errorf("ReadStream forwards = %v, %v", fwd, err)
	}
	if _, err := l.Get(ctx, "nope"); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Errorf("Get unknown = %v, want not_found", err)
	}
}

func TestLog_Subscribe(t *testing.T) {
	l := MustOpenLog(t)
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if _, err := l.Append(ctx, ev("pre", "t.x", 0, `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	sub := l.Subscribe(ctx, 50)
	defer sub.Close()

	const writers, each = 8, 250
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := l.Append(ctx, ev(fmt.Sprintf("w%d", w), "t.x", 0, `{}`)); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	want := int64(100 + writers*each)
	next := int64(51)
	timeout := time.After(30 * time.Second)
	for next <= want {
		select {
		case e, ok := <-sub.C():
			if !ok {
				t.Fatalf("subscription ended: %v", sub.Err())
			}
			if e.Seq != next {
				t.Fatalf("got seq %d, want %d (gap or duplicate)", e.Seq, next)
			}
			next++
		case <-timeout:
			t.Fatalf("timed out at seq %d of %d", next, want)
		}
	}
	wg.Wait()
	select {
	case e := <-sub.C():
		t.Fatalf("unexpected extra event %d", e.Seq)
	case <-time.After(50 * time.Millisecond):
	}
}

// A subscriber that stops reading must not hold a read transaction open:
// while one is, no checkpoint can reach the end of the WAL, and the WAL
// cannot start over, however long the subscriber sleeps.
func TestLog_StalledSubscriberLetsTheWALRestart(t *testing.T) {
	l := MustOpenLog(t)
	ctx := context.Background()
	appendN := func(n int) {
		t.Helper()
		batch := make([]moltgate.Event, n)
		for i := range batch {
			batch[i] = ev(fmt.Sprintf("s%d", i%10), "t.x", 0, `{"text":"enough to fill a few pages"}`)
		}
		if _, err := l.Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
	appendN(3000) // more than the subscription buffers and one page besides
	sub := l.Subscribe(ctx, 0)
	defer sub.Close()
	for deadline := time.Now().Add(10 * time.Second); len(sub.C()) < cap(sub.C()); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the subscription buffered %d events", len(sub.C()))
		}
	}
	appendN(500) // frames newer than anything the subscriber has read

	db, err := sql.Open("sqlite", eventlog.DSN(l.Path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var busy, frames, copied int64
	if err := db.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied); err != nil {
		t.Fatal(err)
	}
	if busy != 0 {
		t.Fatalf("wal_checkpoint(TRUNCATE) = busy %d, %d of %d frames: a reader holds the WAL", busy, copied, frames)
	}
	if st, err := os.Stat(l.Path + "-wal"); err != nil || st.Size() != 0 {
		t.Fatalf("WAL after TRUNCATE: %v, %v; want it empty", st.Size(), err)
	}
	for want := int64(1); want <= 3500; want++ {
		select {
		case e := <-sub.C():
			if e.Seq != want {
				t.Fatalf("got seq %d, want %d", e.Seq, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out at seq %d: %v", want, sub.Err())
		}
	}
}

func TestLog_ReopenKeepsVersions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	ctx := context.Background()
	l := eventlog.NewLog(path)
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, ev("s", "t.x", 0, `{}`), ev("s", "t.x", 0, `{}`)); err != nil {
		t.Fatal(err)
	}
	l.Close(ctx)
	l2 := eventlog.NewLog(path)
	if err := l2.Open(); err != nil {
		t.Fatal(err)
	}
	defer l2.Close(ctx)
	if l2.LastSeq() != 2 {
		t.Fatalf("LastSeq after reopen = %d, want 2", l2.LastSeq())
	}
	if _, err := l2.Append(ctx, ev("s", "t.x", 2, `{}`)); !errors.Is(err, eventlog.ErrConcurrency) {
		t.Fatalf("stale version after reopen: err = %v", err)
	}
	got, err := l2.Append(ctx, ev("s", "t.x", 3, `{}`))
	if err != nil || got[0].Seq != 3 {
		t.Fatalf("append after reopen = %v, %v", got, err)
	}
}

// Time queries binary-search seq (there is no index on recorded_at); the
// log below has a gap in seq and two events recorded in the same millisecond.
func TestLog_TimeQueries(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	l := eventlog.NewLog(path)
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	l.Close(ctx)
	db, err := sql.Open("sqlite", eventlog.DSN(path))
	if err != nil {
		t.Fatal(err)
	}
	var indexes int
	if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'events_recorded_at'`).Scan(&indexes); err != nil || indexes != 0 {
		t.Fatalf("events_recorded_at: %d, %v; want it dropped", indexes, err)
	}
	at := map[int64]int64{1: 1000, 2: 2000, 3: 3000, 5: 5000, 6: 6000, 7: 6000, 8: 8000, 9: 9000}
	for seq := int64(1); seq <= 9; seq++ {
		if ms, ok := at[seq]; ok {
			if _, err := db.Exec(`INSERT INTO events (seq, id, stream, version, type, schema, data, meta, recorded_at) VALUES (?, ?, 's', ?, 't.x', 1, '{}', '{}', ?)`,
				seq, moltgate.NewID(), seq, ms); err != nil {
				t.Fatal(err)
			}
		}
	}
	db.Close()
	l = eventlog.NewLog(path)
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	ms := func(n int64) time.Time { return time.UnixMilli(n) }

	for _, tc := range []struct {
		at   int64
		want int64
	}{{999, 0}, {1000, 1}, {4999, 3}, {5000, 5}, {6000, 7}, {7999, 7}, {9000, 9}, {1 << 40, 9}} {
		if got, err := l.SeqAt(ctx, ms(tc.at)); err != nil || got != tc.want {
			t.Errorf("SeqAt(%d) = %d, %v; want %d", tc.at, got, err, tc.want)
		}
	}
	check := func(name string, f eventlog.Filter, want []int64) {
		t.Helper()
		got, err := l.Query(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		if fmt.Sprint(seqs) != fmt.Sprint(want) {
			t.Errorf("%s: seqs %v, want %v", name, seqs, want)
		}
		if f.Limit > 0 {
			return // Count ignores Limit
		}
		if n, err := l.Count(ctx, f); err != nil || n != int64(len(want)) {
			t.Errorf("%s: Count = %d, %v; want %d", name, n, err, len(want))
		}
	}
	check("since", eventlog.Filter{Since: ms(5500)}, []int64{6, 7, 8, 9})
	check("since, equal times", eventlog.Filter{Since: ms(6000)}, []int64{6, 7, 8, 9})
	check("until", eventlog.Filter{Until: ms(3000)}, []int64{1, 2, 3})
	check("window", eventlog.Filter{Since: ms(2000), Until: ms(6000)}, []int64{2, 3, 5, 6, 7})
	check("window and seqs", eventlog.Filter{Since: ms(2000), Until: ms(8000), AfterSeq: 5, UntilSeq: 7}, []int64{6, 7})
	check("window, newest first", eventlog.Filter{Since: ms(2000), Until: ms(8000), Desc: true, Limit: 2}, []int64{8, 7})
	check("before everything", eventlog.Filter{Until: ms(500)}, nil)
	check("after everything", eventlog.Filter{Since: ms(10000)}, nil)
	check("empty window", eventlog.Filter{Since: ms(3500), Until: ms(4500)}, nil)

	// The newest event claims to be from the far future (a clock that was
	// ahead): later events are recorded no earlier, so time keeps growing
	// with seq.
	future := time.Now().Add(time.Hour).UnixMilli()
	db, err = sql.Open("sqlite", eventlog.DSN(path))
	if err != nil {
		t.Fatal(err)
	}
	l.Close(ctx)
	if _, err := db.Exec(`INSERT INTO events (seq, id, stream, version, type, schema, data, meta, recorded_at) VALUES (10, ?, 's', 10, 't.x', 1, '{}', '{}', ?)`, moltgate.NewID(), future); err != nil {
		t.Fatal(err)
	}
	db.Close()
	l = eventlog.NewLog(path)
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	got, err := l.Append(ctx, ev("s", "t.x", 0, `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].RecordedAt.UnixMilli() < future {
		t.Fatalf("appended at %v, before the newest event (%v)", got[0].RecordedAt, time.UnixMilli(future))
	}
	if seq, _ := l.SeqAt(ctx, got[0].RecordedAt); seq != got[0].Seq {
		t.Fatalf("SeqAt(its own time) = %d, want %d", seq, got[0].Seq)
	}
}

// Without a replica the log checkpoints in the background: the database
// file grows while the log is open, although no commit checkpoints, and
// under appends that never pause the WAL is started over rather than
// growing with everything ever appended.
func TestLog_CheckpointsWithoutReplica(t *testing.T) {
	l := MustOpenLog(t)
	ctx := context.Background()
	st, err := os.Stat(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	before := st.Size()
	payload := fmt.Sprintf(`{"text":%q}`, strings.Repeat("a message long enough to fill pages ", 30))
	var appended int64
	start := time.Now()
	// Several checkpoint intervals of appends without a pause.
	for appended < 64<<20 || time.Since(start) < 3500*time.Millisecond {
		batch := make([]moltgate.Event, 100)
		for j := range batch {
			batch[j] = ev(fmt.Sprintf("s%d", j%10), "t.x", 0, payload)
		}
		if _, err := l.Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
		appended += int64(len(batch) * len(payload))
	}
	wal, err := os.Stat(l.Path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MB of events, WAL %d MB", appended>>20, wal.Size()>>20)
	if wal.Size() > appended/2 {
		t.Fatalf("the WAL holds %d bytes after %d bytes of events: it was never started over", wal.Size(), appended)
	}
	db, err := os.Stat(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	if db.Size() < before+appended/4 {
		t.Fatalf("database file %d bytes (was %d) after %d bytes of events: the WAL was not checkpointed", db.Size(), before, appended)
	}
}

// One append larger than the page cache and the WAL write buffer: SQLite
// spills pages to the WAL mid-transaction and rewrites some of them, and the
// WAL VFS writes the frames in many pieces. Every byte must come back, and
// the file must pass integrity_check, before and after a reopen.
func TestLog_LargeAppend(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	l := eventlog.NewLog(path)
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	events := make([]moltgate.Event, 3000)
	for i := range events {
		data := fmt.Sprintf(`{"i":%d,"text":%q}`, i, strings.Repeat(fmt.Sprintf("%04d", i), 300))
		events[i] = ev(fmt.Sprintf("s%d", i%50), "t.x", 0, data)
	}
	if _, err := l.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	check := func(l *eventlog.Log) {
		t.Helper()
		got, err := l.Query(ctx, eventlog.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(events) {
			t.Fatalf("read %d events, want %d", len(got), len(events))
		}
		for i, e := range got {
			if e.ID != events[i].ID || string(e.Data) != string(events[i].Data) {
				t.Fatalf("event %d came back as %s %.40s…", i, e.ID, e.Data)
			}
		}
		db, err := sql.Open("sqlite", eventlog.DSN(path))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var ok string
		if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("integrity_check = %q, %v", ok, err)
		}
	}
	check(l)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := eventlog.NewLog(path)
	if err := l2.Open(); err != nil {
		t.Fatal(err)
	}
	defer l2.Close(ctx)
	check(l2)
}

// The WAL VFS holds a transaction's frames back until the fsync. With a
// page cache of a few pages SQLite spills pages to the WAL mid-transaction,
// reads them back and rewrites them in place: every path through the
// buffer. The data must come back exactly, and the file pass
// integrity_check, before and after a reopen.
func TestWALVFS_SpillsAndRewrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scratch.db")
	open := func() *sql.DB {
		db, err := sql.Open("sqlite", eventlog.DSN(path, "_pragma=cache_size(8)"))
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		return db
	}
	db := open()
	if _, err := db.Exec(`CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)`); err != nil {
		t.Fatal(err)
	}
	want := map[int]string{}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 5; round++ {
		for k := 0; k < 400; k++ {
			v := strings.Repeat(fmt.Sprintf("%d-%d;", round, k), 60)
			if _, err := tx.Exec(`INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v`, k, v); err != nil {
				t.Fatal(err)
			}
			want[k] = v
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	check := func(db *sql.DB) {
		t.Helper()
		rows, err := db.Query(`SELECT k, v FROM t`)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var k int
			var v string
			if err := rows.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			if v != want[k] {
				t.Fatalf("row %d = %.30s…, want %.30s…", k, v, want[k])
			}
			n++
		}
		rows.Close()
		if n != len(want) {
			t.Fatalf("%d rows, want %d", n, len(want))
		}
		var ok string
		if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("integrity_check = %q, %v", ok, err)
		}
	}
	check(db)
	db.Close()
	db = open()
	defer db.Close()
	check(db)
}

// The WAL VFS is correct only while every connection keeps WAL and
// synchronous=FULL (with NORMAL, readers met frames the file did not hold
// yet): DSN's connections have them, and DSN refuses an extra that changes
// either, however it is spelled.
func TestDSN_KeepsWALAndFullSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scratch.db")
	db, err := sql.Open("sqlite", eventlog.DSN(path, "_pragma=cache_size(8)", "_pragma=journal_size_limit(1048576)"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var sync int
	var mode string
	if err := db.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
		t.Errorf("synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	for _, extra := range []string{
		"_pragma=synchronous(NORMAL)", "_pragma=SYNCHRONOUS = OFF", "_pragma=main.synchronous(1)",
		"_pragma=synchronous%3D0", "_synchronous=NORMAL", "_sync=0",
		"_pragma=journal_mode(DELETE)", "_journal_mode=MEMORY", "_journal=OFF",
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("DSN accepted %q", extra)
				}
			}()
			eventlog.DSN(path, extra)
		}()
	}
}

// A page of a type prefix merges one index scan per matching type; it must
// return exactly what the unpaged query returns, cut to the page.
func TestLog_TypePrefixPages(t *testing.T) {
	l := MustOpenLog(t)
	ctx := context.Background()
	types := []string{"a.one", "a.two", "a.three", "ab.other", "b.one"}
	var batch []moltgate.Event
	for i := 0; i < 300; i++ {
		batch = append(batch, ev(fmt.Sprintf("s%d", i%4), types[(i*7)%len(types)], 0, `{}`))
	}
	if _, err := l.Append(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	seqs := func(events []moltgate.Event) []int64 {
		out := make([]int64, len(events))
		for i, e := range events {
			out[i] = e.Seq
		}
		return out
	}
	for _, f := range []eventlog.Filter{
		{TypePrefix: "a.", Limit: 10, Desc: true},
		{TypePrefix: "a.", Limit: 10},
		{TypePrefix: "a.*", Limit: 25, Desc: true, UntilSeq: 150},
		{TypePrefix: "a*", Limit: 40, AfterSeq: 20},
		{TypePrefix: "a.", Limit: 7, Stream: "s1", Desc: true},
		{TypePrefix: "b.", Limit: 1000},
		{TypePrefix: "a.", Limit: 1001, Desc: true}, // past the merged pages' cap
		{TypePrefix: "c.", Limit: 10},
	} {
		page, err := l.Query(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		all := f
		all.Limit = 0
		want, err := l.Query(ctx, all)
		if err != nil {
			t.Fatal(err)
		}
		want = want[:min(len(want), f.Limit)]
		if fmt.Sprint(seqs(page)) != fmt.Sprint(seqs(want)) {
			t.Errorf("%+v: page %v, want %v", f, seqs(page), seqs(want))
		}
		for _, e := range page {
			if !strings.HasPrefix(e.Type, strings.TrimSuffix(f.TypePrefix, "*")) {
				t.Errorf("%+v: got type %s", f, e.Type)
			}
		}
	}
}

// TestLog_FiltersAgreeWithMatch holds the log's SQL filters to
// EventFilter.Match, which follows of the log use: both must pick the same
// events, including the channel and sender a payload names.
func TestLog_FiltersAgreeWithMatch(t *testing.T) {
	l := MustOpenLog(t)
	ctx := context.Background()
	payloads := []struct{ typ, data, actor string }{
		{"chat.message.added", `{"sessionKey":"agent:main:main","role":"user","content":"hi","origin":{"channel":"telegram","chatId":"42","sender":"42"}}`, "telegram:42"},
		{"chat.run.started", `{"sessionKey":"agent:main:main","runId":"r1","origin":{"channel":"telegram","chatId":"42","sender":"42"}}`, "telegram:42"},
		{"chat.message.added", `{"sessionKey":"agent:main:main","role":"assistant","content":"hello","origin":{"channel":"telegram","chatId":"42","sender":"42"}}`, "agent"},
		{"channel.delivery.sent", `{"deliveryId":"d","kind":"reply","channel":"telegram","chatId":"42","sender":"42","attempt":1}`, "outbox"},
		{"channel.pairing.requested", `{"channel":"discord","senderId":"7","code":"ABCDEFGH","origin":{"channel":"discord","chatId":"c7","sender":"7"}}`, "discord:7"},
		{"channel.pairing.approved", `{"channel":"discord","senderId":"7","code":"ABCDEFGH"}`, "owner@example.com"},
		{"channel.allowlist.changed", `{"channel":"slack","added":["U1"]}`, "owner@example.com"},
		{"chat.message.added", `{"sessionKey":"agent:main:main","role":"user","content":"from the web"}`, "device:abc"},
		{"chat.message.added", `{"sessionKey":"agent:main:main","role":"user","content":"odd","origin":null,"channel":"slack"}`, "device:abc"},
		{"config.applied", `{"hash":"h","channel":"telegram"}`, "owner@example.com"},
	}
	var batch []moltgate.Event
	for i := 0; i < 60; i++ {
		p := payloads[i%len(payloads)]
		e := ev(fmt.Sprintf("s%d", i%3), p.typ, 0, p.data)
		e.Meta = moltgate.Meta{Actor: p.actor}
		batch = append(batch, e)
	}
	if _, err := l.Append(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	all, err := l.Query(ctx, eventlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []eventlog.Filter{
		{Channel: "telegram"},
		{Channel: "telegram", Sender: "42", Desc: true, Limit: 5},
		{Sender: "7"},
		{Channel: "discord", TypePrefix: "channel.", Stream: "s1"},
		{Channel: "slack"},
		{Channel: "nowhere"},
		{Stream: "s2", Desc: true, Limit: 4},
		{Stream: "s0", TypePrefix: "chat.message.added", AfterSeq: 10, UntilSeq: 50},
		{Actor: "owner@example.com", TypePrefix: "channel.*"},
		{Channel: "telegram", Since: time.Now().Add(-time.Hour), Until: time.Now().Add(time.Hour)},
	} {
		got, err := l.Query(ctx, f)
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		var want []int64
		for _, e := range all {
			if f.Match(e) {
				want = append(want, e.Seq)
			}
		}
		if f.Desc {
			slices.Reverse(want)
		}
		if f.Limit > 0 {
			want = want[:min(len(want), f.Limit)]
		}
		var seqs []int64
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		if fmt.Sprint(seqs) != fmt.Sprint(want) {
			t.Errorf("%+v: SQL gives %v, Match %v", f, seqs, want)
		}
		if len(want) == 0 && f.Channel != "nowhere" {
			t.Errorf("%+v: no events match, the case proves nothing", f)
		}
		if n, err := l.Count(ctx, f); err != nil || (f.Limit == 0 && n != int64(len(want))) {
			t.Errorf("%+v: Count = %d, %v; want %d", f, n, err, len(want))
		}
	}
}

// EnvelopeOnly gives the same events on the raw range read and in SQL: the
// listed types without payload or meta, at the schema they were stored
// with (there is no payload to upcast), the others whole and upcast.
func TestLog_EnvelopeOnlyAgrees(t *testing.T) {
	l := MustOpenLog(t)
	ctx := context.Background()
	old := ev("session:main", moltgate.EventChatMessageAdded, 0, `{"sessionKey":"main","role":"user","text":"hi"}`)
	old.Schema, old.Meta = 1, moltgate.Meta{Actor: "device:a"}
	other, another := ev("s", "t.x", 0, `{"n":1}`), ev("s", "t.x", 0, `{"n":2}`)
	other.Meta, another.Meta = moltgate.Meta{Actor: "owner"}, moltgate.Meta{Actor: "owner"}
	if _, err := l.Append(ctx, old, other, another); err != nil {
		t.Fatal(err)
	}
	for _, only := range [][]string{{moltgate.EventChatMessageAdded}, {"t.x"}, {"t.x", moltgate.EventChatMessageAdded}} {
		raw, err := l.Query(ctx, eventlog.Filter{EnvelopeOnly: only})
		if err != nil {
			t.Fatal(err)
		}
		viaSQL, err := l.Query(ctx, eventlog.Filter{EnvelopeOnly: only, Desc: true})
		if err != nil {
			t.Fatal(err)
		}
		slices.Reverse(viaSQL)
		if len(raw) != 3 || fmt.Sprintf("%+v", raw) != fmt.Sprintf("%+v", viaSQL) {
			t.Fatalf("EnvelopeOnly %v:\nraw %+v\nSQL %+v", only, raw, viaSQL)
		}
		for _, e := range raw {
			switch {
			case slices.Contains(only, e.Type) && (e.Data != nil || e.Meta.Actor != ""):
				t.Errorf("EnvelopeOnly %v: %s came with its payload %s or meta %+v", only, e.Type, e.Data, e.Meta)
			case e.Type == moltgate.EventChatMessageAdded && slices.Contains(only, e.Type) && e.Schema != 1:
				t.Errorf("EnvelopeOnly %v: an envelope stored at schema 1 reads as schema %d", only, e.Schema)
			case !slices.Contains(only, e.Type) && (e.Data == nil || e.Meta.Actor == ""):
				t.Errorf("EnvelopeOnly %v: %s came without its payload or meta", only, e.Type)
			case e.Type == moltgate.EventChatMessageAdded && !slices.Contains(only, e.Type) && (e.Schema != 2 || !strings.Contains(string(e.Data), `"content"`)):
				t.Errorf("EnvelopeOnly %v: %s not upcast: schema %d, %s", only, e.Type, e.Schema, e.Data)
			}
		}
	}
}

// After Close, reads and subscriptions answer ErrClosed, on a read-only
// log as on a writing one.
func TestLog_ReadsAfterClose(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	w := eventlog.NewLog(path)
	if err := w.Open(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(ctx, ev("s", "t.x", 0, `{}`)); err != nil {
		t.Fatal(err)
	}
	ro := eventlog.NewLog(path)
	ro.ReadOnly = true
	if err := ro.Open(); err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Append(ctx, ev("s", "t.x", 0, `{}`)); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("Append on a read-only log = %v, want ErrClosed", err)
	}
	for name, l := range map[string]*eventlog.Log{"read-only": ro, "writing": w} {
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		for _, f := range []eventlog.Filter{{}, {Desc: true}} { // the raw range read and SQL
			if err := l.Scan(ctx, f, func(moltgate.Event) error { return nil }); !errors.Is(err, eventlog.ErrClosed) {
				t.Errorf("%s: Scan(%+v) after Close = %v, want ErrClosed", name, f, err)
			}
		}
		sub := l.Subscribe(ctx, 0)
		select {
		case e, ok := <-sub.C():
			if ok {
				t.Errorf("%s: a subscription after Close delivered seq %d", name, e.Seq)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: a subscription after Close did not end", name)
		}
		if !errors.Is(sub.Err(), eventlog.ErrClosed) {
			t.Errorf("%s: subscription after Close: Err = %v, want ErrClosed", name, sub.Err())
		}
		sub.Close()
	}
}

// Close while subscriptions replay and follow, and appends go on: every
// subscription ends, having delivered events in order without a gap, and
// every append returns. Run with -race.
func TestLog_CloseRacesSubscriptions(t *testing.T) {
	ctx := context.Background()
	l := eventlog.NewLog(filepath.Join(t.TempDir(), "m.db"))
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	batch := make([]moltgate.Event, 3000)
	for i := range batch {
		batch[i] = ev(fmt.Sprintf("s%d", i%7), "t.x", 0, `{}`)
	}
	if _, err := l.Append(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				if _, err := l.Append(ctx, ev(fmt.Sprintf("w%d", w), "t.x", 0, `{}`)); err != nil {
					if !errors.Is(err, eventlog.ErrClosed) {
						t.Errorf("append: %v", err)
					}
					return
				}
			}
		}(w)
	}
	for i := 0; i < 6; i++ {
		from := int64(0) // replays
		if i%2 == 1 {
			from = l.LastSeq() // follows
		}
		sub := l.Subscribe(ctx, from)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sub.Close()
			next := from + 1
			for e := range sub.C() {
				if e.Seq != next {
					t.Errorf("subscription from %d: got seq %d, want %d", from, e.Seq, next)
					return
				}
				next++
			}
			if err := sub.Err(); err != nil && !errors.Is(err, eventlog.ErrClosed) {
				t.Errorf("subscription from %d ended with %v", from, err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("subscriptions or appends still running 30 s after Close")
	}
}
