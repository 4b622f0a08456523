package telegram_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/channels/telegram"
	"github.com/moltgate/moltgate/internal/faketelegram"
)

// wait bounds every wait for a condition.
const wait = 5 * time.Second

var (
	alice = faketelegram.User{ID: 1001, FirstName: "Alice", LastName: "Liddell", Username: "alice"}
	bob   = faketelegram.User{ID: 1002, Username: "bob_the_builder"}
	group = faketelegram.Chat{ID: -1001234567890, Type: "supergroup", Title: "Friends"}
	forum = faketelegram.Chat{ID: -1009876543210, Type: "supergroup", Title: "Team", IsForum: true}
)

// config points an adapter at the fake, with short polls and backoff.
func config(fake *faketelegram.Server, logs io.Writer) telegram.Config {
	if logs == nil {
		logs = io.Discard
	}
	return telegram.Config{
		Token:       fake.Token,
		APIURL:      fake.URL,
		PollTimeout: time.Second,
		BackoffBase: 10 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func newAdapter(t *testing.T, cfg telegram.Config) *telegram.Adapter {
	t.Helper()
	a, err := telegram.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// session is a Run in progress, recording what the handler got.
type session struct {
	cancel context.CancelFunc
	done   chan error
	msgs   chan moltgate.InboundMessage
}

// start runs a with a handler that records messages; handle, when not
// nil, decides what the handler returns.
func start(t *testing.T, a *telegram.Adapter, handle moltgate.InboundHandler) *session {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{cancel: cancel, done: make(chan error, 1), msgs: make(chan moltgate.InboundMessage, 100)}
	go func() {
		s.done <- a.Run(ctx, func(ctx context.Context, msg moltgate.InboundMessage) error {
			s.msgs <- msg
			if handle != nil {
				return handle(ctx, msg)
			}
			return nil
		})
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop cancels Run and checks that it returns nil promptly.
func (s *session) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// result waits for Run to return on its own.
func (s *session) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.cancel()
		s.cancel = nil
		return err
	case <-time.After(wait):
		t.Fatal("Run did not return")
		return nil
	}
}

func (s *session) next(t *testing.T) moltgate.InboundMessage {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(wait):
		t.Fatal("no inbound message")
		return moltgate.InboundMessage{}
	}
}

// waitFor waits until cond is true.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitStatus waits until the adapter's status satisfies cond.
func waitStatus(t *testing.T, a *telegram.Adapter, what string, cond func(moltgate.ChannelStatus) bool) moltgate.ChannelStatus {
	t.Helper()
	var st moltgate.ChannelStatus
	deadline := time.Now().Add(wait)
	for st = a.Status(); !cond(st); st = a.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("status never became %s: last %+v", what, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return st
}

func isRunning(st moltgate.ChannelStatus) bool { return st.State == moltgate.ChannelRunning }
