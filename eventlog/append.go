package eventlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// appendRequest is one caller's Append, queued for the writer. Everything
// that can be prepared without the database (validation, meta encoding,
// defaults) is done by the caller, so the single writer does only SQL.
type appendRequest struct {
	events []moltgate.Event
	metas  [][]byte
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
	req, err := newAppendRequest(events)
	if err != nil {
		return nil, err
	}
	if l.closed.Load() {
		return nil, ErrClosed
	}
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

// newAppendRequest validates events and prepares them for the writer.
func newAppendRequest(events []moltgate.Event) (*appendRequest, error) {
	if err := validateEvents(events); err != nil {
		return nil, err
	}
	req := &appendRequest{events: make([]moltgate.Event, len(events)), metas: make([][]byte, len(events)), done: make(chan appendResult, 1)}
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
		e.Seq = 0 // assigned by the writer; a stored event may be re-appended as it was read
		req.events[i], req.metas[i] = e, meta
	}
	return req, nil
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

// writeLoop is the single writer: it takes the first waiting request,
// drains whatever else is queued (up to MaxBatch events) and commits them
// together, so appenders that arrive during a commit share the next fsync.
//
// It does not hold a batch open to wait for more: measured here, a commit's
// cost grows with the pages it dirties (one index leaf per stream touched),
// so larger batches bought by waiting did not raise throughput and did add
// latency (see BENCHMARKS.md).
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
				batch, n = append(batch, r), n+len(r.events)
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

// commit writes a batch in one transaction. The fast path inserts every row
// with multi-row INSERTs; an id that is already stored (a retried append)
// makes it fail, and the batch is then redone row by row, answering
// duplicates with the stored events.
func (l *Log) commit(batch []*appendRequest) {
	results, err := l.commitWith(batch, (*batchWriter).insertAll)
	if err != nil && isDuplicateID(err) {
		results, err = l.commitWith(batch, (*batchWriter).insertEach)
	}
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
		l.committed.Advance(max)
	}
	for i, req := range batch {
		req.done <- results[i]
	}
}

// batchWriter holds one transaction and the stream versions it has assigned
// so far, which only join the cache once the commit succeeds.
type batchWriter struct {
	log      *Log
	tx       *sql.Tx
	now      int64 // recorded_at of the batch, unix ms
	nextSeq  int64
	versions map[string]int64
	args     []any
}

// insertFunc writes the planned events of one request.
type insertFunc func(w *batchWriter, req *appendRequest, planned []moltgate.Event) ([]moltgate.Event, error)

func (l *Log) commitWith(batch []*appendRequest, insert insertFunc) ([]appendResult, error) {
	results := make([]appendResult, len(batch))
	tx, err := l.wdb.Begin()
	if err != nil {
		return results, fmt.Errorf("cannot begin append: %w", err)
	}
	defer tx.Rollback()
	w := &batchWriter{log: l, tx: tx, now: time.Now().UnixMilli(), versions: make(map[string]int64)}
	if err := tx.QueryRow(`SELECT COALESCE(MAX(seq), 0) FROM events`).Scan(&w.nextSeq); err != nil {
		return results, fmt.Errorf("cannot read last seq: %w", err)
	}
	w.nextSeq++
	for i, req := range batch {
		planned, err := w.plan(req.events)
		if err == nil {
			planned, err = insert(w, req, planned)
		}
		if err != nil && moltgate.ErrorCode(err) == moltgate.EINTERNAL {
			return results, err // the transaction is unusable: fail the batch
		}
		results[i] = appendResult{events: planned, err: err}
	}
	if err := w.flush(); err != nil {
		return results, err
	}
	if err := tx.Commit(); err != nil {
		return results, fmt.Errorf("cannot commit events: %w", err)
	}
	if len(l.versions)+len(w.versions) > maxCachedStreams {
		clear(l.versions)
	}
	for s, v := range w.versions {
		l.versions[s] = v
	}
	return results, nil
}

