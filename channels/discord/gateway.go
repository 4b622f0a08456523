package discord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/disgo/rest"
	"github.com/moltgate/moltgate"
)

// intents are what the bot subscribes to: guild and DM messages, with
// their content (a privileged intent the bot's owner must enable).
const intents = gateway.IntentGuilds | gateway.IntentGuildMessages |
	gateway.IntentDirectMessages | gateway.IntentMessageContent

const (
	helloTimeout = 30 * time.Second
	writeTimeout = 10 * time.Second
	// readLimit bounds one gateway payload; READY and GUILD_CREATE for
	// large guilds run to megabytes uncompressed.
	readLimit = 32 << 20
)

// fatalError is a failure retrying cannot fix: Run stops and reports it.
type fatalError struct{ msg string }

func (e *fatalError) Error() string { return e.msg }

// session is what survives a dropped connection within one Run: where to
// connect, and what RESUME needs.
type session struct {
	gatewayURL string
	id         string // "" when there is no session to resume
	resumeURL  string
	seq        atomic.Int64 // last dispatch sequence; 0 before the first
	bot        bot          // the bot's identity, from READY
}

func (s *session) forget() {
	s.id, s.resumeURL = "", ""
	s.seq.Store(0)
}

// run is Run's loop: connect, serve until the connection ends, back off,
// again, until ctx ends or a fatal error.
func (a *Adapter) run(ctx context.Context, handle moltgate.InboundHandler) error {
	sess := &session{gatewayURL: a.cfg.GatewayURL}
	failures := 0
	for {
		healthy, err := a.connect(ctx, sess, handle)
		if ctx.Err() != nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return err
		}
		if healthy {
			failures = 0
		}
		delay := moltgate.Backoff(a.cfg.BackoffBase, maxBackoff, failures)
		failures++
		a.status.Reconnecting(err.Error())
		a.log.Warn("discord gateway connection lost; reconnecting", "err", err, "in", delay, "resume", sess.id != "")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

// connect runs one gateway connection until it ends; healthy reports
// whether the gateway accepted it (READY or RESUMED) before it did.
func (a *Adapter) connect(ctx context.Context, sess *session, handle moltgate.InboundHandler) (healthy bool, err error) {
	if sess.gatewayURL == "" {
		if sess.gatewayURL, err = a.discoverGateway(ctx); err != nil {
			return false, err
		}
	}
	target := sess.gatewayURL
	if sess.id != "" && sess.resumeURL != "" {
		target = sess.resumeURL
	}
	dialURL, err := gatewayDialURL(target)
	if err != nil {
		return false, err
	}
	ws, _, err := websocket.Dial(ctx, dialURL, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return false, fmt.Errorf("cannot connect to the gateway: %w", err)
	}
	ws.SetReadLimit(readLimit)
	c := &conn{a: a, ws: ws, sess: sess, handle: handle}
	err = c.serve(ctx)
	return c.healthy, err
}

// discoverGateway asks Discord where the gateway is.
func (a *Adapter) discoverGateway(ctx context.Context) (string, error) {
	gb, err := a.rest.GetGatewayBot(rest.WithCtx(ctx))
	if err != nil {
		err = restError(err)
		var api *apiError
		if errors.As(err, &api) && (api.Status == http.StatusUnauthorized || api.Status == http.StatusForbidden) {
			return "", &fatalError{fmt.Sprintf("discord: the bot token was refused (%d %s): check DISCORD_BOT_TOKEN",
				api.Status, http.StatusText(api.Status))}
		}
		return "", fmt.Errorf("cannot ask Discord for the gateway URL: %w", err)
	}
	if gb.URL == "" {
		return "", errors.New("cannot ask Discord for the gateway URL: the answer has no url")
	}
	return gb.URL, nil
}

// gatewayDialURL adds the API version and encoding to a gateway URL.
func gatewayDialURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return "", fmt.Errorf("the gateway URL %q is not a ws:// or wss:// URL", raw)
	}
	q := u.Query()
	q.Set("v", "10")
	q.Set("encoding", "json")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// conn is one gateway WebSocket connection.
