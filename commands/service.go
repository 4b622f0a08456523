// Package commands is moltgate's write side. Each command reads the read
// models, decides, appends its events and waits until the read models have
// applied them, so that whoever called it reads its own write. It
// implements the service interfaces of the root package.
package commands

import (
	"context"
	"log/slog"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/projections"
)

// DefaultPairingTTL is how long a device pairing request waits for approval.
const DefaultPairingTTL = 5 * time.Minute

// applyTimeout bounds how long a command waits for the read models.
const applyTimeout = 10 * time.Second

// Service implements moltgate.DeviceService, ConfigService and ChatService.
type Service struct {
	Log    *eventlog.Log
	Runner *projections.Runner
	Models *projections.Set

	PairingTTL time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
	// OnAppend, when set, is told how long each durable append took (for
	// the append-latency metric).
	OnAppend func(time.Duration)
}

var (
	_ moltgate.DeviceService = (*Service)(nil)
	_ moltgate.ConfigService = (*Service)(nil)
	_ moltgate.ChatService   = (*Service)(nil)
)

// New returns a service over a log and the read models its runner feeds.
func New(log *eventlog.Log, runner *projections.Runner, models *projections.Set) *Service {
	return &Service{Log: log, Runner: runner, Models: models, PairingTTL: DefaultPairingTTL, Now: time.Now, Logger: slog.Default()}
}

// append appends events (critical ones wait for the replica) and waits
// until the read models have applied them.
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
	var max int64
	for _, e := range stored {
		max = maxSeq(max, e.Seq)
	}
	wctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	if err := s.Runner.WaitFor(wctx, max); err != nil {
		return stored, err
	}
	return stored, nil
}

func maxSeq(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
