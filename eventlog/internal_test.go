package eventlog

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
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
