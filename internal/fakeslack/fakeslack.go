// Package fakeslack runs a loopback fake of the parts of Slack a Socket Mode
// bot uses: the Web API (auth.test, apps.connections.open,
// chat.postMessage, users.info) with Slack's real envelopes
// ({"ok":false,"error":…} on HTTP 200, 429 with Retry-After) and the Socket
// Mode WebSocket (hello, events_api envelopes that must be acknowledged,
// disconnect, pings). Tests inject what people post, read what the bot
// sent, and script failures: rate limits, Slack errors, 5xx, refused
// tokens, dropped sockets.
package fakeslack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltgate/moltgate/internal/failqueue"
)

// The workspace the fake pretends to be, as auth.test reports it.
const (
	TeamID    = "T0FAKETEAM"
	TeamName  = "Fake Team"
	BotUserID = "U0FAKEBOT" // the bot's user id: what <@…> mentions name
	BotID     = "B0FAKEBOT" // the bot's bot id: set on messages the bot posts
	BotName   = "moltbot"
	AppID     = "A0FAKEAPP"
)

// PingInterval is how often the fake pings each socket, as Slack does; the
// slack-go client reconnects when it hears no ping for 30 s.
const PingInterval = time.Second

// Server is a running fake. Every method is safe for concurrent use.
type Server struct {
	// URL is the Web API base, with the trailing slash slack-go needs
	// ("http://127.0.0.1:port/api/").
	URL string
	// BotToken and AppToken are the tokens the fake accepts.
	BotToken string
	AppToken string

	srv    *httptest.Server
	ctx    context.Context // ends on cleanup, closing every socket
	cancel context.CancelFunc
	wg     sync.WaitGroup // socket handlers

	sendMu sync.Mutex // orders writes of envelopes across sockets

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every recorded change
	refuseBot bool
	refuseApp bool
	failures  failqueue.Queue[string, Failure]
	requests  []Request
	sent      []SentMessage
	users     map[string]string // user id → name, for users.info
	tickets   map[string]bool   // issued by apps.connections.open, not yet used
	sockets   []*socket         // every socket accepted, in order
	pending   []frame           // frames waiting for a socket
	envelopes []Envelope
	envIndex  map[string]int
	seq       int // for ts, envelope, ticket and event ids
}

// Request is one Web API call the fake received.
type Request struct {
	Method string     // "chat.postMessage"
	Token  string     // the token it carried (form "token" or Authorization: Bearer)
	Params url.Values // the form parameters, without "token"
}

// SentMessage is a message the bot posted with chat.postMessage.
type SentMessage struct {
	Channel  string
	ThreadTS string // empty when posted in the channel itself
	Text     string
	TS       string // the id the fake gave it
}

// Envelope is one Socket Mode envelope the fake sent, with its
// acknowledgement.
type Envelope struct {
	ID      string
	Type    string // "events_api", or "malformed"
	Socket  int    // which socket it went out on, from 1
	SentAt  time.Time
	AckedAt time.Time // zero until the client acknowledged it
}

// Failure is a scripted answer to a Web API call. The zero Failure lets
// the call through, so that FailNext can fail a later call rather than the
// next one.
type Failure struct {
	Status     int    // HTTP status; 0 means 200 (Slack's usual for errors)
	Error      string // Slack's error code for {"ok":false,"error":…}; empty with a 5xx sends an HTML page, as Slack does
	RetryAfter int    // seconds, sent as the Retry-After header
}

// RateLimited is Slack's answer to too many calls: HTTP 429, Retry-After
// and {"ok":false,"error":"ratelimited"}.
func RateLimited(retryAfter int) Failure {
	return Failure{Status: http.StatusTooManyRequests, Error: "ratelimited", RetryAfter: retryAfter}
}

// SlackError is a refusal Slack sends with HTTP 200, such as
// "channel_not_found", "not_in_channel" or "is_archived".
func SlackError(code string) Failure { return Failure{Error: code} }

// ServerError is an HTTP 5xx with an HTML body.
func ServerError(status int) Failure { return Failure{Status: status} }

