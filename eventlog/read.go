package eventlog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
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
		if strings.HasSuffix(p, ".") || strings.HasSuffix(p, "*") {
			// Range scan on the (type, seq) index rather than LIKE, which
			// SQLite cannot use with an index here.
			p = strings.TrimSuffix(p, "*")
			conds, args = append(conds, "type >= ? AND type < ?"), append(args, p, p+"\xff")
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
	query := `SELECT ` + columns + ` FROM events` + where + ` ORDER BY seq`
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
	// Rows are read straight from the driver: database/sql's per-row locking
	// and conversions were a large share of a full replay.
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

// eventFromValues builds an event from one driver row of eventColumns.
func eventFromValues(v []driver.Value) (moltgate.Event, error) {
	var e moltgate.Event
	var ok [7]bool
	var ms int64
	var meta []byte
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
	e.Data = asBytes(v[6])
	meta = asBytes(v[7])
	e.RecordedAt = time.UnixMilli(ms)
	finishEvent(&e, meta)
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

func (l *Log) getTx(tx *sql.Tx, id string) (moltgate.Event, error) {
	return getEvent(tx.QueryRow(`SELECT `+eventColumns+` FROM events WHERE id = ?`, id), id)
}

func getEvent(row *sql.Row, what string) (moltgate.Event, error) {
	e, err := scanEvent(row)
	if err == sql.ErrNoRows {
		return e, moltgate.Errorf(moltgate.ENOTFOUND, "no event %s", what)
	}
	return e, err
}

// SeqAt returns the seq of the last event recorded at or before t.
func (l *Log) SeqAt(ctx context.Context, t time.Time) (int64, error) {
	var seq sql.NullInt64
	err := l.rdb.QueryRowContext(ctx, `SELECT MAX(seq) FROM events WHERE recorded_at <= ?`, t.UnixMilli()).Scan(&seq)
	return seq.Int64, err
}

// Count returns the number of events matching f (Limit and Desc ignored).
func (l *Log) Count(ctx context.Context, f Filter) (int64, error) {
	where, args := where(f)
	var n int64
	err := l.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM events`+where, args...).Scan(&n)
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
