// Package commands is moltgate's write side. Each command reads the read
// models, decides, appends its events with the expected version of the
// stream it decided on, and waits until the read models have applied them,
// so that whoever called it reads its own write. When two commands race,
// the log refuses the second append (ErrConcurrency); the loser decides
// again on the winner's state, which gives either the same answer
// (approving an approved request) or a clear conflict. It implements the
// service interfaces of the root package.
package commands

import (
	"context"
	"log/slog"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/projections"
	"github.com/moltgate/moltgate/secrets"
)

// DefaultPairingTTL is how long a device pairing request waits for approval.
const DefaultPairingTTL = 5 * time.Minute

// applyTimeout bounds how long a command waits for the read models.
const applyTimeout = 10 * time.Second

// maxAttempts bounds how often a command decides again after losing a race.
const maxAttempts = 8

// Service implements moltgate.DeviceService, ConfigService, ChatService,
// ChannelAccessService, DeliveryService and WorkspaceService.
type Service struct {
	Log    *eventlog.Log
	Runner *projections.Runner
	Models *projections.Set
	// Sealer seals config secrets before they are appended. Required for
	// config writes that carry secrets.
	Sealer *secrets.Sealer
	// Runs is the agent's queue: SendMessage hands accepted runs to it.
	Runs moltgate.RunQueue
	// Getenv reads the environment for ${NAME} checks.
	Getenv func(string) string

	PairingTTL time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
	// OnAppend, when set, is told how long each append took (for the
	// append-latency metric): until the commit was durable, and for a
	// critical append until the replica had it too, or the bounded wait
	// for it ran out, as the metric's help says.
	OnAppend func(time.Duration)
}

var (
	_ moltgate.DeviceService        = (*Service)(nil)
	_ moltgate.ConfigService        = (*Service)(nil)
	_ moltgate.ChatService          = (*Service)(nil)
	_ moltgate.ChannelAccessService = (*Service)(nil)
)

// New returns a service over a log and the read models its runner feeds.
func New(log *eventlog.Log, runner *projections.Runner, models *projections.Set) *Service {
	return &Service{Log: log, Runner: runner, Models: models, PairingTTL: DefaultPairingTTL, Now: time.Now, Logger: slog.Default()}
}

// append appends events (critical ones wait for the replica) and waits
// until the read models have applied them. On a read-model timeout the
// stored events are returned with the error: they are in the log.
func (s *Service) append(ctx context.Context, critical bool, events ...moltgate.Event) ([]moltgate.Event, error) {
	appendFn := s.Log.Append
	if critical {
		appendFn = s.Log.AppendCritical
	}
	start := time.Now()
	stored, err := appendFn(ctx, events...)
	if err != nil {
		return nil, err
	}
	if s.OnAppend != nil {
		s.OnAppend(time.Since(start))
	}
	var last int64
	for _, e := range stored {
		last = max(last, e.Seq)
	}
	return stored, s.waitFor(ctx, last)
}

// waitFor waits (bounded) until the read models have applied seq.
func (s *Service) waitFor(ctx context.Context, seq int64) error {
	wctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	return s.Runner.WaitFor(wctx, seq)
}

// decide runs a decision and appends the events it returns (each carrying
// the expected version of its stream). When another writer got to a
// stream first, it waits until the read models have caught up with the
// log and decides again, so the loser answers from the winner's state. A
// decision that needs no event returns none (and its own answer through
// the closure).
func (s *Service) decide(ctx context.Context, critical bool, decision func() ([]moltgate.Event, error)) ([]moltgate.Event, error) {
	for attempt := 1; ; attempt++ {
		events, err := decision()
		if err != nil || len(events) == 0 {
			return nil, err
		}
		stored, err := s.append(ctx, critical, events...)
		if err != eventlog.ErrConcurrency {
			return stored, err
		}
		if attempt == maxAttempts {
			return nil, moltgate.Errorf(moltgate.ECONFLICT, "%s changed %d times while this change was being made: try again", events[0].Stream, attempt)
		}
		if err := s.waitFor(ctx, s.Log.LastSeq()); err != nil {
			return nil, err
		}
	}
}

// at returns e set to land at version of its stream.
func at(e moltgate.Event, version int64) moltgate.Event {
	e.Version = version
	return e
}
