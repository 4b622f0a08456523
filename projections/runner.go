// Package projections derives moltgate's read models from the event log.
//
// A Projection is a name, a version and an Apply method. The Runner replays
// the whole log into every projection at start (RunToEnd), then follows new
// commits, and offers WaitFor so that a command handler can read its own
// write. Projections may persist snapshots; a snapshot written by another
// version of a projection is thrown away and the projection rebuilt from
// scratch.
package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/watermark"
)

// Projection is a read model fed by events.
type Projection interface {
	// Name identifies the projection in errors, dumps and snapshot files.
	Name() string
	// Version changes whenever Apply's meaning changes; state saved by an
	// older version is discarded and rebuilt from the log.
	Version() int
	// Apply folds one event into the model. It must skip types it does not
	// know. An error is reported with the event's seq and type and the
	// runner goes on; it never stops the other projections.
	Apply(e moltgate.Event) error
	// Reset empties the model before a rebuild.
	Reset()
}

// Need says how much of an event a projection reads.
type Need int

// Needs, from least to most.
const (
	NeedNothing  Need = iota // the projection ignores the type
	NeedEnvelope             // it reads seq, stream, type, time: not payload or meta
	NeedPayload              // it reads everything
)

// Selective is implemented by projections that say what they read of each
// event type, so a replay can skip copying and decoding payloads that no
// projection uses. Projections that do not implement it need everything.
type Selective interface {
	Needs(eventType string) Need
}

// Snapshotter is implemented by projections whose state can be saved and
// loaded, so that a restart need not replay the whole log.
type Snapshotter interface {
	Snapshot() (json.RawMessage, error)
	LoadSnapshot(json.RawMessage) error
}

// ApplyError records an event a projection could not apply.
type ApplyError = moltgate.ApplyError

// A replay reads the log in chunks of replayChunk seqs with replayReaders
// readers; a chunk is held in memory between reading and applying.
const (
	replayChunk   = 16384
	replayReaders = 2
)

// maxKeptErrors bounds the errors a runner remembers.
const maxKeptErrors = 100

// Runner keeps projections up to date with a log.
type Runner struct {
	Log         *eventlog.Log
	Projections []Projection
	// SnapshotDir, when set, is where snapshots are saved on Close and
	// loaded at RunToEnd.
	SnapshotDir string
	// Progress, when set, is called during RunToEnd every 64k events.
	Progress func(done, total int64)
	Logger   *slog.Logger

	applied *watermark.Watermark // the seq every projection has seen
	from    map[string]int64     // per projection: the seq its snapshot covers

	mu   sync.Mutex
	errs []ApplyError

	sub    *eventlog.Subscription
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRunner returns a runner for the projections over log.
func NewRunner(log *eventlog.Log, ps ...Projection) *Runner {
	return &Runner{Log: log, Projections: ps, Logger: slog.Default(), applied: watermark.New(0), from: map[string]int64{}}
}

// RunToEnd (re)builds every projection up to the newest event and returns
// how many events it replayed.
func (r *Runner) RunToEnd(ctx context.Context) (int64, error) {
	return r.RunUntil(ctx, 0)
}

// RunUntil builds every projection from scratch (or its snapshot) up to
// seq until (0 = the newest event). It is the time machine behind replay.
func (r *Runner) RunUntil(ctx context.Context, until int64) (int64, error) {
	last := r.Log.LastSeq()
	if until <= 0 || until > last {
		until = last
	}
	start := r.loadSnapshots(ctx, until)
	var n int64
	total := until - start
	// Reading rows costs more than applying them, so two readers each read
	// every other chunk of the log while this goroutine applies the chunks
	// in order. Chunk buffers go back to the readers once applied: a replay
	// of a million events then allocates a few chunks, not sixty.
	chunks := make([]chan []moltgate.Event, replayReaders)
	free := make(chan []moltgate.Event, 2*replayReaders)
	errs := make(chan error, replayReaders)
	envelopeOnly := r.envelopeOnlyTypes()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range chunks {
		chunks[i] = make(chan []moltgate.Event, 1)
		go func(i int) {
			defer close(chunks[i])
			for from := start + int64(i)*replayChunk; from < until; from += replayReaders * replayChunk {
				var events []moltgate.Event
				select {
				case events = <-free:
				default:
					events = make([]moltgate.Event, 0, replayChunk)
				}
				f := eventlog.Filter{AfterSeq: from, UntilSeq: min(from+replayChunk, until), EnvelopeOnly: envelopeOnly}
				if err := r.Log.Scan(rctx, f, func(e moltgate.Event) error { events = append(events, e); return nil }); err != nil {
					errs <- err
					return
				}
				select {
				case chunks[i] <- events:
				case <-rctx.Done():
					return
				}
			}
		}(i)
	}
	for k := 0; ; k++ {
		events, ok := <-chunks[k%replayReaders]
		if !ok {
			break
		}
		for _, e := range events {
			r.apply(e)
		}
		n += int64(len(events))
		if r.Progress != nil {
			r.Progress(n, total)
		}
		clear(events) // the read models keep what they need, not the chunk
		select {
		case free <- events[:0]:
		default:
		}
	}
	select {
	case err := <-errs:
		return n, fmt.Errorf("cannot rebuild read models: %w", err)
	default:
	}
	if r.Progress != nil {
		r.Progress(n, total)
	}
	r.applied.Advance(until)
	return n, nil
}

// envelopeOnlyTypes returns the catalogue's types whose payload no
// projection reads.
func (r *Runner) envelopeOnlyTypes() []string {
	var out []string
	for _, t := range moltgate.EventTypes {
		need := NeedNothing
		for _, p := range r.Projections {
			if s, ok := p.(Selective); ok {
				need = max(need, s.Needs(t))
			} else {
				need = NeedPayload
			}
		}
		if need < NeedPayload {
			out = append(out, t)
		}
	}
	return out
}

// Start follows the log from where RunToEnd stopped until Close.
func (r *Runner) Start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	r.sub = r.Log.Subscribe(ctx, r.Applied())
	go func() {
		defer close(r.done)
		for e := range r.sub.C() {
			r.apply(e)
			r.applied.Advance(e.Seq)
		}
		if err := r.sub.Err(); err != nil {
			r.Logger.Error("read models stopped following the log", "error", err)
		}
	}()
}

