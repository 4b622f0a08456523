package eventlog_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
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
	if _, err := l2.Append(ctx, ev("s", "t.x", 2, `{}`)); !errors.Is(err, eventlog.ErrConcurrency) {
		t.Fatalf("stale version after reopen: err = %v", err)
	}
	got, err := l2.Append(ctx, ev("s", "t.x", 3, `{}`))
	if err != nil || got[0].Seq != 3 {
		t.Fatalf("append after reopen = %v, %v", got, err)
	}
}