// New starts a fake on loopback; it is closed on test cleanup, after the
// cleanups registered later (such as stopping an adapter) have run.
func New(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{
		BotToken: "xoxb-1111111111-2222222222-fakeBotTokenSecret",
		AppToken: "xapp-1-" + AppID + "-3333333333-fakeAppTokenSecret",
		changed:  make(chan struct{}),
		users:    map[string]string{},
		tickets:  map[string]bool{},
		envIndex: map[string]int{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/{method}", s.serveAPI)
	mux.HandleFunc("GET /api/{method}", s.serveAPI)
	mux.HandleFunc("GET /link/", s.serveSocket)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL + "/api/"
	tb.Cleanup(s.close)
	return s
}

func (s *Server) close() {
	s.mu.Lock()
	s.cancel() // under mu: serveSocket adds to wg only before this
	for _, sock := range s.sockets {
		sock.ws.CloseNow()
	}
	s.mu.Unlock()
	s.srv.Close()
	s.wg.Wait()
}

// RefuseBotToken makes every call with the bot token answer
// {"ok":false,"error":"invalid_auth"}, as for a revoked token.
func (s *Server) RefuseBotToken(refuse bool) {
	s.mu.Lock()
	s.refuseBot = refuse
	s.mu.Unlock()
}

// RefuseAppToken does the same for the app-level token
// (apps.connections.open).
func (s *Server) RefuseAppToken(refuse bool) {
	s.mu.Lock()
	s.refuseApp = refuse
	s.mu.Unlock()
}

// FailNext answers the next n calls of a Web API method with f, after
// the failures already scripted for it.
func (s *Server) FailNext(method string, n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures.Add(method, n, f)
}

// ClearFailures drops every scripted failure not used yet.
func (s *Server) ClearFailures() {
	s.mu.Lock()
	s.failures.Clear()
	s.mu.Unlock()
}

// AddUser makes users.info know a user by name.
func (s *Server) AddUser(id, name string) {
	s.mu.Lock()
	s.users[id] = name
	s.mu.Unlock()
}

// Requests returns the Web API calls received so far, of one method or of
// all when method is "".
func (s *Server) Requests(method string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.requests {
		if method == "" || r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

// Sent returns the messages the bot posted, in order.
func (s *Server) Sent() []SentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SentMessage(nil), s.sent...)
}

// WaitSent waits until the bot has posted at least n messages and returns
// them all; it fails the test after timeout.
func (s *Server) WaitSent(tb testing.TB, n int, timeout time.Duration) []SentMessage {
	tb.Helper()
	s.WaitFor(tb, timeout, fmt.Sprintf("%d messages sent", n), func() bool { return len(s.Sent()) >= n })
	return s.Sent()
}

// WaitFor waits until cond holds, checking it again on every change the
// fake records (a request, a socket, an acknowledgement); it fails the test
// after timeout. cond may call the Server's methods.
func (s *Server) WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("fakeslack: timed out after %s waiting for %s", timeout, what)
		}
	}
}

// notify wakes the waiters; s.mu must be held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// nextID returns a number unique within the fake; s.mu must be held.
func (s *Server) nextID() int {
	s.seq++
	return s.seq
}

// newTS returns a Slack message timestamp ("1700000000.000123"), unique
// and increasing; s.mu must be held.
func (s *Server) newTS() string {
	return fmt.Sprintf("%d.%06d", time.Now().Unix(), s.nextID())
}

// reply is a Web API answer: body nil sends an HTML error page.
type reply struct {
	status     int
	retryAfter int
	body       map[string]any
}

func slackError(code string) reply {
	return reply{status: http.StatusOK, body: map[string]any{"ok": false, "error": code}}
}

func ok(fields map[string]any) reply {
	fields["ok"] = true
	return reply{status: http.StatusOK, body: fields}
}

// serveAPI answers a Web API call the way slack.com/api does.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	method := r.PathValue("method")
	if err := r.ParseForm(); err != nil {
		writeReply(w, slackError("invalid_form_data"))
		return
	}
	token := r.Form.Get("token")
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		token = bearer
	}
	params := url.Values{}
	for k, v := range r.Form {
		if k != "token" {
			params[k] = v
		}
	}

	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: method, Token: token, Params: params})
	s.notify()
	answer, echo := s.answer(method, token, params)
	s.mu.Unlock()

	if echo != nil {
		s.deliver("events_api", eventCallback(echo))
	}
	writeReply(w, answer)
}

