package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-contrib/sse"
	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

// The admin stream, GET /api/admin/stream, pushes to the admin page what
// it used to poll for, as Server-Sent Events: the approval queues (device
// and chat-platform pairing requests and their outcomes), config changes,
// the replica status and a line for every new event. All but the replica
// status follow the log; the replica status is polled, each second by
// each stream, and sent when it changed. Each client follows
// the log from its own position, so a reconnect with Last-Event-ID (the
// seq of the last event it got) resumes exactly after it: none missed,
// none repeated.
//
// Event kinds (the SSE `event:` field), each with JSON data:
//
//	snapshot               on connect: queues, config hash, storage, recent events (id: the read models' seq)
//	resume                 on a reconnect with Last-Event-ID, instead of the snapshot
//	device.pair.requested  a device asks to pair (the /api/admin/devices entry)
//	device.pair.resolved   decision approved (with the paired device), rejected or removed
//	channel.pair.requested a chat-platform stranger got a pairing code
//	channel.pair.resolved  decision approved or rejected
//	config.changed         hash, actor
//	storage                the replica status, when it changed (checked every second; no id)
//	log                    every event's envelope (id: its seq)
//
// An event's own frames go out in one write, its `log` frame last and the
// only one with an id, so a client that saw the id saw them all. Between
// frames, a ": ping" comment every Policy.TickInterval (15 s by default)
// keeps proxies from closing an idle connection.
const (
	// maxAdminStreams bounds the streams open at once (one per admin tab):
	// each holds a log cursor and, while it catches up, a read connection.
	maxAdminStreams = 8
	// streamBuffer is how many events' frames wait for one client.
	streamBuffer = 256
	// streamStall is how long a client may leave its buffer full, or a
	// write unaccepted, before it is disconnected as too slow; it resumes
	// from its Last-Event-ID when it comes back.
	streamStall = 5 * time.Second
	// streamStoragePoll is how often the replica status is checked; it is
	// sent when it changed (a sync moves replicatedSeq and lastSyncAt).
	streamStoragePoll = time.Second
	// streamRetry is how long EventSource waits before reconnecting (ms).
	streamRetry = 2000
	// streamRecentEvents is how many events the snapshot lists.
	streamRecentEvents = 50
)

var errSlowClient = errors.New("the admin stream's client did not keep up")

// adminStream serves the stream of one mounted admin.
type adminStream struct {
	admin *Admin
	slots chan struct{} // one per open stream
	// closing ends every stream when the server closes: Shutdown waits
	// for requests in flight, and a stream never ends by itself.
	closing context.Context
}

// mountStream adds GET /api/admin/stream behind the admin's middleware
// (its guard among them), preceded by streamQueryToken.
func (a *Admin) mountStream(s *Server) {
	st := &adminStream{admin: a, slots: make(chan struct{}, maxAdminStreams), closing: s.done}
	s.router.GET("/api/admin/stream", slices.Concat(gin.HandlersChain{a.streamQueryToken}, a.middleware(), gin.HandlersChain{st.serve})...)
}

// streamQueryToken lets EventSource, which cannot send headers, carry the
// gateway token as ?token= on a local request: it hands the token to the
// guard as the Authorization header the guard reads, so the guard decides
// exactly as for every other admin route (local request, constant-time
// comparison). A query token from a client that is not local is dropped
// unread. Either way it leaves the URL.
func (a *Admin) streamQueryToken(c *gin.Context) {
	q := c.Request.URL.Query()
	token := q.Get("token")
	if token == "" {
		return
	}
	q.Del("token")
	c.Request.URL.RawQuery = q.Encode()
	if c.Request.Header.Get("Authorization") == "" && a.Gateway.Trust.Local(c.Request) {
		c.Request.Header.Set("Authorization", "Bearer "+token)
	}
}

