package eventlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// appendRequest is one caller's Append, queued for the writer.
type appendRequest struct {
	events []moltgate.Event
	done   chan appendResult
}

type appendResult struct {
	events []moltgate.Event
	err    error
}

// maxCachedStreams bounds the writer's stream-version cache; past it the
// cache is dropped and refilled from the index on demand.
const maxCachedStreams = 100_000

// Append appends events atomically and returns them as stored, with Seq,
// Version and RecordedAt set. It returns only once the commit is durable on
// the local disk.
//
// An event with Version 0 goes to the end of its stream. An event with
// Version n must land at exactly n (n = 1: the stream must be new), else the
// whole call fails with ErrConcurrency and nothing is written.
//
// An event whose ID is already stored is not written again: the stored event
// is returned in its place, so retrying an append is safe.
//
// Concurrent calls are group-committed: one writer goroutine batches them
// into one transaction, so many appenders share one fsync.
func (l *Log) Append(ctx context.Context, events ...moltgate.Event) ([]moltgate.Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	if err := validateEvents(events); err != nil {
		return nil, err
	}
	if l.closed.Load() {
		return nil, ErrClosed
	}
	req := &appendRequest{events: events, done: make(chan appendResult, 1)}
	select {
	case l.appendCh <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Once queued, the request will be committed or refused; wait for that
	// even if ctx ends, so a caller never mistakes a committed event for a
	// lost one.
	res := <-req.done
	return res.events, res.err
}

// AppendCritical appends like Append, then waits (at most CriticalWait)
// until the replica holds the events. Use it for pairing decisions, device
// tokens and config changes. When the wait runs out the events are still
// committed locally; the call succeeds and Status shows the lag.
func (l *Log) AppendCritical(ctx context.Context, events ...moltgate.Event) ([]moltgate.Event, error) {
	stored, err := l.Append(ctx, events...)
	if err != nil || l.replicator == nil {
		return stored, err
	}
	var max int64
	for _, e := range stored {
		max = maxInt64(max, e.Seq)
	}
	wctx, cancel := context.WithTimeout(ctx, l.CriticalWait)
	defer cancel()
	if err := l.replicator.waitFor(wctx, max); err != nil {
		l.Logger.Warn("critical events are committed locally but not yet replicated", "seq", max, "error", err)
	}
	return stored, nil
}

func validateEvents(events []moltgate.Event) error {
	ids := make(map[string]bool, len(events))
	for i, e := range events {
		switch {
		case e.ID == "":
			return moltgate.Errorf(moltgate.EINVALID, "event %d has no id", i)
		case e.Stream == "":
			return moltgate.Errorf(moltgate.EINVALID, "event %s has no stream", e.ID)
		case e.Type == "":
			return moltgate.Errorf(moltgate.EINVALID, "event %s has no type", e.ID)
		case e.Version < 0:
			return moltgate.Errorf(moltgate.EINVALID, "event %s has a negative version", e.ID)
		case len(e.Data) > 0 && !json.Valid(e.Data):
			return moltgate.Errorf(moltgate.EINVALID, "event %s payload is not valid JSON", e.ID)
		case ids[e.ID]:
			return moltgate.Errorf(moltgate.EINVALID, "event id %s appears twice in one append", e.ID)
		}
		ids[e.ID] = true
	}
	return nil
}

// writeLoop is the single writer: it takes the first waiting request, drains
// whatever else is queued (up to MaxBatch events) and commits them together.
func (l *Log) writeLoop(ctx context.Context) {
	batch := make([]*appendRequest, 0, 256)
	for {
		var first *appendRequest
		select {
		case first = <-l.appendCh:
		case <-ctx.Done():
			l.refuseQueued()
			return
		}
		batch = append(batch[:0], first)
		n := len(first.events)
	drain:
		for n < l.MaxBatch {
			select {
			case r := <-l.appendCh:
				batch = append(batch, r)
				n += len(r.events)
			default:
				break drain
			}
		}
		l.commit(batch)
	}
}

// refuseQueued answers requests that were queued while the log closed.
func (l *Log) refuseQueued() {
	for {
		select {
		case r := <-l.appendCh:
			r.done <- appendResult{err: ErrClosed}
		default:
			return
		}
	}
}

// batchWriter holds one transaction's statements and the stream versions it
// has assigned so far, which only join the cache once the commit succeeds.
type batchWriter struct {
	log      *Log
	tx       *sql.Tx
	insert   *sql.Stmt
	now      time.Time
	versions map[string]int64
}

func (l *Log) commit(batch []*appendRequest) {
	results := make([]appendResult, len(batch))
	err := func() error {
		tx, err := l.wdb.Begin()
		if err != nil {
			return fmt.Errorf("cannot begin append: %w", err)
		}
		defer tx.Rollback()
		insert, err := tx.Prepare(`INSERT INTO events (id, stream, version, type, schema, data, meta, recorded_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING seq`)
		if err != nil {
			return fmt.Errorf("cannot prepare append: %w", err)
		}
		defer insert.Close()
		w := &batchWriter{log: l, tx: tx, insert: insert, now: time.Now(), versions: make(map[string]int64)}
		for i, req := range batch {
			events, err := w.appendRequest(req.events)
			if err != nil && moltgate.ErrorCode(err) == moltgate.EINTERNAL {
				return err // the transaction is unusable: fail the batch
			}
			results[i] = appendResult{events: events, err: err}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("cannot commit events: %w", err)
		}
		if len(l.versions)+len(w.versions) > maxCachedStreams {
			clear(l.versions)
		}
		for s, v := range w.versions {
			l.versions[s] = v
		}
		return nil
	}()
	if err != nil {
		l.Logger.Error("append failed", "error", err, "requests", len(batch))
		for i := range results {
			results[i] = appendResult{err: err}
		}
	} else {
		var max int64
		for _, r := range results {
			for _, e := range r.events {
				max = maxInt64(max, e.Seq)
			}
		}
		if max > l.lastSeq.Load() {
			l.publish(max)
		}
	}
	for i, req := range batch {
		req.done <- results[i]
	}
}

// appendRequest writes one caller's events inside the batch transaction. A
// version conflict writes nothing for this request and leaves the others
// untouched, because every check happens before the first insert.
func (w *batchWriter) appendRequest(events []moltgate.Event) ([]moltgate.Event, error) {
	// Check expected versions against what the streams hold now.
	next := make(map[string]int64, 1)
	conflict := false
	for _, e := range events {
		v, ok := next[e.Stream]
		if !ok {
			cur, err := w.streamVersion(e.Stream)
			if err != nil {
				return nil, err
			}
			v = cur
		}
		v++
		if e.Version != 0 && e.Version != v {
			conflict = true
			break
		}
		next[e.Stream] = v
	}
	if conflict {
		// A retry of an append that already landed conflicts with itself;
		// it is answered with the stored events instead.
		if stored, ok, err := w.storedAll(events); err != nil {
			return nil, err
		} else if ok {
			return stored, nil
		}
		return nil, ErrConcurrency
	}

	out := make([]moltgate.Event, len(events))
	ms := w.now.UnixMilli()
	for i, e := range events {
		meta, err := json.Marshal(e.Meta)
		if err != nil {
			return nil, moltgate.Errorf(moltgate.EINVALID, "cannot encode meta of %s: %v", e.ID, err)
		}
		if e.Schema == 0 {
			e.Schema = moltgate.CurrentSchema(e.Type)
		}
		if len(e.Data) == 0 {
			e.Data = json.RawMessage("{}")
		}
		cur, err := w.streamVersion(e.Stream)
		if err != nil {
			return nil, err
		}
		e.Version = cur + 1
		e.RecordedAt = time.UnixMilli(ms)
		err = w.insert.QueryRow(e.ID, e.Stream, e.Version, e.Type, e.Schema, []byte(e.Data), meta, ms).Scan(&e.Seq)
		if err == sql.ErrNoRows {
			// The id is already stored: idempotent append.
			stored, err := w.log.getTx(w.tx, e.ID)
			if err != nil {
				return nil, err
			}
			out[i] = stored
			continue
		} else if err != nil {
			return nil, moltgate.Errorf(moltgate.EINTERNAL, "cannot insert event %s: %v", e.ID, err)
		}
		w.versions[e.Stream] = e.Version
		out[i] = e
	}
	return out, nil
}

// streamVersion returns the last version of stream as this transaction sees it.
func (w *batchWriter) streamVersion(stream string) (int64, error) {
	if v, ok := w.versions[stream]; ok {
		return v, nil
	}
	if v, ok := w.log.versions[stream]; ok {
		return v, nil
	}
	var v sql.NullInt64
	if err := w.tx.QueryRow(`SELECT MAX(version) FROM events WHERE stream = ?`, stream).Scan(&v); err != nil {
		return 0, moltgate.Errorf(moltgate.EINTERNAL, "cannot read version of stream %s: %v", stream, err)
	}
	w.versions[stream] = v.Int64
	return v.Int64, nil
}

// storedAll returns the stored copies of events when every one of them is
// already in the log.
func (w *batchWriter) storedAll(events []moltgate.Event) ([]moltgate.Event, bool, error) {
	out := make([]moltgate.Event, len(events))
	for i, e := range events {
		stored, err := w.log.getTx(w.tx, e.ID)
		if moltgate.ErrorCode(err) == moltgate.ENOTFOUND {
			return nil, false, nil
		} else if err != nil {
			return nil, false, err
		}
		out[i] = stored
	}
	return out, true, nil
}

func maxInt64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