// plan checks one request's expected versions and returns its events with
// Version and RecordedAt set. A conflict writes nothing for this request and
// leaves the others untouched; a conflicting retry of an append that already
// landed is answered with the stored events (returned with a nil error and
// Seq set, which insert functions pass through).
func (w *batchWriter) plan(events []moltgate.Event) ([]moltgate.Event, error) {
	out := make([]moltgate.Event, len(events))
	next := make(map[string]int64, 1)
	for i, e := range events {
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
			stored, ok, err := w.storedAll(events)
			if err != nil {
				return nil, err
			} else if ok {
				return stored, nil
			}
			return nil, ErrConcurrency
		}
		next[e.Stream] = v
		e.Version, e.RecordedAt = v, time.UnixMilli(w.now)
		out[i] = e
	}
	return out, nil
}

// insertChunks are the row counts of the prepared multi-row INSERTs, largest
// first; a batch is written greedily with them (9 parameters a row, well
// under SQLite's limit of 32766).
var insertChunks = []int{256, 64, 16, 4, 1}

// insertAll assigns seqs and queues the request's events for flush, which
// writes the whole batch with multi-row INSERTs. It fails on an id that is
// already stored.
func (w *batchWriter) insertAll(req *appendRequest, planned []moltgate.Event) ([]moltgate.Event, error) {
	if len(planned) > 0 && planned[0].Seq != 0 {
		return planned, nil // answered from the log by plan
	}
	for i := range planned {
		e := &planned[i]
		e.Seq = w.nextSeq
		w.nextSeq++
		w.versions[e.Stream] = e.Version
		w.args = append(w.args, e.Seq, e.ID, e.Stream, e.Version, e.Type, e.Schema, []byte(e.Data), req.metas[i], w.now)
	}
	return planned, nil
}

// flush inserts the rows queued by insertAll.
func (w *batchWriter) flush() error {
	const cols = 9
	for rows := len(w.args) / cols; rows > 0; {
		for _, n := range insertChunks {
			if n > rows {
				continue
			}
			if _, err := w.tx.Stmt(w.log.insertStmts[n]).Exec(w.args[:n*cols]...); err != nil {
				return moltgate.Errorf(moltgate.EINTERNAL, "cannot insert events: %v", err)
			}
			w.args, rows = w.args[n*cols:], rows-n
			break
		}
	}
	return nil
}

// prepareInserts prepares the multi-row INSERTs once, at Open, while the
// writer's single connection is free. Preparing once matters: parsing a
// 256-row statement costs more than executing it.
func (l *Log) prepareInserts() error {
	l.insertStmts = map[int]*sql.Stmt{}
	for _, n := range insertChunks {
		var b strings.Builder
		b.WriteString(`INSERT INTO events (seq, id, stream, version, type, schema, data, meta, recorded_at) VALUES `)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?,?,?,?,?,?,?,?,?)")
		}
		st, err := l.wdb.Prepare(b.String())
		if err != nil {
			return fmt.Errorf("cannot prepare insert: %w", err)
		}
		l.insertStmts[n] = st
	}
	return nil
}

// insertEach inserts the request's events one by one, answering an id that
// is already stored with the stored event: an idempotent append.
func (w *batchWriter) insertEach(req *appendRequest, planned []moltgate.Event) ([]moltgate.Event, error) {
	if len(planned) > 0 && planned[0].Seq != 0 {
		return planned, nil
	}
	for i := range planned {
		e := &planned[i]
		cur, err := w.streamVersion(e.Stream)
		if err != nil {
			return nil, err
		}
		e.Version = cur + 1
		res, err := w.tx.Exec(`INSERT INTO events (seq, id, stream, version, type, schema, data, meta, recorded_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			w.nextSeq, e.ID, e.Stream, e.Version, e.Type, e.Schema, []byte(e.Data), req.metas[i], w.now)
		if err != nil {
			return nil, moltgate.Errorf(moltgate.EINTERNAL, "cannot insert event %s: %v", e.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			stored, err := w.log.getTx(w.tx, e.ID)
			if err != nil {
				return nil, err
			}
			*e = stored
			continue
		}
		e.Seq = w.nextSeq
		w.nextSeq++
		w.versions[e.Stream] = e.Version
	}
	return planned, nil
}

func isDuplicateID(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed: events.id")
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