func (st *adminStream) serve(c *gin.Context) {
	r := c.Request
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		// The stream never ends: a client that did not ask for one
		// would wait forever for the end of the body.
		writeError(c, moltgate.Errorf(moltgate.EINVALID, "this is a Server-Sent Events stream: send Accept: text/event-stream"))
		return
	}
	after, resume, err := lastEventID(r)
	if err != nil {
		writeError(c, err)
		return
	}
	if st.closing.Err() != nil {
		writeError(c, moltgate.Errorf(moltgate.EUNAVAILABLE, "the gateway is shutting down"))
		return
	}
	select {
	case st.slots <- struct{}{}:
		defer func() { <-st.slots }()
	default:
		writeError(c, moltgate.Errorf(moltgate.ETOOMANY, "%d admin streams are open: close an admin tab", maxAdminStreams))
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	defer context.AfterFunc(st.closing, cancel)()

	after, first, storage, err := st.opening(ctx, after, resume)
	if err != nil {
		if ctx.Err() == nil {
			writeError(c, err)
		}
		return
	}

	rc := http.NewResponseController(c.Writer)
	defer rc.SetWriteDeadline(time.Time{}) // the connection may serve another request
	h := c.Writer.Header()
	h.Set("Content-Type", sse.ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx and friends: do not buffer
	c.Status(http.StatusOK)
	write := func(b []byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(streamStall)); err != nil {
			return err
		}
		if _, err := c.Writer.Write(b); err != nil {
			return err
		}
		c.Writer.Flush()
		return nil
	}
	if write(first) != nil {
		return
	}

	g := st.admin.Gateway
	frames := make(chan []byte, streamBuffer)
	followed := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		followed <- g.Events.Follow(ctx, after, func(e moltgate.Event) error {
			return enqueue(ctx, frames, st.eventFrames(ctx, e))
		})
	}()

	keepAlive := time.NewTicker(cmp.Or(g.Policy.TickInterval, 15*time.Second))
	defer keepAlive.Stop()
	storagePoll := time.NewTicker(streamStoragePoll)
	defer storagePoll.Stop()
	var batch bytes.Buffer
	for {
		batch.Reset()
		select {
		case <-ctx.Done():
			return
		case err := <-followed:
			if err != nil && !errors.Is(err, context.Canceled) {
				g.Logger.Warn("admin stream ended", "requestId", c.GetString(requestIDKey), "error", err)
			}
			return
		case b := <-frames:
			batch.Write(b)
			for len(frames) > 0 && batch.Len() < 64<<10 {
				batch.Write(<-frames)
			}
		case <-keepAlive.C:
			batch.WriteString(": ping\n\n")
		case <-storagePoll.C:
			if now := st.storageJSON(ctx); !bytes.Equal(now, storage) {
				storage = now
				encodeFrame(&batch, sse.Event{Event: "storage", Data: storage})
			}
		}
		if batch.Len() > 0 && write(batch.Bytes()) != nil {
			return
		}
	}
}

// opening is what a stream starts with and the seq it follows the log
// from: after a reconnect, `resume` and the replica status; otherwise the
// snapshot, whose id is its seq.
func (st *adminStream) opening(ctx context.Context, after int64, resume bool) (from int64, first, storage []byte, err error) {
	var b bytes.Buffer
	last := st.admin.Gateway.Events.LastSeq()
	if resume && after <= last {
		storage = st.storageJSON(ctx)
		encodeFrame(&b, sse.Event{Event: "resume", Retry: streamRetry, Data: frameJSON(gin.H{"after": after, "lastSeq": last})})
		encodeFrame(&b, sse.Event{Event: "storage", Data: storage})
		return after, b.Bytes(), storage, nil
	}
	// No resume, or one from past the end of this log (restored from an
	// older replica): start afresh.
	from, snap, storage, err := st.snapshot(ctx)
	if err != nil {
		return 0, nil, nil, err
	}
	encodeFrame(&b, sse.Event{Event: "snapshot", Id: strconv.FormatInt(from, 10), Retry: streamRetry, Data: snap})
	return from, b.Bytes(), storage, nil
}

// lastEventID reads where a reconnecting client left off: the
// Last-Event-ID header EventSource sends, or ?lastEventId= for clients
// that cannot set headers.
func lastEventID(r *http.Request) (seq int64, ok bool, err error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("lastEventId")
	}
	if v == "" {
		return 0, false, nil
	}
	seq, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || seq < 0 {
		return 0, false, moltgate.Errorf(moltgate.EINVALID, "Last-Event-ID must be the id of an event this stream sent (a seq, 0 or more)")
	}
	return seq, true, nil
}

// enqueue hands an event's frames to the writer. A full buffer gets
// streamStall to drain: a burst (a batch of appends, a catch-up) passes,
// a client that stopped reading is dropped.
func enqueue(ctx context.Context, frames chan<- []byte, b []byte) error {
	select {
	case frames <- b:
		return nil
	default:
	}
	t := time.NewTimer(streamStall)
	defer t.Stop()
	select {
	case frames <- b:
		return nil
	case <-t.C:
		return errSlowClient
	case <-ctx.Done():
		return ctx.Err()
	}
}

