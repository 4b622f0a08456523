package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

// eventFilter reads the CLI's filters from the query string: type, stream,
// actor, channel, sender, since, until (RFC 3339), before (exclusive seq),
// after, limit. none reports a filter nothing can pass: before=1 or less
// (UntilSeq 0 would mean no bound at all).
func eventFilter(c *gin.Context) (f moltgate.EventFilter, none bool, err error) {
	f = moltgate.EventFilter{TypePrefix: c.Query("type"), Stream: c.Query("stream"), Actor: c.Query("actor"),
		Channel: c.Query("channel"), Sender: c.Query("sender"), Desc: true, Limit: 100}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := c.Query(name); v != "" {
			if *dst, err = time.Parse(time.RFC3339, v); err != nil {
				return f, false, moltgate.Errorf(moltgate.EINVALID, "%s must be an RFC 3339 time", name)
			}
		}
	}
	for name, dst := range map[string]*int64{"before": &f.UntilSeq, "after": &f.AfterSeq} {
		if v := c.Query(name); v != "" {
			if *dst, err = strconv.ParseInt(v, 10, 64); err != nil {
				return f, false, moltgate.Errorf(moltgate.EINVALID, "%s must be a seq", name)
			}
		}
	}
	if v := c.Query("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > 1000 {
			return f, false, moltgate.Errorf(moltgate.EINVALID, "limit must be 1-1000")
		}
	}
	if c.Query("before") != "" {
		if f.UntilSeq <= 1 {
			return f, true, nil // nothing comes before the first event
		}
		f.UntilSeq-- // "before" is exclusive
	}
	return f, false, nil
}

// listEvents pages through the log, newest first: the events' envelopes,
// as the stream's `log` frames carry them (GET /api/admin/events/:seq
// shows one with its payload).
func (a *Admin) listEvents(c *gin.Context) {
	f, none, err := eventFilter(c)
	if err != nil {
		writeError(c, err)
		return
	}
	var events []moltgate.Event
	if !none {
		if events, err = a.Gateway.Events.Query(c.Request.Context(), f); err != nil {
			writeError(c, err)
			return
		}
	}
	listed := make([]logEntry, len(events))
	for i, e := range events {
		listed[i] = newLogEntry(e)
	}
	out := gin.H{"events": listed}
	// A full page may have more behind it, unless it ends at the first
	// event.
	if last := len(events) - 1; len(events) == f.Limit && events[last].Seq > 1 {
		out["nextBefore"] = events[last].Seq
	}
	c.JSON(http.StatusOK, out)
}

func (a *Admin) showEvent(c *gin.Context) {
	seq, err := strconv.ParseInt(c.Param("seq"), 10, 64)
	if err != nil {
		writeError(c, moltgate.Errorf(moltgate.EINVALID, "seq must be a number"))
		return
	}
	e, err := a.Gateway.Events.GetSeq(c.Request.Context(), seq)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, e.Redact())
}

// exportEvents streams the log (with the list's filters, limit aside) as
// JSON lines, oldest first, secrets redacted: a conversation from one
// channel and sender can be taken away and replayed. The export is the
// log as it was when it started, read a page at a time: one read for the
// whole download would hold a read transaction (and the log's
// checkpoints) for as long as the client takes to read it.
func (a *Admin) exportEvents(c *gin.Context) {
	f, none, err := eventFilter(c)
	if err != nil {
		writeError(c, err)
		return
	}
	c.Header("Content-Type", "application/x-ndjson")
	c.Header("Content-Disposition", `attachment; filename="moltgate-events.jsonl"`)
	c.Status(http.StatusOK)
	last := a.Gateway.Events.LastSeq()
	if none || last == 0 {
		return
	}
	if f.UntilSeq == 0 || f.UntilSeq > last {
		f.UntilSeq = last
	}
	f.Desc, f.Limit = false, exportPage
	enc := json.NewEncoder(c.Writer)
	for {
		page, err := a.Gateway.Events.Query(c.Request.Context(), f)
		if err != nil {
			a.Gateway.Logger.Error("event export stopped", "requestId", c.GetString(requestIDKey), "error", err)
			return
		}
		for _, e := range page {
			if enc.Encode(e.Redact()) != nil {
				return // the client went away
			}
		}
		if len(page) < f.Limit {
			return
		}
		f.AfterSeq = page[len(page)-1].Seq
	}
}

// exportPage is how many events an export reads at a time.
const exportPage = 1000

// replay shows the read models as they were at ?seq=N (or ?at=RFC3339)
// beside the current ones: the time machine.
func (a *Admin) replay(c *gin.Context) {
	ctx := c.Request.Context()
	seq := a.Gateway.Events.LastSeq()
	var at time.Time
	if v := c.Query("seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeError(c, moltgate.Errorf(moltgate.EINVALID, "seq must be a number"))
			return
		}
		seq = n
	} else if v := c.Query("at"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(c, moltgate.Errorf(moltgate.EINVALID, "at must be an RFC 3339 time"))
			return
		}
		at = t
	}
	then, err := a.History.ViewAt(ctx, seq, at)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"then": then, "now": a.Gateway.currentView()})
}
