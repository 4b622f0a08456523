package channels

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Factory builds the adapter for a channel's settings. cmd/moltgate
// provides it, so this package depends on no adapter.
type Factory func(s Settings) (moltgate.Channel, error)

// DefaultSilenceTimeout is how long a running channel may go without a
// sign of life (a poll answered, a heartbeat) before the watchdog
// restarts it.
const DefaultSilenceTimeout = 3 * time.Minute

// Manager runs one adapter per enabled channel. A config change restarts
// only the channels whose settings changed; a bad token leaves that
// channel failed, visibly, while the others run.
type Manager struct {
	Factory  Factory
	Settings func() map[string]Settings
	// Handle receives every inbound message (the Router).
	Handle moltgate.InboundHandler
	// Events wakes the manager on config changes; WaitFor waits until the
	// read models (which Settings reads) have applied an event.
	Events         moltgate.EventReader
	WaitFor        func(ctx context.Context, seq int64) error
	SilenceTimeout time.Duration
	Logger         *slog.Logger

	// op serialises changes (reconcile, restart, watchdog); mu guards the
	// map only, and is never held while an adapter stops, because a
	// stopping adapter may be inside Handle, which may ask for a channel.
	op      sync.Mutex
	mu      sync.Mutex
	running map[string]*instance
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// instance is one adapter's run.
type instance struct {
	settings    Settings
	fingerprint string
	ch          moltgate.Channel
	problem     string // why it is not running (construction failed)
	restarts    int
	cancel      context.CancelFunc
	done        chan struct{}
}

// Start starts the enabled channels, then follows config changes and
// watches for silent channels until Close.
func (m *Manager) Start(ctx context.Context) {
	if m.SilenceTimeout == 0 {
		m.SilenceTimeout = DefaultSilenceTimeout
	}
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	ctx, m.cancel = context.WithCancel(ctx)
	m.mu.Lock()
	m.running, m.closed = map[string]*instance{}, false
	m.mu.Unlock()
	m.Reconcile()
	if m.Events != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			_ = m.Events.Follow(ctx, m.Events.LastSeq(), func(e moltgate.Event) error {
				if e.Type == moltgate.EventConfigApplied {
					if m.WaitFor != nil {
						_ = m.WaitFor(ctx, e.Seq)
					}
					m.Reconcile()
				}
				return nil
			})
		}()
	}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.watchdog(ctx) }()
}

// Reconcile brings the running channels in line with the settings:
// changed ones restart, removed ones stop, new ones start.
func (m *Manager) Reconcile() {
	want := m.Settings()
	m.op.Lock()
	defer m.op.Unlock()
	for _, name := range moltgate.ChannelNames {
		s := want[name]
		fp := s.fingerprint()
		m.mu.Lock()
		cur, closed := m.running[name], m.closed
		m.mu.Unlock()
		if closed || (cur != nil && cur.fingerprint == fp) {
			continue
		}
		if cur != nil {
			m.stop(name)
		}
		if s.Enabled {
			m.start(s, fp, 0)
		}
	}
}

// start builds and runs a channel's adapter. Callers hold m.op. The
// instance is complete before it is published in m.running: Statuses,
// Channel and the watchdog read it without m.op.
func (m *Manager) start(s Settings, fp string, restarts int) {
	inst := &instance{settings: s, fingerprint: fp, restarts: restarts, done: make(chan struct{})}
	if s.Problem != "" {
		inst.problem = s.Problem
		m.Logger.Error("channel cannot start", "channel", s.Channel, "problem", s.Problem)
	} else if ch, err := m.Factory(s); err != nil {
		inst.problem = err.Error()
		m.Logger.Error("channel cannot start", "channel", s.Channel, "error", inst.problem)
	} else {
		inst.ch = ch
	}
	var ctx context.Context
	if inst.ch == nil {
		close(inst.done)
	} else {
		ctx, inst.cancel = context.WithCancel(context.Background())
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		if inst.cancel != nil {
			inst.cancel()
		}
		return
	}
	m.running[s.Channel] = inst
	m.mu.Unlock()
	if inst.ch == nil {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(inst.done)
		m.Logger.Info("channel starting", "channel", s.Channel, "dmPolicy", s.DMPolicy)
		if err := inst.ch.Run(ctx, m.Handle); err != nil && !errors.Is(err, context.Canceled) {
			// A refused token: retrying cannot help until the config changes.
			m.Logger.Error("channel stopped", "channel", s.Channel, "error", err)
		}
	}()
}

// stop stops a channel and waits for its adapter to return. Callers hold
// m.op.
func (m *Manager) stop(name string) {
	m.mu.Lock()
	inst := m.running[name]
	delete(m.running, name)
	m.mu.Unlock()
	if inst == nil {
		return
	}
	if inst.cancel != nil {
		inst.cancel()
	}
	<-inst.done
}

// Restart restarts every channel (the admin's gateway restart).
func (m *Manager) Restart() {
	m.op.Lock()
	for _, name := range moltgate.ChannelNames {
		m.stop(name)
	}
	m.op.Unlock()
	m.Reconcile()
}

// watchdog restarts a running channel that has been silent longer than
// SilenceTimeout: a half-open connection the adapter did not notice.
func (m *Manager) watchdog(ctx context.Context) {
	t := time.NewTicker(max(m.SilenceTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.op.Lock()
			for _, name := range moltgate.ChannelNames {
				m.mu.Lock()
				inst := m.running[name]
				m.mu.Unlock()
				if inst == nil || inst.ch == nil {
					continue
				}
				st := inst.ch.Status()
				if st.State != moltgate.ChannelRunning || st.LastActivity.IsZero() || now.Sub(st.LastActivity) < m.SilenceTimeout {
					continue
				}
				m.Logger.Warn("channel went silent: restarting it", "channel", name, "silentFor", now.Sub(st.LastActivity).Round(time.Second))
				m.stop(name)
				m.start(inst.settings, inst.fingerprint, inst.restarts+1)
			}
			m.op.Unlock()
		}
	}
}

// Channel returns the running adapter of a channel, or nil.
func (m *Manager) Channel(name string) moltgate.Channel {
	m.mu.Lock()
	defer m.mu.Unlock()
	if inst := m.running[name]; inst != nil {
		return inst.ch
	}
	return nil
}

// Configured reports whether a channel is enabled in the settings.
func (m *Manager) Configured(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running[name] != nil
}

// Statuses reports every platform: running, failed (with why), or
// stopped when it is not configured.
func (m *Manager) Statuses() []moltgate.ChannelStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]moltgate.ChannelStatus, 0, len(moltgate.ChannelNames))
	for _, name := range moltgate.ChannelNames {
		inst := m.running[name]
		switch {
		case inst == nil:
			out = append(out, moltgate.ChannelStatus{Channel: name, State: moltgate.ChannelStopped})
		case inst.ch == nil:
			out = append(out, moltgate.ChannelStatus{Channel: name, State: moltgate.ChannelFailed, Error: inst.problem, DMPolicy: inst.settings.DMPolicy})
		default:
			st := inst.ch.Status()
			st.Channel, st.DMPolicy = name, inst.settings.DMPolicy
			st.Reconnects += inst.restarts
			out = append(out, st)
		}
	}
	return out
}

// Close stops every channel and the manager's loops.
func (m *Manager) Close() {
	if m.cancel != nil {
		m.cancel()
	}
	m.op.Lock()
	for _, name := range moltgate.ChannelNames {
		m.stop(name)
	}
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.op.Unlock()
	m.wg.Wait()
}