// snapshot is what the page shows at once: the queues, the config hash,
// the replica status and the latest events, as of the read models' seq.
// The read models may already hold a few later events; the stream sends
// them again, and the page applies each event idempotently.
func (st *adminStream) snapshot(ctx context.Context) (seq int64, data, storage []byte, err error) {
	g := st.admin.Gateway
	now := time.Now()
	v := g.Queries.CurrentView(now)
	recent := []logEntry{}
	if v.Seq > 0 {
		events, err := g.Events.Query(ctx, moltgate.EventFilter{UntilSeq: v.Seq, Desc: true, Limit: streamRecentEvents})
		if err != nil {
			return 0, nil, nil, err
		}
		for _, e := range events {
			recent = append(recent, newLogEntry(e))
		}
	}
	storage = st.storageJSON(ctx)
	data = frameJSON(gin.H{"seq": v.Seq, "lastSeq": g.Events.LastSeq(),
		"devices":  deviceListsWire(v.Devices.Pending, v.Devices.Paired),
		"channels": gin.H{"pending": sendersWire(v.Channels.Pending)},
		"config":   gin.H{"hash": v.Config.Hash},
		"storage":  json.RawMessage(storage),
		"events":   recent})
	return v.Seq, data, storage, nil
}

// storageJSON is the data of a `storage` frame: the replica status
// without the bucket listing (the page fetches that from
// /api/admin/storage, which asks the bucket).
func (st *adminStream) storageJSON(ctx context.Context) []byte {
	s := st.admin.Gateway.Storage.Status(ctx)
	return frameJSON(gin.H{"configured": s.Configured, "status": s})
}

// eventFrames encodes the frames of one event: its own kind when the page
// shows it, then its `log` line carrying the id.
func (st *adminStream) eventFrames(ctx context.Context, e moltgate.Event) []byte {
	var b bytes.Buffer
	if kind, data := st.describe(ctx, e); kind != "" {
		encodeFrame(&b, sse.Event{Event: kind, Data: frameJSON(data)})
	}
	encodeFrame(&b, sse.Event{Event: "log", Id: strconv.FormatInt(e.Seq, 10), Data: frameJSON(newLogEntry(e))})
	return b.Bytes()
}

// describe turns the events the queue and the config view show into
// their frame; other events (and a payload that does not decode) have
// only their log line.
func (st *adminStream) describe(ctx context.Context, e moltgate.Event) (string, map[string]any) {
	outcome := func(m map[string]any, decision string) map[string]any {
		m["seq"], m["decision"], m["actor"], m["ts"] = e.Seq, decision, e.Meta.Actor, e.RecordedAt.UnixMilli()
		return m
	}
	switch e.Type {
	case moltgate.EventDevicePairingRequested:
		var d moltgate.DevicePairingRequestedData
		if e.Decode(&d) != nil {
			return "", nil
		}
		w := deviceWire(requestedDevice(d, e.RecordedAt))
		w["seq"] = e.Seq
		return "device.pair.requested", w
	case moltgate.EventDevicePairingApproved:
		var d moltgate.DevicePairingApprovedData
		if e.Decode(&d) != nil {
			return "", nil
		}
		m := outcome(map[string]any{"requestId": d.RequestID, "deviceId": d.DeviceID}, "approved")
		if dev, ok := st.approvedDevice(ctx, e, d); ok {
			m["device"] = deviceWire(dev)
		}
		return "device.pair.resolved", m
	case moltgate.EventDevicePairingRejected:
		var d moltgate.DevicePairingRejectedData
		if e.Decode(&d) != nil {
			return "", nil
		}
		return "device.pair.resolved", outcome(map[string]any{"requestId": d.RequestID, "deviceId": d.DeviceID, "reason": d.Reason}, "rejected")
	case moltgate.EventDeviceRemoved:
		var d moltgate.DeviceRemovedData
		if e.Decode(&d) != nil {
			return "", nil
		}
		return "device.pair.resolved", outcome(map[string]any{"deviceId": d.DeviceID, "reason": d.Reason}, "removed")
	case moltgate.EventChannelPairingRequested:
		var d moltgate.ChannelPairingRequestedData
		if e.Decode(&d) != nil {
			return "", nil
		}
		w := senderWire(d.Channel, d.SenderID, d.SenderName, d.Code, e.RecordedAt, time.UnixMilli(d.ExpiresAtMs))
		w["seq"] = e.Seq
		return "channel.pair.requested", w
	case moltgate.EventChannelPairingApproved, moltgate.EventChannelPairingRejected:
		var d moltgate.ChannelPairingResolvedData
		if e.Decode(&d) != nil {
			return "", nil
		}
		decision := "approved"
		if e.Type == moltgate.EventChannelPairingRejected {
			decision = "rejected"
		}
		return "channel.pair.resolved", outcome(map[string]any{"channel": d.Channel, "senderId": d.SenderID, "code": d.Code, "notify": d.Notify}, decision)
	case moltgate.EventConfigApplied:
		var d moltgate.ConfigAppliedData
		if e.Decode(&d) != nil {
			return "", nil
		}
		return "config.changed", map[string]any{"seq": e.Seq, "hash": d.Hash, "actor": e.Meta.Actor, "source": e.Meta.Source, "note": d.Note, "ts": e.RecordedAt.UnixMilli()}
	}
	return "", nil
}

