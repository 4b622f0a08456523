package channels

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// stub is a Channel whose signs of life the test controls.
type stub struct {
	runs   *atomic.Int32
	mu     sync.Mutex
	silent bool
	start  time.Time
}

func (s *stub) Name() string { return "telegram" }

func (s *stub) Run(ctx context.Context, _ moltgate.InboundHandler) error {
	s.runs.Add(1)
	s.mu.Lock()
	s.start = time.Now()
	s.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (s *stub) Send(context.Context, moltgate.OutboundMessage) ([]string, error) { return nil, nil }
func (s *stub) Typing(context.Context, moltgate.ChannelAddress) error            { return nil }

func (s *stub) Status() moltgate.ChannelStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := time.Now()
	if s.silent {
		last = s.start.Add(-time.Hour) // nothing heard for an hour
	}
	return moltgate.ChannelStatus{Channel: "telegram", State: moltgate.ChannelRunning, LastActivity: last}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A channel that goes silent is restarted by the watchdog; a healthy one
// is left alone.
func TestManager_WatchdogRestartsASilentChannel(t *testing.T) {
	var runs atomic.Int32
	var silent atomic.Bool
	m := &Manager{
		Factory: func(Settings) (moltgate.Channel, error) {
			return &stub{runs: &runs, silent: silent.Load()}, nil
		},
		Settings: func() map[string]Settings {
			return map[string]Settings{"telegram": {Channel: "telegram", Enabled: true, Token: "t"}}
		},
		SilenceTimeout: 40 * time.Millisecond,
	}
	m.Start(context.Background())
	defer m.Close()
	waitUntil(t, "the channel to run", func() bool { return runs.Load() == 1 })
	time.Sleep(200 * time.Millisecond)
	if n := runs.Load(); n != 1 {
		t.Fatalf("a healthy channel was restarted (%d runs)", n)
	}
	silent.Store(true)
	m.Restart() // the next adapter goes silent
	waitUntil(t, "the watchdog to restart the silent channel", func() bool { return runs.Load() >= 4 })
	if st := m.Statuses()[0]; st.Reconnects < 1 {
		t.Fatalf("restarts not counted: %+v", st)
	}
}

// A channel that cannot be built is shown failed with why; changing its
// settings starts it; the others are not touched.
func TestManager_FailedChannelAndReconcile(t *testing.T) {
	var runs atomic.Int32
	token := "bad"
	var mu sync.Mutex
	m := &Manager{
		Factory: func(s Settings) (moltgate.Channel, error) {
			if s.Token == "bad" {
				return nil, errors.New("telegram: Token is not of the form <digits>:<secret>")
			}
			return &stub{runs: &runs}, nil
		},
		Settings: func() map[string]Settings {
			mu.Lock()
			defer mu.Unlock()
			return map[string]Settings{"telegram": {Channel: "telegram", Enabled: true, Token: token}}
		},
	}
	m.Start(context.Background())
	defer m.Close()
	st := m.Statuses()
	if st[0].State != moltgate.ChannelFailed || st[0].Error == "" || st[1].State != moltgate.ChannelStopped {
		t.Fatalf("statuses = %+v", st)
	}
	mu.Lock()
	token = "123:good"
	mu.Unlock()
	m.Reconcile()
	waitUntil(t, "the fixed channel to run", func() bool { return runs.Load() == 1 })
	m.Reconcile() // nothing changed: no restart
	time.Sleep(50 * time.Millisecond)
	if runs.Load() != 1 {
		t.Fatal("an unchanged channel was restarted")
	}
}
