package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

// Operator scopes, short names for the method table.
const (
	scopeRead    = moltgate.ScopeRead
	scopeWrite   = moltgate.ScopeWrite
	scopeAdmin   = moltgate.ScopeAdmin
	scopePairing = moltgate.ScopePairing
)

// frame is an incoming frame; only requests are expected from clients.
type frame struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

type resFrame struct {
	Type    string     `json:"type"`
	ID      string     `json:"id"`
	OK      bool       `json:"ok"`
	Payload any        `json:"payload,omitempty"`
	Error   *wireError `json:"error,omitempty"`
}

type eventFrame struct {
	Type    string          `json:"type"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
	Seq     int64           `json:"seq,omitempty"`
}

// sendQueue is how many frames may wait for a slow client.
const sendQueue = 512

// conn is one client connection. A reader goroutine (ServeWS) and a writer
// goroutine share its context; cancelling it ends both.
type conn struct {
	g      *Gateway
	ws     *websocket.Conn
	id     string
	ip     string
	local  bool
	ctx    context.Context
	cancel context.CancelFunc

	// Set by the handshake, read-only afterwards.
	role     string
	scopes   []string
	deviceID string
	actor    string
	// deltaOnly: the client asked for CapDeltaOnly.
	deltaOnly bool

	send     chan []byte
	buffered atomic.Int64
	eventSeq atomic.Int64

	following map[string]bool // session keys whose chat events it gets; guarded by g.mu

	preauthDone func() // releases the connection's pre-auth slot (idempotent)

	closeOnce sync.Once
	closeCode websocket.StatusCode
	closeMsg  string
	inflight  chan struct{} // bounds concurrent requests per connection
}

// ServeWS upgrades a request to a gateway connection. Connections that
// have not authenticated yet are limited (in all and per address), so a
// client cannot hold thousands of sockets open without a token.
func (g *Gateway) ServeWS(c *gin.Context) {
	ip := g.Trust.ClientIP(c.Request)
	release, err := g.preauth.acquire(ip)
	if err != nil {
		c.Header("Retry-After", "5")
		writeError(c, err)
		return
	}
	ws, err := websocket.Accept(c.Writer, c.Request, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		release()
		return // Accept has answered the request
	}
	ctx, cancel := context.WithCancel(context.Background())
	conn := &conn{g: g, ws: ws, id: moltgate.NewID(), ip: ip, local: g.Trust.Local(c.Request), preauthDone: release,
		ctx: ctx, cancel: cancel, send: make(chan []byte, sendQueue), inflight: make(chan struct{}, 16), following: map[string]bool{}}
	defer cancel()
	defer conn.preauthDone()
	conn.serve()
}

func (c *conn) serve() {
	c.ws.SetReadLimit(maxPreauthPayload)
	nonce := randomNonce()
	challenge, _ := json.Marshal(map[string]any{"nonce": nonce, "ts": time.Now().UnixMilli()})
	if c.writeNow(eventFrame{Type: "event", Event: "connect.challenge", Payload: challenge}) != nil {
		return
	}
	// A read deadline would make the library drop the connection without a
	// close frame; a timer closes it properly instead.
	timer := time.AfterFunc(c.g.Policy.HandshakeTimeout, func() {
		c.ws.Close(websocket.StatusPolicyViolation, "handshake timeout")
	})
	typ, data, err := c.ws.Read(c.ctx)
	if !timer.Stop() || err != nil {
		c.ws.CloseNow() // after the timeout's close, or the library's 1009 for an oversized frame
		return
	}
	var f frame
	if typ != websocket.MessageText || json.Unmarshal(data, &f) != nil || f.Type != "req" || f.Method != "connect" {
		c.ws.Close(websocket.StatusPolicyViolation, "first frame must be a connect request")
		return
	}
	hello, err := c.handshake(f.Params, nonce)
	c.preauthDone()
	if err != nil {
		if isInternal(err) {
			c.g.Logger.Error("connect failed", "conn", c.id, "ip", c.ip, "error", err)
		}
		w, _ := toWire(err)
		c.writeNow(resFrame{Type: "res", ID: f.ID, OK: false, Error: &w})
		c.ws.Close(websocket.StatusPolicyViolation, connectRefusal(err))
		return
	}
	// Join the hub before hello-ok goes out, so no event that follows the
	// client's view of the gateway is missed; events wait in the queue
	// until the writer starts after hello-ok.
	c.g.add(c)
	defer c.g.remove(c)
	if c.writeNow(resFrame{Type: "res", ID: f.ID, OK: true, Payload: hello}) != nil {
		return
	}

	c.ws.SetReadLimit(c.g.Policy.MaxPayload)
	go c.writeLoop()
	go c.tickLoop()
	c.readLoop()
}

// connectRefusal is the close reason of a refused connect. The web chat
// gives up on "unauthorized" (a wrong token stays wrong), so only a
// refused credential says it: a failure on the gateway's side is
// "unavailable", and the client tries again.
func connectRefusal(err error) string {
	switch moltgate.ErrorCode(err) {
	case moltgate.EUNAUTHORIZED:
		return "unauthorized"
	case moltgate.ENOTPAIRED:
		return "pairing required"
	case moltgate.EINVALID:
		return "invalid connect"
	}
	return "unavailable"
}

// readLoop dispatches requests until the connection ends. Each request runs
// in its own goroutine (bounded) so a slow one does not hold up the others.
func (c *conn) readLoop() {
	defer c.cancel()
	for {
		// Not c.ctx: cancelling a read drops the connection without a close
		// frame. The writer closes the socket properly, which ends the read.
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) && c.ctx.Err() == nil {
				c.closeWith(websocket.StatusMessageTooBig, "frame too large or unreadable") // the library already sent 1009 when it was the size
			}
			return
		}
		var f frame
		if typ != websocket.MessageText || json.Unmarshal(data, &f) != nil || f.Type != "req" || f.ID == "" {
			id := ""
			if f.ID != "" {
				id = f.ID
			}
			c.respond(id, nil, moltgate.Errorf(moltgate.EINVALID, "frames must be JSON requests {type:\"req\", id, method, params}"))
			continue
		}
		select {
		case c.inflight <- struct{}{}:
		case <-c.ctx.Done():
			return
		}
		go func() {
			defer func() { <-c.inflight }()
			payload, err := c.g.dispatch(c.ctx, c, f.Method, f.Params)
			c.respond(f.ID, payload, err)
		}()
	}
}

func (c *conn) respond(id string, payload any, err error) {
	res := resFrame{Type: "res", ID: id, OK: err == nil, Payload: payload}
	if err != nil && isInternal(err) {
		c.g.Logger.Error("internal error", "conn", c.id, "request", id, "error", err)
	}
	if err != nil {
		w, _ := toWire(err)
		res.Error = &w
		res.Payload = nil
	}
	data, merr := json.Marshal(res)
	if merr != nil {
		c.g.Logger.Error("cannot encode response", "error", merr)
		return
	}
	c.enqueue(data)
}

// sendEvent frames an already-encoded payload. The frame is assembled by
// hand: re-marshalling a RawMessage makes encoding/json validate and
// compact it again, which was a third of the CPU under streaming load.
func (c *conn) sendEvent(event string, payload json.RawMessage) {
	name, _ := json.Marshal(event)
	data := make([]byte, 0, len(payload)+len(name)+48)
	data = append(data, `{"type":"event","event":`...)
	data = append(data, name...)
	data = append(data, `,"payload":`...)
	data = append(data, payload...)
	data = append(data, `,"seq":`...)
	data = strconv.AppendInt(data, c.eventSeq.Add(1), 10)
	data = append(data, '}')
	c.enqueue(data)
}

// enqueue queues a frame; a client that cannot keep up (queue full or more
// than MaxBufferedBytes waiting) is disconnected rather than allowed to
// hold up anyone else.
func (c *conn) enqueue(data []byte) {
	if c.ctx.Err() != nil {
		return
	}
	if c.buffered.Add(int64(len(data))) > c.g.Policy.MaxBufferedBytes {
		c.closeWith(websocket.StatusPolicyViolation, "slow consumer")
		return
	}
	select {
	case c.send <- data:
	default:
		c.closeWith(websocket.StatusPolicyViolation, "slow consumer")
	}
}

// writeTimeout bounds one frame's write: a client that stops reading
// (its TCP window full) is disconnected.
const writeTimeout = 10 * time.Second

// writeLoop sends the queued frames. A write gets no context of its own:
// a context with a deadline per frame cost a timer and three allocations,
// a third of the gateway's garbage with a thousand sessions streaming (and
// each collection shows in the deltas' latency). One timer per connection,
// reset for each write, closes a write that is stuck, and the connection's
// end closes one in progress.
func (c *conn) writeLoop() {
	var writing atomic.Bool
	stuck := time.AfterFunc(time.Hour, func() { c.ws.CloseNow() })
	stuck.Stop()
	defer stuck.Stop()
	stopWatch := context.AfterFunc(c.ctx, func() {
		if writing.Load() {
			c.ws.CloseNow()
		}
	})
	defer stopWatch()
	for {
		select {
		case data := <-c.send:
			writing.Store(true) // before the check: an end after it closes the write
			if c.ctx.Err() != nil {
				writing.Store(false)
				continue // ended: the next round closes it
			}
			stuck.Reset(writeTimeout)
			err := c.ws.Write(context.Background(), websocket.MessageText, data)
			stuck.Stop()
			writing.Store(false)
			c.buffered.Add(-int64(len(data)))
			if err != nil {
				c.cancel()
				c.ws.CloseNow()
				return
			}
		case <-c.ctx.Done():
			code, msg := c.closeCode, c.closeMsg
			if code == 0 {
				code, msg = websocket.StatusNormalClosure, ""
			}
			c.ws.Close(code, msg)
			return
		}
	}
}

func (c *conn) tickLoop() {
	t := time.NewTicker(c.g.Policy.TickInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			payload, _ := json.Marshal(map[string]any{"ts": now.UnixMilli()})
			c.sendEvent("tick", payload)
		case <-c.ctx.Done():
			return
		}
	}
}

// closeWith ends the connection with a close code and reason.
func (c *conn) closeWith(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeMsg = code, reason
		c.cancel()
	})
}

// writeNow writes a frame directly; only before the writer starts.
func (c *conn) writeNow(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, data)
}

// follow subscribes the connection to a session's chat events.
func (c *conn) follow(sessionKey string) { c.g.follow(c, sessionKey) }

// allowed reports whether the connection holds scope ("" = any).
func (c *conn) allowed(scope string) bool {
	return moltgate.ScopesAllow(c.scopes, scope)
}

func randomNonce() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
