package eventlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
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
	if l.ReadOnly || l.closed.Load() {
		return nil, ErrClosed
	}
	select {
	case l.appendCh <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Once queued, the request will be committed or refused; wait for that
	// even if ctx ends, so a caller never mistakes a committed event for a
	// lost one. Only a request queued as Close stopped the writer, after it
	// answered the queue, is neither: it was never taken, so not written.
	select {
	case res := <-req.done:
		return res.events, res.err
	case <-l.writerDone:
		select {
		case res := <-req.done:
			return res.events, res.err
		default:
			return nil, ErrClosed
		}
	}
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
	var last int64
	for _, e := range stored {
		last = max(last, e.Seq)
	}
	wctx, cancel := context.WithTimeout(ctx, l.CriticalWait)
	defer cancel()
	if err := l.replicator.waitFor(wctx, last); err != nil {
		l.Logger.Warn("critical events are committed locally but not yet replicated", "seq", last, "error", err)
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

// writer is the state of the single writer goroutine. It owns one
// connection for the log's lifetime and runs only statements it prepared
// once at Open: parsing even a BEGIN costs tens of microseconds with this
// driver, and a commit runs several statements.
type writer struct {
	conn                           *sql.Conn
	begin, commit, rollback        *sql.Stmt
	lastVersion, byID, insertIfNew *sql.Stmt
	inserts                        map[int]*sql.Stmt // multi-row INSERTs by row count

	lastSeq int64 // seq of the newest committed event
	// lastAt is the recorded_at of the newest committed event. A batch is
	// never recorded earlier, even when the clock steps back, so that
	// recorded_at grows with seq and time queries can binary-search seq
	// instead of keeping an index on recorded_at.
	lastAt int64

	// versions caches each stream's last committed version.
	versions map[string]int64

	// checkpointDue asks for one checkpoint on this connection between two
	// commits, so that the WAL can start over (see checkpointLoop).
	checkpointDue atomic.Bool
	checkpoint    *sql.Stmt
}

// insertChunks are the row counts of the prepared multi-row INSERTs, largest
// first; a batch is written greedily with them (9 parameters a row, well
// under SQLite's limit of 32766).
var insertChunks = []int{256, 64, 16, 4, 1}

// newWriter takes the writer's connection from db and prepares its
// statements.
func newWriter(ctx context.Context, db *sql.DB) (*writer, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot open the writer's connection: %w", err)
	}
	w := &writer{conn: conn, inserts: map[int]*sql.Stmt{}, versions: map[string]int64{}}
	prepare := func(dst **sql.Stmt, query string) {
		if err == nil {
			*dst, err = conn.PrepareContext(ctx, query)
		}
	}
	prepare(&w.begin, `BEGIN IMMEDIATE`)
	prepare(&w.commit, `COMMIT`)
	prepare(&w.rollback, `ROLLBACK`)
	prepare(&w.lastVersion, `SELECT MAX(version) FROM events WHERE stream = ?`)
	prepare(&w.byID, `SELECT `+eventColumns+` FROM events WHERE id = ?`)
	prepare(&w.checkpoint, `PRAGMA wal_checkpoint(PASSIVE)`)
	prepare(&w.insertIfNew, `INSERT INTO events (`+eventColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
	for _, n := range insertChunks {
		var st *sql.Stmt
		prepare(&st, multiRowInsert(n))
		w.inserts[n] = st
	}
	if err == nil {
		err = w.loadEnd(ctx)
	}
	if err != nil {
		w.close()
		return nil, fmt.Errorf("cannot prepare the writer: %w", err)
	}
	return w, nil
}

// multiRowInsert returns an INSERT of n rows. A constraint failure rolls the
// whole transaction back (OR ROLLBACK): a batch is retried as a whole
// anyway, and with ABORT SQLite would keep a statement journal, copying
// every page before changing it, so that it could undo one statement.
func multiRowInsert(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT OR ROLLBACK INTO events (` + eventColumns + `) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?)")
	}
	return b.String()
}

// loadEnd reads the seq and time of the newest event.
func (w *writer) loadEnd(ctx context.Context) error {
	err := w.conn.QueryRowContext(ctx, `SELECT seq, recorded_at FROM events ORDER BY seq DESC LIMIT 1`).Scan(&w.lastSeq, &w.lastAt)
	if err == sql.ErrNoRows {
		w.lastSeq, w.lastAt = 0, 0
		return nil
	}
	return err
}

func (w *writer) close() {
	for _, st := range []*sql.Stmt{w.begin, w.commit, w.rollback, w.lastVersion, w.byID, w.insertIfNew, w.checkpoint} {
		if st != nil {
			st.Close()
		}
	}
	for _, st := range w.inserts {
		if st != nil {
			st.Close()
		}
	}
	w.conn.Close()
}

