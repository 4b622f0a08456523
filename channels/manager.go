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
// only the channels whose connection (token, URLs) changed; a bad token
// leaves that channel failed, visibly, while the others run.
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
	// maps only, and is never held while an adapter stops, because a
	// stopping adapter may be inside Handle, which may ask for a channel.
	op      sync.Mutex
	mu      sync.Mutex
	running map[string]*instance
	// current are the settings as of the last Reconcile. Unlike running,
	// they stay while a channel restarts or the manager closes, and they
	// carry the edits that need no restart (DM policy, allowlist).
	current map[string]Settings
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// instance is one adapter's run.
type instance struct {
	conn     connection // what the adapter was built from
	ch       moltgate.Channel
	problem  string // why it is not running (construction failed)
	restarts int
	cancel   context.CancelFunc
	done     chan struct{}
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
	m.running, m.current, m.closed = map[string]*instance{}, map[string]Settings{}, false
	m.mu.Unlock()
	// A config change applied after the first Reconcile read the settings
	// must still wake the manager: follow from before that read.
	var from int64
	if m.Events != nil {
		from = m.Events.LastSeq()
	}
	m.Reconcile()
	if m.Events != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			_ = m.Events.Follow(ctx, from, func(e moltgate.Event) error {
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

// Reconcile brings the running channels in line with the settings: those
// whose connection changed restart, removed ones stop, new ones start,
// and those that gave up (a refused token, a problem) try again, since
// what was wrong may have been fixed outside the config. The rest of the
// settings (DM policy, allowlist, mentions) takes effect without a
// restart.
func (m *Manager) Reconcile() {
	m.op.Lock()
	defer m.op.Unlock()
	// Read under op, so that of two Reconciles at once (a config change,
	// the admin's restart) the one that read the newer settings is the
	// one applied last.
	want := m.Settings()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	for _, name := range moltgate.ChannelNames {
		m.current[name] = want[name]
	}
	m.mu.Unlock()
	for _, name := range moltgate.ChannelNames {
		s := want[name]
		m.mu.Lock()
		cur := m.running[name]
		m.mu.Unlock()
		if cur != nil && cur.conn == s.connection() && !cur.ended() {
			continue
		}
		if cur != nil {
			m.stop(name)
		}
		if s.Enabled {
			m.start(s, 0)
		}
	}
}

// ended reports whether the adapter has given up (its Run returned) or
// was never built.
func (i *instance) ended() bool {
	select {
	case <-i.done:
		return true
	default:
		return false
	}
}

// start builds and runs a channel's adapter. Callers hold m.op. The
// instance is complete before it is published in m.running: Statuses,
// Channel and the watchdog read it without m.op.
func (m *Manager) start(s Settings, restarts int) {
	inst := &instance{conn: s.connection(), restarts: restarts, done: make(chan struct{})}
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
				inst, s := m.running[name], m.current[name]
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
				// s has the connection inst was built from: a Reconcile
				// that changed it (it holds op too) would have restarted it.
				m.start(s, inst.restarts+1)
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

// ChannelSettings returns a channel's settings as of the last Reconcile
// (the ones its running adapter uses, with the latest DM policy and
// allowlist); ok is false when the settings do not enable it.
func (m *Manager) ChannelSettings(name string) (s Settings, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s = m.current[name]
	return s, s.Enabled
}

// Configured reports whether the settings enable a channel, as of the
// last Reconcile. It stays true while the channel restarts or the
// manager closes, when Channel returns nil for a while: the outbox then
// waits for the channel instead of giving up what it owes it.
func (m *Manager) Configured(name string) bool {
	_, ok := m.ChannelSettings(name)
	return ok
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
			out = append(out, moltgate.ChannelStatus{Channel: name, State: moltgate.ChannelFailed, Error: inst.problem, DMPolicy: m.current[name].DMPolicy})
		default:
			st := inst.ch.Status()
			st.Channel, st.DMPolicy = name, m.current[name].DMPolicy
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
