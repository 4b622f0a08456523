package eventlog

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Filter selects events for Scan and Query (the root package's
// EventFilter, so readers outside need not import this package).
type Filter = moltgate.EventFilter

func where(f Filter) (string, []any) {
	var conds []string
	var args []any
	if f.AfterSeq > 0 {
		conds, args = append(conds, "seq > ?"), append(args, f.AfterSeq)
	}
	if f.UntilSeq > 0 {
		conds, args = append(conds, "seq <= ?"), append(args, f.UntilSeq)
	}
	if p := f.TypePrefix; p != "" {
		if start, family := moltgate.TypeFamily(p); family {
			// Range scan on the (type, seq) index rather than LIKE, which
			// SQLite cannot use with an index here.
			conds, args = append(conds, "type >= ? AND type < ?"), append(args, start, start+"\xff")
		} else {
			conds, args = append(conds, "type = ?"), append(args, p)
		}
	}
	if f.Stream != "" {
		conds, args = append(conds, "stream = ?"), append(args, f.Stream)
	}
	if f.Actor != "" {
		conds, args = append(conds, "json_extract(meta, '$.actor') = ?"), append(args, f.Actor)
	}
	// Channel and Sender read the payload fields moltgate.ChannelOf reads.
	if f.Channel != "" {
		conds = append(conds, "(CASE WHEN json_type(data, '$.origin') = 'object' THEN json_extract(data, '$.origin.channel') "+
			"ELSE json_extract(data, '$.channel') END) = ?")
		args = append(args, f.Channel)
	}
	if f.Sender != "" {
		conds = append(conds, "(CASE WHEN json_type(data, '$.origin') = 'object' THEN json_extract(data, '$.origin.sender') "+
			"ELSE coalesce(nullif(json_extract(data, '$.senderId'), ''), json_extract(data, '$.sender')) END) = ?")
		args = append(args, f.Sender)
	}
	if !f.Since.IsZero() {
		conds, args = append(conds, "recorded_at >= ?"), append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		conds, args = append(conds, "recorded_at <= ?"), append(args, f.Until.UnixMilli())
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

const eventColumns = `seq, id, stream, version, type, schema, data, meta, recorded_at`

// Scan calls fn for every event matching f, in seq order (or reverse with
// Desc), without holding them all in memory. Payloads are upcast to their
// current schema. fn's error stops the scan and is returned.
func (l *Log) Scan(ctx context.Context, f Filter, fn func(moltgate.Event) error) error {
	if l.closed.Load() {
		return ErrClosed
	}
	if isRange(f) && l.raw != nil {
		return l.scanRange(ctx, f, fn)
	}
	f, none, err := l.timesToSeqs(ctx, f)
	if err != nil || none {
		return err
	}
	if f.Limit > 0 && f.Limit <= maxTypePage && isFamily(f.TypePrefix) {
		return l.scanTypePage(ctx, f, fn)
	}
	return l.scanSQL(ctx, f, fn)
}

func isFamily(p string) bool { _, ok := moltgate.TypeFamily(p); return ok }

// maxPrefixTypes bounds how many types scanTypePage merges.
const maxPrefixTypes = 64

// maxTypePage is the largest page scanTypePage serves (the admin's cap on a
// page): it holds up to that many events of every type it merges, so a
// larger page is left to one SQL query, which streams.
const maxTypePage = 1000

// scanTypePage serves a page of events whose type starts with a prefix (the
// admin's and the CLI's type filter). The (type, seq) index keeps each
// type's events in seq order, but not those of a range of types: for
// "device." SQLite read all ten thousand device events of the million and
// sorted them to return the newest 100 (up to 100 ms). So the types that
// match are listed first, one index seek each, and the page of each type,
// read in index order, is merged.
func (l *Log) scanTypePage(ctx context.Context, f Filter, fn func(moltgate.Event) error) error {
	types, err := l.typesWithPrefix(ctx, strings.TrimSuffix(f.TypePrefix, "*"))
	if err != nil {
		return err
	}
	if types == nil {
		return l.scanSQL(ctx, f, fn)
	}
	var page []moltgate.Event
	for _, t := range types {
		one := f
		one.TypePrefix = t
		if err := l.scanSQL(ctx, one, func(e moltgate.Event) error { page = append(page, e); return nil }); err != nil {
			return err
		}
	}
	slices.SortFunc(page, func(a, b moltgate.Event) int {
		if f.Desc {
			return cmp.Compare(b.Seq, a.Seq)
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	for _, e := range page[:min(len(page), f.Limit)] {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// typesWithPrefix lists the types stored in the log that start with prefix,
// with one seek of the (type, seq) index each. It returns nil when there
// are more than maxPrefixTypes, or one of them would itself read as a
// prefix.
func (l *Log) typesWithPrefix(ctx context.Context, prefix string) ([]string, error) {
	conn, err := l.rdb.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot query events: %w", err)
	}
	defer conn.Close()
	next, err := conn.PrepareContext(ctx, `SELECT type FROM events WHERE type >= ? AND type < ? ORDER BY type LIMIT 1`)
	if err != nil {
		return nil, fmt.Errorf("cannot query events: %w", err)
	}
	defer next.Close()
	types := []string{}
	for from := prefix; len(types) <= maxPrefixTypes; {
		var t string
		switch err := next.QueryRowContext(ctx, from, prefix+"\xff").Scan(&t); {
		case err == sql.ErrNoRows:
			return types, nil
		case err != nil:
			return nil, fmt.Errorf("cannot query events: %w", err)
		case isFamily(t):
			return nil, nil
		}
		types = append(types, t)
		from = t + "\x00" // the next type after t
	}
	return nil, nil
}

// scanSQL is Scan through an SQL query on a reading connection.
func (l *Log) scanSQL(ctx context.Context, f Filter, fn func(moltgate.Event) error) error {
	where, args := where(f)
	columns := eventColumns
	if len(f.EnvelopeOnly) > 0 {
		// A CASE of plain comparisons: an IN list costs a b-tree probe a row.
		when := strings.Repeat(" WHEN ? THEN NULL", len(f.EnvelopeOnly))
		columns = `seq, id, stream, version, type, schema, CASE type` + when + ` ELSE data END, CASE type` + when + ` ELSE meta END, recorded_at`
		var typeArgs []any
		for _, t := range f.EnvelopeOnly {
			typeArgs = append(typeArgs, t)
		}
		args = append(append(typeArgs, typeArgs...), args...)
	}
	// Within a stream, version order is seq order, and ordering by it lets
	// SQLite read the stream's (stream, version) index alone: ordered by
	// seq, it chose the (type, seq) index for a session's messages and
	// read every session's (240 ms instead of 7 ms in a million events).
	order := "seq"
	if f.Stream != "" {
		order = "version"
	}
	query := `SELECT ` + columns + ` FROM events` + where + ` ORDER BY ` + order
	if f.Desc {
		query += " DESC"
	}
	if f.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	conn, err := l.rdb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("cannot query events: %w", err)
	}
	defer conn.Close()
	// Rows are read straight from the driver, without database/sql's
	// per-row locking and conversions.
	return conn.Raw(func(dc any) error {
		q, ok := dc.(driver.QueryerContext)
		if !ok {
			return fmt.Errorf("sqlite driver cannot query")
		}
		named := make([]driver.NamedValue, len(args))
		for i, a := range args {
			named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
		}
		rows, err := q.QueryContext(ctx, query, named)
		if err != nil {
			return fmt.Errorf("cannot query events: %w", err)
		}
		defer rows.Close()
		dest := make([]driver.Value, 9)
		for {
			if err := rows.Next(dest); err == io.EOF {
				return nil
			} else if err != nil {
				return fmt.Errorf("cannot read events: %w", err)
			}
			e, err := eventFromValues(dest)
			if err != nil {
				return err
			}
			if err := fn(e); err != nil {
				return err
			}
		}
	})
}

// isRange says whether f asks only for what scanRange handles: a range of
// seqs in seq order, cut at a limit, some of it envelope only. It compares
// what is left once those fields are cleared with no filter at all, so that
// a field added to Filter goes to scanSQL until scanRange learns it, rather
// than being ignored.
func isRange(f Filter) bool {
	f.AfterSeq, f.UntilSeq, f.Limit, f.EnvelopeOnly = 0, 0, 0, nil
	return reflect.ValueOf(f).IsZero()
}

// scanRange is Scan for a plain range of seqs (replays, subscriptions), read
// on a raw connection.
func (l *Log) scanRange(ctx context.Context, f Filter, fn func(moltgate.Event) error) error {
	c, err := l.raw.get()
	if err != nil {
		return fmt.Errorf("cannot query events: %w", err)
	}
	defer l.raw.put(c) // also when fn panics: scan has reset the statement
	var skip map[string]bool
	if len(f.EnvelopeOnly) > 0 {
		skip = make(map[string]bool, len(f.EnvelopeOnly))
		for _, t := range f.EnvelopeOnly {
			skip[t] = true
		}
	}
	return c.scan(ctx, f.AfterSeq, f.UntilSeq, f.Limit, skip, fn)
}

// eventFromValues builds an event from one driver row of eventColumns.
func eventFromValues(v []driver.Value) (moltgate.Event, error) {
	var e moltgate.Event
	var ok [7]bool
	var ms int64
	e.Seq, ok[0] = v[0].(int64)
	e.ID, ok[1] = v[1].(string)
	e.Stream, ok[2] = v[2].(string)
	e.Version, ok[3] = v[3].(int64)
	e.Type, ok[4] = v[4].(string)
	var schema int64
	schema, ok[5] = v[5].(int64)
	ms, ok[6] = v[8].(int64)
	for _, good := range ok {
		if !good {
			return e, fmt.Errorf("cannot read event at seq %v: unexpected column types %T %T %T %T %T %T %T", v[0], v[0], v[1], v[2], v[3], v[4], v[5], v[8])
		}
	}
	e.Schema = int(schema)
	e.RecordedAt = time.UnixMilli(ms)
	if v[6] == nil {
		// A type of EnvelopeOnly (data is NOT NULL in the table): no
		// payload to upcast, no meta, as on the raw range read.
		return e, nil
	}
	e.Data = asBytes(v[6])
	finishEvent(&e, asBytes(v[7]))
	return e, nil
}

// asBytes accepts a BLOB or, for rows written by hand, TEXT.
func asBytes(v driver.Value) []byte {
	switch v := v.(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	return nil
}

// Query returns the events matching f.
func (l *Log) Query(ctx context.Context, f Filter) ([]moltgate.Event, error) {
	var out []moltgate.Event
	err := l.Scan(ctx, f, func(e moltgate.Event) error { out = append(out, e); return nil })
	return out, err
}

// ReadStream returns up to limit events of stream: from version fromVersion
// forwards, or, with backwards, from fromVersion (0 = the newest) down.
func (l *Log) ReadStream(ctx context.Context, stream string, fromVersion int64, limit int, backwards bool) ([]moltgate.Event, error) {
	q := `SELECT ` + eventColumns + ` FROM events WHERE stream = ? AND version >= ? ORDER BY version`
	args := []any{stream, fromVersion}
	if backwards {
		if fromVersion <= 0 {
			fromVersion = 1 << 62
		}
		q = `SELECT ` + eventColumns + ` FROM events WHERE stream = ? AND version <= ? ORDER BY version DESC`
		args = []any{stream, fromVersion}
	}
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := l.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot read stream %s: %w", stream, err)
	}
	defer rows.Close()
	var out []moltgate.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Get returns the event with id, or a not_found error.
func (l *Log) Get(ctx context.Context, id string) (moltgate.Event, error) {
	return getEvent(l.rdb.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events WHERE id = ?`, id), id)
}

// GetSeq returns the event at seq, or a not_found error.
func (l *Log) GetSeq(ctx context.Context, seq int64) (moltgate.Event, error) {
	return getEvent(l.rdb.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events WHERE seq = ?`, seq), fmt.Sprintf("at seq %d", seq))
}

func getEvent(row *sql.Row, what string) (moltgate.Event, error) {
	e, err := scanEvent(row)
	if err == sql.ErrNoRows {
		return e, moltgate.Errorf(moltgate.ENOTFOUND, "no event %s", what)
	}
	return e, err
}

// SeqAt returns the seq of the last event recorded at or before t (0 when
// there is none).
func (l *Log) SeqAt(ctx context.Context, t time.Time) (int64, error) {
	return l.lastSeqAt(ctx, t.UnixMilli())
}

// lastSeqAt returns the seq of the last event with recorded_at <= ms. The
// writer never records a batch earlier than the one before it, so
// recorded_at grows with seq and a binary search over seq finds it with a
// few lookups of the primary key: no index on recorded_at has to be kept up
// on every append. (A log written before that rule, by a clock that stepped
// back, may hold a few events out of order; a search then lands at one of
// the places where the time is crossed.)
func (l *Log) lastSeqAt(ctx context.Context, ms int64) (int64, error) {
	conn, err := l.rdb.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("cannot search events by time: %w", err)
	}
	defer conn.Close()
	var lo, hi sql.NullInt64
	// Two subqueries: SQLite reads MIN and MAX of the key from the ends of
	// the b-tree only when each stands alone.
	if err := conn.QueryRowContext(ctx, `SELECT (SELECT MIN(seq) FROM events), (SELECT MAX(seq) FROM events)`).Scan(&lo, &hi); err != nil || !lo.Valid {
		return 0, err
	}
	// next finds the first event at or after seq.
	next, err := conn.PrepareContext(ctx, `SELECT seq, recorded_at FROM events WHERE seq >= ? ORDER BY seq LIMIT 1`)
	if err != nil {
		return 0, fmt.Errorf("cannot search events by time: %w", err)
	}
	defer next.Close()
	var seq, at int64
	if err := next.QueryRowContext(ctx, lo.Int64).Scan(&seq, &at); err != nil {
		return 0, fmt.Errorf("cannot search events by time: %w", err)
	}
	if at > ms {
		return 0, nil
	}
	// Invariant: the event at lo is recorded at or before ms, none after hi.
	for lo.Int64 < hi.Int64 {
		mid := lo.Int64 + (hi.Int64-lo.Int64+1)/2
		if err := next.QueryRowContext(ctx, mid).Scan(&seq, &at); err != nil {
			return 0, fmt.Errorf("cannot search events by time: %w", err)
		}
		if at <= ms {
			lo.Int64 = seq
		} else {
			hi.Int64 = mid - 1
		}
	}
	return lo.Int64, nil
}

// timesToSeqs narrows f's seq range to its time range, so that a time
// query reads only the events in it. none says that no event can match.
func (l *Log) timesToSeqs(ctx context.Context, f Filter) (_ Filter, none bool, _ error) {
	if !f.Since.IsZero() {
		before, err := l.lastSeqAt(ctx, f.Since.UnixMilli()-1)
		if err != nil {
			return f, false, err
		}
		f.AfterSeq = max(f.AfterSeq, before)
	}
	if !f.Until.IsZero() {
		last, err := l.lastSeqAt(ctx, f.Until.UnixMilli())
		if err != nil {
			return f, false, err
		}
		if last == 0 {
			return f, true, nil // nothing was recorded by then
		}
		if f.UntilSeq == 0 || last < f.UntilSeq {
			f.UntilSeq = last
		}
	}
	if f.UntilSeq > 0 && f.UntilSeq <= f.AfterSeq {
		return f, true, nil
	}
	return f, false, nil
}

// Count returns the number of events matching f (Limit and Desc ignored).
func (l *Log) Count(ctx context.Context, f Filter) (int64, error) {
	f, none, err := l.timesToSeqs(ctx, f)
	if err != nil || none {
		return 0, err
	}
	where, args := where(f)
	var n int64
	err = l.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM events`+where, args...).Scan(&n)
	return n, err
}

type scanner interface{ Scan(dest ...any) error }

func scanEvent(s scanner) (moltgate.Event, error) {
	var e moltgate.Event
	var data, meta []byte
	var ms int64
	if err := s.Scan(&e.Seq, &e.ID, &e.Stream, &e.Version, &e.Type, &e.Schema, &data, &meta, &ms); err != nil {
		if err == sql.ErrNoRows {
			return e, err
		}
		return e, fmt.Errorf("cannot scan event: %w", err)
	}
	e.Data = data
	e.RecordedAt = time.UnixMilli(ms)
	finishEvent(&e, meta)
	return e, nil
}

// finishEvent decodes meta and upcasts the payload. A broken meta column
// must not hide the event: it keeps an empty Meta, and the payload, which
// is what projections read, is reported by them if it is broken too.
func finishEvent(e *moltgate.Event, meta []byte) {
	if len(meta) > 2 {
		_ = decodeMeta(meta, &e.Meta)
	}
	if up, err := moltgate.Upcast(*e); err == nil {
		*e = up
	}
}
