package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/moltgate/moltgate"
)

// identity is who the bot is, from auth.test.
type identity struct {
	teamID    string // the ChannelAddress.AccountID of every message
	botUserID string // what <@…> mentions of the bot name
	botName   string
	mention   *regexp.Regexp // <@botUserID> or <@botUserID|name>, with the blanks around it
}

// refusedCodes are the Slack errors that mean a token will not work until
// someone changes it, so retrying cannot help.
var refusedCodes = map[string]bool{
	"invalid_auth": true, "not_authed": true, "account_inactive": true, "token_revoked": true,
	"token_expired": true, "not_allowed_token_type": true, "missing_scope": true,
}

// refused returns Slack's error code when err means the token was refused.
func refused(err error) (string, bool) {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) && refusedCodes[se.Err] {
		return se.Err, true
	}
	return "", false
}

// Run authenticates with auth.test, then keeps a Socket Mode connection
// open and hands every message a person sends the bot to handle, until ctx
// ends (it returns nil) or Slack refuses a token (it returns the error and
// Status is failed).
//
// Every envelope is acknowledged as soon as it arrives, before the message
// is handed over: handle runs on its own goroutine, fed by an unbounded
// in-memory queue, so a slow handler never delays an acknowledgement past
// Slack's 3 s (after which Slack sends the event again).
func (a *Adapter) Run(ctx context.Context, handle moltgate.InboundHandler) error {
	a.status.Set(moltgate.ChannelConnecting, "")
	r := &runner{a: a, inbox: newInbox()}
	id, err := r.authenticate(ctx)
	if err == nil && ctx.Err() == nil {
		var wg sync.WaitGroup
		hctx, stop := context.WithCancel(ctx)
		wg.Go(func() { a.deliver(hctx, r.inbox, handle) })
		err = r.listen(ctx, id)
		stop()
		wg.Wait()
	}
	if err != nil && ctx.Err() == nil {
		a.status.Set(moltgate.ChannelFailed, err.Error())
		a.log.Error("stopped", "err", err)
		return err
	}
	a.status.Set(moltgate.ChannelStopped, "")
	return nil
}

// runner is the state of one Run.
type runner struct {
	a     *Adapter
	inbox *inbox
	// failures counts the connection attempts that failed since Slack
	// last said hello: the backoff grows with it.
	failures int
}

// authenticate calls auth.test until it answers: a refused bot token ends
// Run, other failures are retried with backoff.
func (r *runner) authenticate(ctx context.Context) (identity, error) {
	a := r.a
	for {
		res, err := a.api.AuthTestContext(ctx)
		if err == nil {
			a.status.Touch()
			id := identity{teamID: res.TeamID, botUserID: res.UserID, botName: res.User,
				mention: regexp.MustCompile(`[ \t]*<@` + regexp.QuoteMeta(res.UserID) + `(?:\|[^>]*)?>[ \t]*`)}
			a.status.Identify(id.teamID, id.botName)
			a.log.Info("authenticated", "team", id.teamID, "bot_user", id.botUserID, "bot_name", id.botName)
			return id, nil
		}
		if ctx.Err() != nil {
			return identity{}, nil
		}
		if code, ok := refused(err); ok {
			return identity{}, fmt.Errorf("slack: the bot token was refused (%s): check SLACK_BOT_TOKEN", code)
		}
		if !r.retry(ctx, fmt.Errorf("cannot check the bot token with auth.test: %w", err)) {
			return identity{}, nil
		}
	}
}

// retry logs a transient failure, counts a reconnection and waits the
// backoff; it reports false when ctx ended meanwhile.
func (r *runner) retry(ctx context.Context, err error) bool {
	delay := moltgate.Backoff(r.a.cfg.BackoffBase, maxBackoff, r.failures)
	r.failures++
	msg := "slack: " + err.Error()
	r.a.log.Warn("connection failed, retrying", "err", err, "in", delay)
	r.a.status.Reconnecting(msg)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// listen runs Socket Mode sessions until ctx ends or the app-level token
// is refused.
func (r *runner) listen(ctx context.Context, id identity) error {
	for {
		err := r.session(ctx, id)
		if ctx.Err() != nil {
			return nil
		}
		if code, ok := refused(err); ok {
			return fmt.Errorf("slack: the app-level token was refused (%s): check SLACK_APP_TOKEN (it needs the connections:write scope)", code)
		}
		if !r.retry(ctx, fmt.Errorf("cannot open a Socket Mode connection: %w", err)) {
			return nil
		}
	}
}

// session runs one socketmode.Client until its connection attempt fails.
// The client reconnects by itself after a "disconnect" envelope or a
// dropped socket (with a fresh apps.connections.open); when such an attempt
// fails, session stops the client so that listen applies this adapter's
// backoff (the client's own grows to 5 minutes).
func (r *runner) session(ctx context.Context, id identity) error {
	a := r.a
	client := socketmode.New(a.api,
		socketmode.OptionDialer(a.dialer()),
		socketmode.OptionLog(log.New(io.Discard, "", 0))) // it logs only in debug mode, which is off
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- client.RunContext(sctx) }()
	for {
		select {
		case err := <-done:
			if err == nil { // RunContext returns only errors; be safe
				err = errors.New("the Socket Mode client stopped")
			}
			return err
		case evt := <-client.Events:
			if err := r.handleEvent(sctx, client, id, evt); err != nil {
				stop()
				<-done
				return err
			}
		}
	}
}