// Close stops following and saves snapshots.
func (r *Runner) Close() error {
	if r.cancel != nil {
		r.cancel()
		r.sub.Close()
		<-r.done
	}
	return r.saveSnapshots()
}

// Applied returns the seq up to which every projection is current.
func (r *Runner) Applied() int64 { return r.applied.Get() }

// WaitFor returns once every projection has applied seq, so that a caller
// who just appended reads its own write.
func (r *Runner) WaitFor(ctx context.Context, seq int64) error {
	if r.applied.Wait(ctx, seq) != nil {
		return moltgate.Errorf(moltgate.ETIMEOUT, "read models have not caught up with seq %d", seq)
	}
	return nil
}

// Errors returns the most recent apply errors, oldest first.
func (r *Runner) Errors() []ApplyError {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ApplyError(nil), r.errs...)
}

// apply feeds e to every projection that has not seen it, turning errors
// and panics into ApplyErrors.
func (r *Runner) apply(e moltgate.Event) {
	for _, p := range r.Projections {
		if e.Seq <= r.from[p.Name()] {
			continue
		}
		if err := safeApply(p, e); err != nil {
			ae := ApplyError{Projection: p.Name(), Seq: e.Seq, Type: e.Type, Err: err.Error(), At: time.Now()}
			r.Logger.Error("read model cannot apply event", "projection", ae.Projection, "seq", ae.Seq, "type", ae.Type, "error", ae.Err)
			r.mu.Lock()
			r.errs = append(r.errs, ae)
			if len(r.errs) > maxKeptErrors {
				r.errs = r.errs[len(r.errs)-maxKeptErrors:]
			}
			r.mu.Unlock()
		}
	}
}

func safeApply(p Projection, e moltgate.Event) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return p.Apply(e)
}

// snapshotFile is what a projection's snapshot looks like on disk.
type snapshotFile struct {
	Name    string          `json:"name"`
	Version int             `json:"version"`
	Seq     int64           `json:"seq"`
	EventID string          `json:"eventId"` // the id at Seq: detects a log replaced by another history
	State   json.RawMessage `json:"state"`
}

// loadSnapshots resets every projection and loads the snapshots that are
// still valid for this log, returning the seq from which to replay.
func (r *Runner) loadSnapshots(ctx context.Context, until int64) int64 {
	r.from = map[string]int64{}
	start := until
	for _, p := range r.Projections {
		p.Reset()
		seq := r.loadSnapshot(ctx, p, until)
		r.from[p.Name()] = seq
		start = min(start, seq)
	}
	return start
}

func (r *Runner) loadSnapshot(ctx context.Context, p Projection, until int64) int64 {
	s, ok := p.(Snapshotter)
	if !ok || r.SnapshotDir == "" {
		return 0
	}
	buf, err := os.ReadFile(r.snapshotPath(p))
	if err != nil {
		return 0
	}
	var f snapshotFile
	if err := json.Unmarshal(buf, &f); err != nil {
		r.Logger.Warn("ignoring unreadable snapshot", "projection", p.Name(), "error", err)
		return 0
	}
	if f.Version != p.Version() {
		r.Logger.Info("projection version changed: rebuilding from the log", "projection", p.Name(), "snapshot", f.Version, "code", p.Version())
		return 0
	}
	if f.Seq > until || f.Seq == 0 {
		return 0
	}
	if e, err := r.Log.GetSeq(ctx, f.Seq); err != nil || e.ID != f.EventID {
		r.Logger.Info("snapshot does not match this log: rebuilding", "projection", p.Name())
		return 0
	}
	if err := s.LoadSnapshot(f.State); err != nil {
		r.Logger.Warn("ignoring snapshot", "projection", p.Name(), "error", err)
		p.Reset()
		return 0
	}
	return f.Seq
}

func (r *Runner) snapshotPath(p Projection) string {
	return filepath.Join(r.SnapshotDir, p.Name()+".json")
}

func (r *Runner) saveSnapshots() error {
	if r.SnapshotDir == "" {
		return nil
	}
	seq := r.Applied()
	if seq == 0 {
		return nil
	}
	e, err := r.Log.GetSeq(context.Background(), seq)
	if err != nil {
		return fmt.Errorf("cannot save snapshots: %w", err)
	}
	if err := os.MkdirAll(r.SnapshotDir, 0o700); err != nil {
		return err
	}
	var errs []error
	for _, p := range r.Projections {
		s, ok := p.(Snapshotter)
		if !ok {
			continue
		}
		state, err := s.Snapshot()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		buf, err := json.Marshal(snapshotFile{Name: p.Name(), Version: p.Version(), Seq: seq, EventID: e.ID, State: state})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tmp := r.snapshotPath(p) + ".tmp"
		if err := os.WriteFile(tmp, buf, 0o600); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, os.Rename(tmp, r.snapshotPath(p)))
	}
	return errors.Join(errs...)
}