// checkpointWAL runs the checkpoint checkpointLoop asked for. It is done
// once it copied every frame; until then the next commit tries again.
func (w *writer) checkpointWAL(logger *slog.Logger) {
	// The pragma answers a row; Exec would not run it to the end.
	var busy, frames, copied int64
	if err := w.checkpoint.QueryRow().Scan(&busy, &frames, &copied); err != nil {
		logger.Warn("cannot checkpoint the event log", "error", err)
		return
	}
	if busy == 0 && copied == frames {
		w.checkpointDue.Store(false)
	}
}

// writeLoop is the single writer: it takes the first waiting request,
// drains whatever else is queued (up to MaxBatch events) and commits them
// together, so appenders that arrive during a commit share the next fsync.
//
// When the last commit answered more callers than are now queued, it waits
// a little for them: a caller that appends in a loop (an agent run, a busy
// channel) is back within microseconds of its answer, and a commit costs an
// fsync whatever it holds. Without the wait, 64 such callers settle into two
// groups of 32 that commit in turn, paying twice the fsyncs. The wait ends
// as soon as they are all back, and never lasts longer than half the last
// commit (at most gatherMax): a lone caller, or one that does not come
// back, costs at most that.
func (l *Log) writeLoop(ctx context.Context) {
	batch := make([]*appendRequest, 0, 256)
	expect := 0 // the callers the next batch may gather
	var lastCommit time.Duration
	timer := time.NewTimer(time.Hour)
	timer.Stop()
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
		if len(batch) < expect && n < l.MaxBatch {
			timer.Reset(min(lastCommit/2, gatherMax))
		gather:
			for len(batch) < expect && n < l.MaxBatch {
				select {
				case r := <-l.appendCh:
					batch, n = append(batch, r), n+len(r.events)
				case <-timer.C:
					break gather
				}
			}
			timer.Stop()
		}
		start := time.Now()
		l.commit(batch)
		lastCommit = time.Since(start)
		// Those just answered, and those who queued up meanwhile.
		expect = len(batch) + len(l.appendCh)
		if l.w.checkpointDue.Load() {
			l.w.checkpointWAL(l.Logger)
		}
	}
}

// gatherMax bounds how long a batch waits for callers of the last one.
const gatherMax = time.Millisecond

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
		// Whatever failed, the next batch starts from what the file says.
		clear(l.w.versions)
		if err := l.w.loadEnd(context.Background()); err != nil {
			l.Logger.Error("cannot read the end of the log", "error", err)
		}
	} else {
		l.committed.Advance(l.w.lastSeq)
	}
	for i, req := range batch {
		req.done <- results[i]
	}
}

// batchWriter is one transaction: the seqs and stream versions it has
// assigned so far, which only become the writer's once the commit succeeds.
type batchWriter struct {
	w        *writer
	now      int64 // recorded_at of the batch, unix ms
	nextSeq  int64
	versions map[string]int64
	args     []any
}

// insertFunc writes the planned events of one request.
type insertFunc func(b *batchWriter, req *appendRequest, planned []moltgate.Event) ([]moltgate.Event, error)

func (l *Log) commitWith(batch []*appendRequest, insert insertFunc) ([]appendResult, error) {
	w := l.w
	results := make([]appendResult, len(batch))
	if _, err := w.begin.Exec(); err != nil {
		return results, fmt.Errorf("cannot begin append: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			// After a failed INSERT OR ROLLBACK there is no transaction
			// left, and ROLLBACK says so: nothing to handle.
			w.rollback.Exec()
		}
	}()
	b := &batchWriter{w: w, now: max(time.Now().UnixMilli(), w.lastAt), nextSeq: w.lastSeq + 1, versions: make(map[string]int64)}
	for i, req := range batch {
		planned, err := b.plan(req.events)
		if err == nil {
			planned, err = insert(b, req, planned)
		}
		if err != nil && moltgate.ErrorCode(err) == moltgate.EINTERNAL {
			return results, err // the transaction is unusable: fail the batch
		}
		results[i] = appendResult{events: planned, err: err}
	}
	if err := b.flush(); err != nil {
		return results, err
	}
	if _, err := w.commit.Exec(); err != nil {
		return results, fmt.Errorf("cannot commit events: %w", err)
	}
	committed = true
	if b.nextSeq > w.lastSeq+1 {
		w.lastSeq, w.lastAt = b.nextSeq-1, b.now
	}
	if len(w.versions)+len(b.versions) > maxCachedStreams {
		clear(w.versions)
	}
	for s, v := range b.versions {
		w.versions[s] = v
	}
	return results, nil
}