// handleEvent reacts to one event of the socketmode client; an error ends
// the session.
func (r *runner) handleEvent(ctx context.Context, client *socketmode.Client, id identity, evt socketmode.Event) error {
	a := r.a
	switch evt.Type {
	case socketmode.EventTypeConnecting:
		// The session's first attempt was counted by listen; later ones
		// follow a connection that ended (a disconnect envelope or a
		// dropped socket), or rarely a failed attempt the client retried
		// before session stopped it.
		if ce, ok := evt.Data.(*slack.ConnectingEvent); ok && (ce.ConnectionCount > 0 || ce.Attempt > 1) {
			a.log.Info("the Socket Mode connection closed, reconnecting")
			a.status.Reconnecting("")
		}
	case socketmode.EventTypeConnectionError:
		if ce, ok := evt.Data.(*slack.ConnectionErrorEvent); ok && ce.ErrorObj != nil {
			return ce.ErrorObj
		}
		return errors.New("connection error")
	case socketmode.EventTypeHello:
		r.failures = 0
		a.status.Set(moltgate.ChannelRunning, "")
		a.log.Info("connected")
	case socketmode.EventTypeEventsAPI:
		// Acknowledge first, whatever the event holds.
		r.ack(ctx, client, evt.Request)
		if ev, ok := evt.Data.(slackevents.EventsAPIEvent); ok {
			if msg, ok := a.inbound(id, ev); ok {
				r.inbox.push(msg)
			}
		}
	case socketmode.EventTypeSlashCommand, socketmode.EventTypeInteractive:
		r.ack(ctx, client, evt.Request) // not used by moltgate; unacknowledged, Slack shows the user an error
	case socketmode.EventTypeErrorBadMessage:
		// An envelope the client could not parse: acknowledge it anyway, or
		// Slack would send it again and again.
		if bad, ok := evt.Data.(*socketmode.ErrorBadMessage); ok {
			var req socketmode.Request
			if json.Unmarshal(bad.Message, &req) == nil {
				r.ack(ctx, client, &req)
			}
			a.log.Warn("skipped a malformed envelope", "type", req.Type, "envelope_id", req.EnvelopeID, "err", bad.Cause)
		}
	case socketmode.EventTypeIncomingError:
		// A frame that is not JSON is skipped; any other read error ends
		// the connection, and the client reconnects.
		if ie, ok := evt.Data.(*slack.IncomingEventError); ok {
			var syntax *json.SyntaxError
			var typ *json.UnmarshalTypeError
			if errors.As(ie.ErrorObj, &syntax) || errors.As(ie.ErrorObj, &typ) {
				a.log.Warn("skipped a frame that is not JSON", "err", ie.ErrorObj)
			} else {
				a.log.Debug("cannot read from the socket", "err", ie.ErrorObj)
			}
		}
	case socketmode.EventTypeErrorWriteFailed:
		if wf, ok := evt.Data.(*socketmode.ErrorWriteFailed); ok {
			a.log.Warn("cannot write an acknowledgement", "envelope_id", wf.Response.EnvelopeID, "err", wf.Cause)
		}
	}
	return nil
}

// ack acknowledges an envelope, when it has an id.
func (r *runner) ack(ctx context.Context, client *socketmode.Client, req *socketmode.Request) {
	if req == nil || req.EnvelopeID == "" {
		return
	}
	if err := client.AckCtx(ctx, req.EnvelopeID, nil); err != nil && ctx.Err() == nil {
		r.a.log.Warn("cannot acknowledge an envelope", "envelope_id", req.EnvelopeID, "err", err)
	}
}

// dialer is slack-go's default Socket Mode dialer, with a connection that
// records every read as a sign of life: Slack pings an idle socket every
// few seconds, and the router's watchdog reads LastActivity to tell a
// quiet workspace from a dead connection.
func (a *Adapter) dialer() *websocket.Dialer {
	return &websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: 45 * time.Second,
		WriteBufferSize:  32 * 1024, // above Slack's 20 KB response limit, as slack-go sets it
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return activityConn{Conn: c, touch: a.status.Touch}, nil
		},
	}
}

// activityConn calls touch whenever bytes arrive.
type activityConn struct {
	net.Conn
	touch func()
}

func (c activityConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}