type conn struct {
	a       *Adapter
	ws      *websocket.Conn
	sess    *session
	handle  moltgate.InboundHandler
	healthy bool        // READY or RESUMED arrived
	acked   atomic.Bool // the last heartbeat was acknowledged
	zombie  atomic.Bool // closed because a heartbeat went unacknowledged
}

// frame is a gateway payload as received; d is decoded by op and t.
type frame struct {
	Op gateway.Opcode    `json:"op"`
	S  *int64            `json:"s"`
	T  gateway.EventType `json:"t"`
	D  json.RawMessage   `json:"d"`
}

// outFrame is a payload the bot sends.
type outFrame struct {
	Op gateway.Opcode `json:"op"`
	D  any            `json:"d"`
}

// serve speaks the gateway protocol on the connection: HELLO, IDENTIFY or
// RESUME, then dispatches, heartbeats, RECONNECT and INVALID_SESSION,
// until the connection ends. Handlers run on this goroutine, in Discord's
// order; the heartbeat runs on another, which also closes the connection
// politely (1000) when ctx ends.
func (c *conn) serve(ctx context.Context) error {
	defer c.ws.CloseNow()
	interval, err := c.hello(ctx)
	if err != nil {
		return err
	}
	if err := c.authenticate(); err != nil {
		return err
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.heartbeat(ctx, interval, done)
	}()
	defer wg.Wait()
	defer close(done)

	for {
		_, data, err := c.ws.Read(context.Background()) // unblocked by the heartbeat goroutine closing ws
		if err != nil {
			return c.closed(err)
		}
		c.a.status.Touch()
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			c.a.log.Warn("skipped an undecodable gateway payload", "err", err, "bytes", len(data))
			continue
		}
		switch f.Op {
		case gateway.OpcodeDispatch:
			if f.S != nil {
				c.sess.seq.Store(*f.S)
			}
			if err := c.dispatch(ctx, f.T, f.D); err != nil {
				return err
			}
		case gateway.OpcodeHeartbeat: // the gateway asks for one now
			c.send(gateway.OpcodeHeartbeat, c.seq()) // a failed write ends the next Read
		case gateway.OpcodeHeartbeatACK:
			c.acked.Store(true)
		case gateway.OpcodeReconnect:
			return errors.New("the gateway asked to reconnect (op 7)")
		case gateway.OpcodeInvalidSession:
			var resumable bool
			json.Unmarshal(f.D, &resumable)
			if !resumable {
				c.sess.forget()
			}
			return fmt.Errorf("the gateway invalidated the session (op 9, resumable %t)", resumable)
		}
	}
}

// hello reads op 10 HELLO and returns the heartbeat interval.
func (c *conn) hello(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	_, data, err := c.ws.Read(ctx)
	if err != nil {
		return 0, c.closed(err)
	}
	c.a.status.Touch()
	var f frame
	var hello gateway.MessageDataHello
	if json.Unmarshal(data, &f) != nil || f.Op != gateway.OpcodeHello ||
		json.Unmarshal(f.D, &hello) != nil || hello.HeartbeatInterval <= 0 {
		return 0, errors.New("the gateway did not start with HELLO")
	}
	return time.Duration(hello.HeartbeatInterval) * time.Millisecond, nil
}

// authenticate resumes the session if there is one, or identifies.
func (c *conn) authenticate() error {
	token := c.a.cfg.Token
	if c.sess.id != "" {
		return c.send(gateway.OpcodeResume, gateway.MessageDataResume{
			Token: token, SessionID: c.sess.id, Seq: int(c.sess.seq.Load()),
		})
	}
	return c.send(gateway.OpcodeIdentify, gateway.MessageDataIdentify{
		Token:      token,
		Properties: gateway.IdentifyCommandDataProperties{OS: runtime.GOOS, Browser: "moltgate", Device: "moltgate"},
		Intents:    intents,
	})
}

// seq is the heartbeat payload: the last sequence, or null before any.
func (c *conn) seq() any {
	if s := c.sess.seq.Load(); s > 0 {
		return s
	}
	return nil
}

