package discord_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/channels/discord"
	"github.com/moltgate/moltgate/internal/fakediscord"
)

const wait = 5 * time.Second // deadline for conditions that hold within milliseconds

// newAdapter builds an adapter on the fake; mod adjusts the config.
func newAdapter(t *testing.T, srv *fakediscord.Server, mod ...func(*discord.Config)) *discord.Adapter {
	t.Helper()
	cfg := discord.Config{
		Token:       srv.Token,
		APIURL:      srv.URL,
		BackoffBase: 10 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, m := range mod {
		m(&cfg)
	}
	a, err := discord.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// run is an adapter's Run in the background, with what it handed over.
type run struct {
	inbox  chan moltgate.InboundMessage
	done   chan error
	cancel context.CancelFunc

	mu       sync.Mutex
	failWith error // the handler's answer
}

// start runs a.Run until the test ends (or stop), collecting messages.
func start(t *testing.T, a *discord.Adapter) *run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{inbox: make(chan moltgate.InboundMessage, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		r.done <- a.Run(ctx, func(_ context.Context, m moltgate.InboundMessage) error {
			r.inbox <- m
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.failWith
		})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return; it must do so promptly.
func (r *run) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // later calls see it too
		return err
	case <-time.After(wait):
		t.Fatalf("Run did not return within %s of its context ending", wait)
		return nil
	}
}

// result waits for Run to return on its own.
func (r *run) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(wait):
		t.Fatalf("Run did not return")
		return nil
	}
}

// next returns the next message handed to the handler.
func (r *run) next(t *testing.T) moltgate.InboundMessage {
	t.Helper()
	select {
	case m := <-r.inbox:
		return m
	case <-time.After(wait):
		t.Fatalf("no inbound message within %s", wait)
		return moltgate.InboundMessage{}
	}
}

// waitStatus waits until the adapter's status satisfies cond.
func waitStatus(t *testing.T, a *discord.Adapter, what string, cond func(moltgate.ChannelStatus) bool) moltgate.ChannelStatus {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st := a.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never became %s; last %+v", what, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func waitRunning(t *testing.T, a *discord.Adapter) moltgate.ChannelStatus {
	t.Helper()
	return waitStatus(t, a, "running", func(st moltgate.ChannelStatus) bool { return st.State == moltgate.ChannelRunning })
}

// startReady starts the adapter and waits until the fake sees it ready.
func startReady(t *testing.T, srv *fakediscord.Server, a *discord.Adapter) *run {
	t.Helper()
	r := start(t, a)
	srv.WaitReady(t, wait)
	waitRunning(t, a)
	return r
}

// testWriter sends logs to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = testWriter{}
