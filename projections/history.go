package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
)

// History is the time machine over a log: read models rebuilt up to a
// point, config versions and their differences. `moltgate replay` and the
// admin's replay slider both use it.
type History struct {
	Log    *eventlog.Log
	Logger *slog.Logger
	// Progress, when set, is told how a rebuild is going.
	Progress func(done, total int64)
}

var _ moltgate.History = (*History)(nil)

// ViewAt implements moltgate.History.
func (h *History) ViewAt(ctx context.Context, seq int64, at time.Time) (moltgate.View, error) {
	last := h.Log.LastSeq()
	if !at.IsZero() {
		var err error
		if seq, err = h.Log.SeqAt(ctx, at); err != nil {
			return moltgate.View{}, fmt.Errorf("cannot find the event at %s: %w", at.Format(time.RFC3339), err)
		}
	} else if seq < 0 || seq > last {
		return moltgate.View{}, moltgate.Errorf(moltgate.EINVALID, "seq must be between 0 and %d", last)
	}
	then := NewSet()
	r := NewRunner(h.Log, then.All()...)
	if h.Logger != nil {
		r.Logger = h.Logger
	}
	r.Progress = h.Progress
	if seq > 0 {
		if _, err := r.RunUntil(ctx, seq); err != nil {
			return moltgate.View{}, err
		}
		if at.IsZero() {
			e, err := h.Log.GetSeq(ctx, seq)
			if err != nil {
				return moltgate.View{}, err
			}
			at = e.RecordedAt
		}
	}
	view := then.View(seq, at)
	view.Errors = r.Errors()
	return view, nil
}

// configDoc returns the document stored at seq, as stored (sealed).
func (h *History) configDoc(ctx context.Context, seq int64) (json.RawMessage, error) {
	e, err := h.Log.GetSeq(ctx, seq)
	if err != nil {
		return nil, err
	}
	return documentOf(e)
}

// documentOf returns the document a config.applied event carries.
func documentOf(e moltgate.Event) (json.RawMessage, error) {
	if e.Type != moltgate.EventConfigApplied {
		return nil, moltgate.Errorf(moltgate.ENOTFOUND, "seq %d is a %s, not a config version", e.Seq, e.Type)
	}
	var d moltgate.ConfigAppliedData
	if err := e.Decode(&d); err != nil {
		return nil, err
	}
	return d.Document, nil
}

// currentDoc returns the newest document in the log.
func (h *History) currentDoc(ctx context.Context) (json.RawMessage, error) {
	events, err := h.Log.Query(ctx, moltgate.EventFilter{TypePrefix: moltgate.EventConfigApplied, Desc: true, Limit: 1})
	if err != nil || len(events) == 0 {
		return json.RawMessage(`{}`), err
	}
	return documentOf(events[0])
}

// ConfigAt implements moltgate.History.
func (h *History) ConfigAt(ctx context.Context, seq int64) (json.RawMessage, error) {
	doc, err := h.configDoc(ctx, seq)
	return moltgate.RedactSealed(doc), err
}

// DiffConfig implements moltgate.History. It compares the stored
// documents, so a secret that changed is listed (as the marker, both
// sides) rather than hidden behind two equal markers.
func (h *History) DiffConfig(ctx context.Context, from, to int64) ([]moltgate.ConfigChange, error) {
	a, err := h.configDoc(ctx, from)
	if err != nil {
		return nil, err
	}
	var b json.RawMessage
	if to > 0 {
		b, err = h.configDoc(ctx, to)
	} else {
		b, err = h.currentDoc(ctx)
	}
	if err != nil {
		return nil, err
	}
	return DiffJSON(a, b), nil
}

// DiffJSON lists the paths whose values differ between two documents,
// showing sealed values as moltgate.RedactedMarker.
func DiffJSON(from, to json.RawMessage) []moltgate.ConfigChange {
	a, b := map[string]string{}, map[string]string{}
	flatten(nil, decodeAny(from), a)
	flatten(nil, decodeAny(to), b)
	var paths []string
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	changes := []moltgate.ConfigChange{}
	for _, p := range paths {
		va, inA := a[p]
		vb, inB := b[p]
		switch {
		case !inA:
			changes = append(changes, moltgate.ConfigChange{Path: p, Op: "added", To: vb})
		case !inB:
			changes = append(changes, moltgate.ConfigChange{Path: p, Op: "removed", From: va})
		case va != vb:
			changes = append(changes, moltgate.ConfigChange{Path: p, Op: "changed", From: va, To: vb})
		}
	}
	for i := range changes { // every side of every change: added and removed values too
		changes[i].From, changes[i].To = redactValue(changes[i].From), redactValue(changes[i].To)
	}
	return changes
}

func redactValue(v string) string {
	var s string
	if json.Unmarshal([]byte(v), &s) == nil && moltgate.IsSealed(s) {
		return strconv.Quote(moltgate.RedactedMarker)
	}
	return v
}

func decodeAny(raw json.RawMessage) any {
	var v any
	_ = moltgate.DecodeJSON(raw, &v) // numbers as written: a changed 18-digit id shows
	return v
}

func flatten(path []string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			flatten(append(path[:len(path):len(path)], k), x, out)
		}
	case []any:
		for i, x := range v {
			flatten(append(path[:len(path):len(path)], strconv.Itoa(i)), x, out)
		}
	default:
		b, _ := json.Marshal(v)
		out[moltgate.PathString(path)] = string(b)
	}
}