// plan checks one request's expected versions and returns its events with
// Version and RecordedAt set. A conflict writes nothing for this request and
// leaves the others untouched; a conflicting retry of an append that already
// landed is answered with the stored events (returned with a nil error and
// Seq set, which insert functions pass through).
func (b *batchWriter) plan(events []moltgate.Event) ([]moltgate.Event, error) {
	out := make([]moltgate.Event, len(events))
	next := make(map[string]int64, 1)
	for i, e := range events {
		v, ok := next[e.Stream]
		if !ok {
			cur, err := b.streamVersion(e.Stream)
			if err != nil {
				return nil, err
			}
			v = cur
		}
		v++
		if e.Version != 0 && e.Version != v {
			stored, ok, err := b.storedAll(events)
			if err != nil {
				return nil, err
			} else if ok {
				return stored, nil
			}
			return nil, ErrConcurrency
		}
		next[e.Stream] = v
		e.Version, e.RecordedAt = v, time.UnixMilli(b.now)
		out[i] = e
	}
	return out, nil
}

// insertAll assigns seqs and queues the request's events for flush, which
// writes the whole batch with multi-row INSERTs. It fails on an id that is
// already stored.
func (b *batchWriter) insertAll(req *appendRequest, planned []moltgate.Event) ([]moltgate.Event, error) {
	if len(planned) > 0 && planned[0].Seq != 0 {
		return planned, nil // answered from the log by plan
	}
	for i := range planned {
		e := &planned[i]
		e.Seq = b.nextSeq
		b.nextSeq++
		b.versions[e.Stream] = e.Version
		b.args = append(b.args, e.Seq, e.ID, e.Stream, e.Version, e.Type, e.Schema, []byte(e.Data), req.metas[i], b.now)
	}
	return planned, nil
}

// flush inserts the rows queued by insertAll.
func (b *batchWriter) flush() error {
	const cols = 9
	for rows := len(b.args) / cols; rows > 0; {
		for _, n := range insertChunks {
			if n > rows {
				continue
			}
			if _, err := b.w.inserts[n].Exec(b.args[:n*cols]...); err != nil {
				return moltgate.Errorf(moltgate.EINTERNAL, "cannot insert events: %v", err)
			}
			b.args, rows = b.args[n*cols:], rows-n
			break
		}
	}
	return nil
}

// insertEach inserts the request's events one by one, answering an id that
// is already stored with the stored event: an idempotent append.
func (b *batchWriter) insertEach(req *appendRequest, planned []moltgate.Event) ([]moltgate.Event, error) {
	if len(planned) > 0 && planned[0].Seq != 0 {
		return planned, nil
	}
	for i := range planned {
		e := &planned[i]
		cur, err := b.streamVersion(e.Stream)
		if err != nil {
			return nil, err
		}
		e.Version = cur + 1
		res, err := b.w.insertIfNew.Exec(b.nextSeq, e.ID, e.Stream, e.Version, e.Type, e.Schema, []byte(e.Data), req.metas[i], b.now)
		if err != nil {
			return nil, moltgate.Errorf(moltgate.EINTERNAL, "cannot insert event %s: %v", e.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			stored, err := b.stored(e.ID)
			if err != nil {
				return nil, err
			}
			*e = stored
			continue
		}
		e.Seq = b.nextSeq
		b.nextSeq++
		b.versions[e.Stream] = e.Version
	}
	return planned, nil
}

func isDuplicateID(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed: events.id")
}

// streamVersion returns the last version of stream as this transaction sees it.
func (b *batchWriter) streamVersion(stream string) (int64, error) {
	if v, ok := b.versions[stream]; ok {
		return v, nil
	}
	if v, ok := b.w.versions[stream]; ok {
		return v, nil
	}
	var v sql.NullInt64
	if err := b.w.lastVersion.QueryRow(stream).Scan(&v); err != nil {
		return 0, moltgate.Errorf(moltgate.EINTERNAL, "cannot read version of stream %s: %v", stream, err)
	}
	b.versions[stream] = v.Int64
	return v.Int64, nil
}

// stored reads the event with id inside the transaction.
func (b *batchWriter) stored(id string) (moltgate.Event, error) {
	return getEvent(b.w.byID.QueryRow(id), id)
}

// storedAll returns the stored copies of events when every one of them is
// already in the log.
func (b *batchWriter) storedAll(events []moltgate.Event) ([]moltgate.Event, bool, error) {
	out := make([]moltgate.Event, len(events))
	for i, e := range events {
		stored, err := b.stored(e.ID)
		if moltgate.ErrorCode(err) == moltgate.ENOTFOUND {
			return nil, false, nil
		} else if err != nil {
			return nil, false, err
		}
		out[i] = stored
	}
	return out, true, nil
}
