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

// slowStopper is a channel that takes a while to stop, as a real one
// closing its connection does; it closes stopping when asked to stop.
type slowStopper struct {
	sender
	stopping chan struct{}
	once     *sync.Once
}

func (s *slowStopper) Run(ctx context.Context, _ moltgate.InboundHandler) error {
	<-ctx.Done()
	s.once.Do(func() { close(s.stopping) })
	time.Sleep(200 * time.Millisecond)
	return nil
}

// What the outbox owes a channel is delivered after the channel restarts,
// not given up while it is down.
func TestManager_RestartKeepsTheDeliveries(t *testing.T) {
	stopping, once := make(chan struct{}), &sync.Once{}
	var sends atomic.Int32
	m := &Manager{
		Factory: func(Settings) (moltgate.Channel, error) {
			return &slowStopper{sender: sender{send: func(ctx context.Context, call int, msg moltgate.OutboundMessage) ([]string, error) {
				sends.Add(1)
				return sendOK(ctx, call, msg)
			}}, stopping: stopping, once: once}, nil
		},
		Settings: func() map[string]Settings {
			return map[string]Settings{"telegram": {Channel: "telegram", Enabled: true, Token: "t"}}
		},
	}
	m.Start(context.Background())
	defer m.Close()
	model := &outboxModel{}
	o := startOutbox(t, model, nil, func(o *Outbox) { o.Channel, o.Configured = m.Channel, m.Configured })

	restarted := make(chan struct{})
	go func() { m.Restart(); close(restarted) }()
	<-stopping // the channel is down until its adapter returns
	if m.Channel("telegram") != nil || !m.Configured("telegram") {
		t.Fatal("while it restarts, the channel should be configured and not running")
	}
	model.add(approval("d1"))
	o.Wake()
	<-restarted
	o.Wake()
	waitUntil(t, "the delivery", model.done)
	if recs := model.recorded(); len(recs) != 1 || recs[0].err != nil || sends.Load() != 1 {
		t.Fatalf("records %+v after %d sends, want one send", recs, sends.Load())
	}
}

// Of two Reconciles at once, the one that read the newer settings wins.
func TestManager_ReconcileAppliesTheNewestSettings(t *testing.T) {
	var runs atomic.Int32
	var mu sync.Mutex
	token := "old"
	var slow atomic.Bool
	reading, resume := make(chan struct{}), make(chan struct{})
	m := &Manager{
		Factory: func(Settings) (moltgate.Channel, error) { return &stub{runs: &runs}, nil },
		Settings: func() map[string]Settings {
			mu.Lock()
			tok := token
			mu.Unlock()
			if slow.CompareAndSwap(true, false) {
				close(reading)
				<-resume // this reader is descheduled with the settings it read
			}
			return map[string]Settings{"telegram": {Channel: "telegram", Enabled: true, Token: tok}}
		},
	}
	m.Start(context.Background())
	defer m.Close()
	slow.Store(true)
	first, second := make(chan struct{}), make(chan struct{})
	go func() { m.Reconcile(); close(first) }()
	<-reading
	mu.Lock()
	token = "new"
	mu.Unlock()
	go func() { m.Reconcile(); close(second) }()
	select { // it waits for the first to finish (before the fix, it did not)
	case <-second:
	case <-time.After(100 * time.Millisecond):
	}
	close(resume)
	<-first
	<-second
	m.mu.Lock()
	got := m.running["telegram"].conn.Token
	m.mu.Unlock()
	if got != "new" {
		t.Fatalf("running with token %q after the config moved to \"new\"", got)
	}
}

// configLog is an event log whose LastSeq the test moves, and which
// records where the manager follows it from.
type configLog struct {
	moltgate.EventReader
	seq  atomic.Int64
	from chan int64
}

func (l *configLog) LastSeq() int64 { return l.seq.Load() }

func (l *configLog) Follow(ctx context.Context, from int64, _ func(moltgate.Event) error) error {
	l.from <- from
	<-ctx.Done()
	return nil
}

// A config change committed while the first Reconcile reads the settings
// is followed, not skipped.
func TestManager_FollowsFromBeforeTheFirstReconcile(t *testing.T) {
	log := &configLog{from: make(chan int64, 1)}
	log.seq.Store(7)
	m := &Manager{
		Factory: func(Settings) (moltgate.Channel, error) { return &stub{runs: &atomic.Int32{}}, nil },
		Settings: func() map[string]Settings {
			log.seq.CompareAndSwap(7, 8) // a config change lands as the settings are read
			return map[string]Settings{}
		},
		Events: log,
	}
	m.Start(context.Background())
	defer m.Close()
	if from := <-log.from; from != 7 {
		t.Fatalf("follows from seq %d, after the change at 8", from)
	}
}