// answer decides the reply to a Web API call, and the message event a
// successful chat.postMessage echoes back over the socket (Slack sends an
// app subscribed to message events its own messages too, with its
// bot_id); s.mu must be held.
func (s *Server) answer(method, token string, params url.Values) (reply, map[string]any) {
	if f, _ := s.failures.Next(method); f != (Failure{}) { // a zero Failure lets the call through
		status := f.Status
		if status == 0 {
			status = http.StatusOK
		}
		r := reply{status: status, retryAfter: f.RetryAfter}
		if f.Error != "" {
			r.body = map[string]any{"ok": false, "error": f.Error}
		}
		return r, nil
	}
	if code := s.authError(method, token); code != "" {
		return slackError(code), nil
	}
	switch method {
	case "auth.test":
		return ok(map[string]any{
			"url": "https://fake-team.slack.com/", "team": TeamName, "user": BotName,
			"team_id": TeamID, "user_id": BotUserID, "bot_id": BotID, "is_enterprise_install": false,
		}), nil
	case "apps.connections.open":
		ticket := fmt.Sprintf("ticket-%d", s.nextID())
		s.tickets[ticket] = true
		wsURL := "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/link/?ticket=" + ticket + "&app_id=" + AppID
		return ok(map[string]any{"url": wsURL}), nil
	case "chat.postMessage":
		return s.postMessage(params)
	case "users.info":
		id := params.Get("user")
		name, known := s.users[id]
		if !known {
			return slackError("user_not_found"), nil
		}
		return ok(map[string]any{"user": map[string]any{
			"id": id, "team_id": TeamID, "name": name, "real_name": name, "is_bot": false,
			"profile": map[string]any{"display_name": name, "real_name": name},
		}}), nil
	}
	return slackError("unknown_method"), nil
}

// authError checks the token as Slack does: apps.connections.open wants the
// app-level token, every other method the bot token; s.mu must be held.
func (s *Server) authError(method, token string) string {
	wantApp := method == "apps.connections.open"
	switch {
	case token == "":
		return "not_authed"
	case token == s.AppToken && !wantApp, token == s.BotToken && wantApp:
		return "not_allowed_token_type"
	case token == s.BotToken && s.refuseBot, token == s.AppToken && s.refuseApp:
		return "invalid_auth"
	case token != s.BotToken && token != s.AppToken:
		return "invalid_auth"
	}
	return ""
}

// postMessage records a chat.postMessage; s.mu must be held.
func (s *Server) postMessage(params url.Values) (reply, map[string]any) {
	channel, text, thread := params.Get("channel"), params.Get("text"), params.Get("thread_ts")
	switch {
	case channel == "":
		return slackError("channel_not_found"), nil
	case text == "" && params.Get("blocks") == "" && params.Get("attachments") == "":
		return slackError("no_text"), nil
	case len([]rune(text)) > 40000:
		return slackError("msg_too_long"), nil
	}
	ts := s.newTS()
	s.sent = append(s.sent, SentMessage{Channel: channel, ThreadTS: thread, Text: text, TS: ts})
	message := map[string]any{
		"type": "message", "text": text, "user": BotUserID, "bot_id": BotID, "app_id": AppID,
		"ts": ts, "team": TeamID,
		"bot_profile": map[string]any{"id": BotID, "app_id": AppID, "name": BotName, "team_id": TeamID},
	}
	if thread != "" {
		message["thread_ts"] = thread
	}
	echo := map[string]any{"channel": channel, "channel_type": channelType(channel), "event_ts": ts}
	for k, v := range message {
		echo[k] = v
	}
	return ok(map[string]any{"channel": channel, "ts": ts, "message": message}), echo
}

func writeReply(w http.ResponseWriter, r reply) {
	if r.retryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(r.retryAfter))
	}
	if r.body == nil {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(r.status)
		fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>", r.status, http.StatusText(r.status))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(r.status)
	json.NewEncoder(w).Encode(r.body)
}

// channelType is what Slack puts in a message event's channel_type for a
// channel id: D… is a DM, G… a private channel, C… a public one.
func channelType(channel string) string {
	switch {
	case strings.HasPrefix(channel, "D"):
		return "im"
	case strings.HasPrefix(channel, "G"):
		return "group"
	}
	return "channel"
}
