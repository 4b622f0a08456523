package browser

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// chromiumPath is Debian's package; the tests need the real browser.
const chromiumPath = "/usr/bin/chromium"

// testTimeout is generous: Chromium starts slowly on two shared cores.
const testTimeout = 90 * time.Second

// newManager opens a Manager of the test's own, closed at the end.
func newManager(tb testing.TB, configure func(*Manager)) *Manager {
	tb.Helper()
	m := NewManager()
	m.ExecPath = chromiumPath
	m.Logger = testLogger(tb)
	if configure != nil {
		configure(m)
	}
	if err := m.Open(); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return m
}

var (
	sharedOnce sync.Once
	shared     *Manager
)

// sharedManager is one browser for the tests that do not kill, idle-close
// or count launches, to spare a launch per test. TestMain closes it.
func sharedManager(tb testing.TB) *Manager {
	sharedOnce.Do(func() {
		shared = NewManager()
		shared.ExecPath = chromiumPath
		shared.IdleTimeout = -1
		shared.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if err := shared.Open(); err != nil {
			panic(err)
		}
	})
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := shared.Close(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "closing the shared browser:", err)
			code = 1
		}
		cancel()
	}
	os.Exit(code)
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// pages serves HTML pages on loopback: path → body.
func pages(tb testing.TB, p map[string]string) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := p[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, body)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("still not true after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