// Editing who may talk to the bot (DM policy, allowlist, mentions) takes
// effect without dropping the platform connection; a new token or URL
// restarts it.
func TestManager_OnlyConnectionChangesRestart(t *testing.T) {
	var runs atomic.Int32
	var mu sync.Mutex
	s := Settings{Channel: "telegram", Enabled: true, Token: "1:t", DMPolicy: moltgate.DMPairing}
	set := func(edit func(s *Settings)) {
		mu.Lock()
		edit(&s)
		mu.Unlock()
	}
	m := &Manager{
		Factory: func(Settings) (moltgate.Channel, error) { return &stub{runs: &runs}, nil },
		Settings: func() map[string]Settings {
			mu.Lock()
			defer mu.Unlock()
			return map[string]Settings{"telegram": s}
		},
	}
	m.Start(context.Background())
	defer m.Close()
	waitUntil(t, "the channel to run", func() bool { return runs.Load() == 1 })

	set(func(s *Settings) {
		s.DMPolicy, s.AllowFrom, s.RequireMention = moltgate.DMAllowlist, []string{"42"}, true
	})
	m.Reconcile()
	time.Sleep(50 * time.Millisecond)
	if n := runs.Load(); n != 1 {
		t.Fatalf("a DM policy edit restarted the channel (%d runs)", n)
	}
	if got, ok := m.ChannelSettings("telegram"); !ok || got.DMPolicy != moltgate.DMAllowlist || !got.Owner("42") || !got.RequireMention {
		t.Fatalf("ChannelSettings = %+v, %v; want the edit", got, ok)
	}
	if st := m.Statuses()[0]; st.DMPolicy != moltgate.DMAllowlist {
		t.Fatalf("status shows dmPolicy %q", st.DMPolicy)
	}

	set(func(s *Settings) { s.APIURL = "http://127.0.0.1:1" })
	m.Reconcile()
	waitUntil(t, "the restart for the new API URL", func() bool { return runs.Load() == 2 })

	set(func(s *Settings) { s.Enabled = false })
	m.Reconcile()
	if m.Channel("telegram") != nil || m.Configured("telegram") {
		t.Fatal("a disabled channel still runs")
	}
	if _, ok := m.ChannelSettings("telegram"); ok {
		t.Fatal("ChannelSettings reports a disabled channel")
	}
}

// Config changes, the admin's restarts and the watchdog's restarts at
// once leave one adapter running (the race detector watches the rest).
func TestManager_ConcurrentChanges(t *testing.T) {
	var runs atomic.Int32
	var policy atomic.Int32
	m := &Manager{
		Factory: func(Settings) (moltgate.Channel, error) { return &stub{runs: &runs, silent: true}, nil },
		Settings: func() map[string]Settings {
			p := []string{moltgate.DMPairing, moltgate.DMOpen}[policy.Load()%2]
			return map[string]Settings{"telegram": {Channel: "telegram", Enabled: true, Token: "1:t", DMPolicy: p}}
		},
		SilenceTimeout: 10 * time.Millisecond, // every adapter is silent: the watchdog restarts them all the time
	}
	m.Start(context.Background())
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			for range 20 {
				switch i {
				case 0:
					policy.Add(1)
					m.Reconcile()
				case 1:
					m.Restart()
				case 2:
					_, _ = m.Statuses(), m.Channel("telegram")
					if s, ok := m.ChannelSettings("telegram"); !ok || s.Token != "1:t" || !m.Configured("telegram") {
						t.Errorf("ChannelSettings = %+v, %v", s, ok)
					}
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	waitUntil(t, "the channel to run", func() bool { return m.Channel("telegram") != nil })
	m.Close()
	if st := m.Statuses()[0]; st.State != moltgate.ChannelStopped {
		t.Fatalf("after Close: %+v", st)
	}
	if runs.Load() < 20 {
		t.Fatalf("only %d runs: the restarts did not happen", runs.Load())
	}
}

// refusing is a channel whose platform refuses the token while refused is
// set: Run gives up at once.
type refusing struct {
	stub
	refused *atomic.Bool
}

func (r *refusing) Run(ctx context.Context, h moltgate.InboundHandler) error {
	if r.refused.Load() {
		r.runs.Add(1)
		return errors.New("the token was refused")
	}
	return r.stub.Run(ctx, h)
}

// A channel that gave up is tried again at the next Reconcile, even with
// the same settings (the owner fixed the bot on the platform's side); one
// that runs is left alone.
func TestManager_ReconcileRetriesAChannelThatGaveUp(t *testing.T) {
	var runs atomic.Int32
	var refused atomic.Bool
	refused.Store(true)
	m := &Manager{
		Factory: func(Settings) (moltgate.Channel, error) {
			return &refusing{stub: stub{runs: &runs}, refused: &refused}, nil
		},
		Settings: func() map[string]Settings {
			return map[string]Settings{"telegram": {Channel: "telegram", Enabled: true, Token: "1:t"}}
		},
	}
	m.Start(context.Background())
	defer m.Close()
	waitUntil(t, "the adapter to give up", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.running["telegram"].ended()
	})
	refused.Store(false)
	m.Reconcile()
	waitUntil(t, "the retry", func() bool { return runs.Load() == 2 })
	m.Reconcile()
	time.Sleep(50 * time.Millisecond)
	if n := runs.Load(); n != 2 {
		t.Fatalf("a running channel was restarted (%d runs)", n)
	}
}