// approvedDevice is the paired device an approval made, built from the
// log (its request event and the approval) rather than the read models,
// which follow the log on their own and may not have applied it yet.
func (st *adminStream) approvedDevice(ctx context.Context, e moltgate.Event, d moltgate.DevicePairingApprovedData) (moltgate.Device, bool) {
	reqs, err := st.admin.Gateway.Events.Query(ctx, moltgate.EventFilter{Stream: e.Stream, TypePrefix: moltgate.EventDevicePairingRequested, UntilSeq: e.Seq, Desc: true, Limit: 1})
	if err != nil || len(reqs) == 0 {
		return moltgate.Device{}, false
	}
	var r moltgate.DevicePairingRequestedData
	if reqs[0].Decode(&r) != nil || r.RequestID != d.RequestID {
		return moltgate.Device{}, false
	}
	dev := requestedDevice(r, reqs[0].RecordedAt)
	dev.State, dev.Role, dev.Scopes, dev.ApprovedAt, dev.ExpiresAt, dev.HasToken = moltgate.DevicePaired, d.Role, d.Scopes, e.RecordedAt, time.Time{}, d.TokenHash != ""
	return dev, true
}

// requestedDevice is the pending device a request event describes.
func requestedDevice(d moltgate.DevicePairingRequestedData, at time.Time) moltgate.Device {
	return moltgate.Device{RequestID: d.RequestID, DeviceID: d.DeviceID, PublicKey: d.PublicKey, DisplayName: d.DisplayName,
		Platform: d.Platform, DeviceFamily: d.DeviceFamily, ClientID: d.ClientID, ClientMode: d.ClientMode, Role: d.Role,
		Scopes: d.Scopes, RemoteIP: d.RemoteIP, State: moltgate.DevicePending, RequestedAt: at, ExpiresAt: time.UnixMilli(d.ExpiresAtMs)}
}

// sendersWire is the waiting chat-platform senders as the page shows them.
func sendersWire(pending []moltgate.PendingSender) []gin.H {
	out := make([]gin.H, 0, len(pending))
	for _, p := range pending {
		out = append(out, senderWire(p.Channel, p.SenderID, p.SenderName, p.Code, p.RequestedAt, p.ExpiresAt))
	}
	return out
}

// senderWire is a waiting chat-platform sender as the page shows it.
func senderWire(channel, senderID, senderName, code string, requested, expires time.Time) gin.H {
	return gin.H{"channel": channel, "senderId": senderID, "senderName": senderName, "code": code,
		"requestedAtMs": requested.UnixMilli(), "expiresAtMs": expires.UnixMilli()}
}

// logEntry is an event as the events view lists it: its envelope. The
// payload stays out (stricter than Event.Redact, and a chat message can
// be megabytes); GET /api/admin/events/:seq shows it redacted.
type logEntry struct {
	Seq        int64         `json:"seq"`
	ID         string        `json:"id"`
	Stream     string        `json:"stream"`
	Version    int64         `json:"version"`
	Type       string        `json:"type"`
	Meta       moltgate.Meta `json:"meta"`
	RecordedAt time.Time     `json:"recordedAt"`
	Channel    string        `json:"channel,omitempty"` // see moltgate.ChannelOf
	Sender     string        `json:"sender,omitempty"`
}

func newLogEntry(e moltgate.Event) logEntry {
	channel, sender := moltgate.ChannelOf(e)
	return logEntry{Seq: e.Seq, ID: e.ID, Stream: e.Stream, Version: e.Version, Type: e.Type, Meta: e.Meta, RecordedAt: e.RecordedAt,
		Channel: channel, Sender: sender}
}

// encodeFrame appends one SSE event whose data is JSON (no newlines):
// the encoder writes []byte data as it is and cannot fail.
func encodeFrame(b *bytes.Buffer, e sse.Event) {
	_ = sse.Encode(b, e)
}

// frameJSON encodes v. A value that does not encode (a time past the
// year 9999 in a damaged log) goes out as an error object: the frame
// keeps its place and id, and the stream goes on.
func frameJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(gin.H{"error": "cannot encode this frame: " + err.Error()})
	}
	return b
}