func (c *conn) send(op gateway.Opcode, d any) error {
	data, err := json.Marshal(outFrame{Op: op, D: d})
	if err != nil {
		return fmt.Errorf("cannot encode gateway payload op %d: %w", op, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, data); err != nil {
		return fmt.Errorf("cannot write to the gateway (op %d): %w", op, err)
	}
	return nil
}

// heartbeat beats every interval (the first after a random part of it, as
// Discord asks) until done closes. A beat that was not acknowledged by the
// next one means a zombie connection: it is cut, to be resumed. When ctx
// ends it closes the connection with 1000, which ends the session.
func (c *conn) heartbeat(ctx context.Context, interval time.Duration, done <-chan struct{}) {
	c.acked.Store(true)
	timer := time.NewTimer(rand.N(interval))
	defer timer.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			c.ws.Close(websocket.StatusNormalClosure, "shutting down")
			return
		case <-timer.C:
		}
		if !c.acked.Swap(false) {
			c.zombie.Store(true)
			c.ws.CloseNow()
			return
		}
		if err := c.send(gateway.OpcodeHeartbeat, c.seq()); err != nil {
			c.ws.CloseNow() // the read loop reports the failure
			return
		}
		timer.Reset(interval)
	}
}

// closed turns the end of the connection into Run's verdict: fatal for a
// refused token or intents, otherwise something to reconnect after
// (forgetting the session when Discord says it cannot be resumed).
func (c *conn) closed(err error) error {
	if c.zombie.Load() {
		return errors.New("the gateway stopped acknowledging heartbeats")
	}
	code := int(websocket.CloseStatus(err))
	if code < 4000 {
		return fmt.Errorf("the gateway connection dropped: %w", err)
	}
	ce := gateway.CloseEventCodeByCode(code)
	switch {
	case code == gateway.CloseEventCodeAuthenticationFailed.Code:
		return &fatalError{"discord: the bot token was refused (4004 Authentication failed): check DISCORD_BOT_TOKEN"}
	case code == gateway.CloseEventCodeDisallowedIntent.Code:
		return &fatalError{"discord: the gateway refused the Message Content intent (4014 Disallowed intent(s)): " +
			"enable it in the Discord developer portal (your application → Bot → Privileged Gateway Intents → Message Content Intent)"}
	case !ce.Reconnect:
		return &fatalError{fmt.Sprintf("discord: the gateway closed the connection (%d %s): %s", code, ce.Description, ce.Explanation)}
	case code == gateway.CloseEventCodeInvalidSeq.Code || code == gateway.CloseEventCodeSessionTimed.Code:
		c.sess.forget()
	}
	return fmt.Errorf("the gateway closed the connection (%d %s)", code, ce.Description)
}

// dispatch handles an event. Only READY and RESUMED matter to the
// connection; MESSAGE_CREATE goes to the handler; the rest is ignored.
func (c *conn) dispatch(ctx context.Context, t gateway.EventType, d json.RawMessage) error {
	switch t {
	case gateway.EventTypeReady:
		var ready gateway.EventReady
		if err := json.Unmarshal(d, &ready); err != nil {
			return fmt.Errorf("cannot decode READY: %w", err)
		}
		if ready.SessionID == "" || ready.User.ID == 0 {
			return errors.New("the gateway sent a READY without a session or bot user")
		}
		c.sess.id, c.sess.resumeURL = ready.SessionID, ready.ResumeGatewayURL
		c.sess.bot = newBot(ready.User.ID, ready.User.Username)
		c.healthy = true
		c.a.ready(ready.User.ID.String(), ready.User.Username)
		c.a.log.Info("discord gateway ready", "bot", ready.User.Username, "id", ready.User.ID.String())
	case gateway.EventTypeResumed:
		c.healthy = true
		c.a.ready(c.sess.bot.id.String(), c.sess.bot.name)
		c.a.log.Info("discord gateway session resumed")
	case gateway.EventTypeMessageCreate:
		var m discord.Message
		if err := json.Unmarshal(d, &m); err != nil {
			c.a.log.Warn("skipped a malformed MESSAGE_CREATE", "err", err)
			return nil
		}
		msg, ok := c.sess.bot.inbound(m)
		if !ok {
			return nil
		}
		if err := c.handle(ctx, msg); err != nil {
			c.a.log.Warn("the handler did not take a Discord message", "err", err, "message", msg.MessageID, "chat", msg.ChatID)
		}
	}
	return nil
}
