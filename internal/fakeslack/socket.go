package fakeslack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// socket is one Socket Mode WebSocket a client opened.
type socket struct {
	n       int // from 1, in the order they were accepted
	ws      *websocket.Conn
	greeted bool // hello sent: envelopes may go out on it
	open    bool // until its read loop ended
}

// frame is something the fake writes to the newest socket, in order.
type frame struct {
	envelopeID string // "" for frames that are not envelopes (disconnect, raw)
	data       []byte
}

// serveSocket accepts a Socket Mode WebSocket for a ticket that
// apps.connections.open issued; a ticket works once, as Slack's do.
func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	valid := s.tickets[ticket]
	delete(s.tickets, ticket)
	s.mu.Unlock()
	if !valid {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	// slack-go sends Origin: https://api.slack.com, which is not this host:
	// accept any origin, as Slack does.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}

	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		ws.CloseNow()
		return
	}
	s.wg.Add(2) // this handler and its pinger
	defer s.wg.Done()
	sock := &socket{n: len(s.sockets) + 1, ws: ws, open: true}
	s.sockets = append(s.sockets, sock)
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	s.greet(ctx, sock)
	go func() {
		defer s.wg.Done()
		ping(ctx, ws)
	}()
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			break
		}
		s.acknowledge(data)
	}
	ws.CloseNow()
	s.mu.Lock()
	sock.open = false
	s.notify()
	s.mu.Unlock()
}

// greet sends hello and then the envelopes that waited for a socket.
func (s *Server) greet(ctx context.Context, sock *socket) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	hello, _ := json.Marshal(map[string]any{
		"type": "hello", "num_connections": s.openSockets(),
		"debug_info":      map[string]any{"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": AppID},
	})
	s.mu.Unlock()
	if err := write(ctx, sock.ws, hello); err != nil {
		return
	}
	s.mu.Lock()
	sock.greeted = true
	pending := s.pending
	s.pending = nil
	s.notify()
	s.mu.Unlock()
	for i, f := range pending {
		if !s.writeFrame(ctx, sock, f) {
			s.mu.Lock()
			s.pending = append(pending[i:], s.pending...)
			s.mu.Unlock()
			return
		}
	}
}

// ping pings the socket every PingInterval, as Slack does.
func ping(ctx context.Context, ws *websocket.Conn) {
	t := time.NewTicker(PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			ws.Ping(pctx)
			cancel()
		}
	}
}

// acknowledge records a client's {"envelope_id":…} answer.
func (s *Server) acknowledge(data []byte) {
	var ack struct {
		EnvelopeID string `json:"envelope_id"`
	}
	if json.Unmarshal(data, &ack) != nil || ack.EnvelopeID == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, known := s.envIndex[ack.EnvelopeID]; known && s.envelopes[i].AckedAt.IsZero() {
		s.envelopes[i].AckedAt = time.Now()
		s.notify()
	}
}

// send writes a frame to the newest ready socket, or keeps it for the next
// one (as Slack holds events while an app has no connection).
func (s *Server) send(f frame) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	sock := s.newestReady()
	if sock == nil {
		s.pending = append(s.pending, f)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if !s.writeFrame(s.ctx, sock, f) {
		s.mu.Lock()
		s.pending = append(s.pending, f)
		s.mu.Unlock()
	}
}

// writeFrame writes f to sock, recording when an envelope went out (before
// the write, as the client may answer at once); it reports false when the
// socket is broken. s.sendMu must be held.
func (s *Server) writeFrame(ctx context.Context, sock *socket, f frame) bool {
	record := func(n int, at time.Time) {
		if f.envelopeID == "" {
			return
		}
		s.mu.Lock()
		e := &s.envelopes[s.envIndex[f.envelopeID]]
		e.Socket, e.SentAt = n, at
		s.notify()
		s.mu.Unlock()
	}
	record(sock.n, time.Now())
	if err := write(ctx, sock.ws, f.data); err != nil {
		record(0, time.Time{})
		return false
	}
	return true
}

func write(ctx context.Context, ws *websocket.Conn, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return ws.Write(ctx, websocket.MessageText, data)
}

// newestReady is the socket envelopes go to; s.mu must be held.
func (s *Server) newestReady() *socket {
	for i := len(s.sockets) - 1; i >= 0; i-- {
		if s.sockets[i].greeted && s.sockets[i].open {
			return s.sockets[i]
		}
	}
	return nil
}

// openSockets counts the sockets still open; s.mu must be held.
func (s *Server) openSockets() int {
	n := 0
	for _, sock := range s.sockets {
		if sock.open {
			n++
		}
	}
	return n
}

// deliver sends an envelope of the given type around payload and returns
// its envelope_id.
func (s *Server) deliver(typ string, payload any) string {
	s.mu.Lock()
	id := fmt.Sprintf("5f1c2a3b-0000-4000-8000-%012d", s.nextID())
	s.envIndex[id] = len(s.envelopes)
	s.envelopes = append(s.envelopes, Envelope{ID: id, Type: typ})
	s.mu.Unlock()
	if typ == "malformed" {
		typ = "events_api"
	}
	data, _ := json.Marshal(map[string]any{
		"envelope_id": id, "type": typ, "payload": payload,
		"accepts_response_payload": false, "retry_attempt": 0, "retry_reason": "",
	})
	s.send(frame{envelopeID: id, data: data})
	return id
}

// eventCallback wraps an event the way the Events API does.
func eventCallback(event map[string]any) map[string]any {
	return map[string]any{
		"token": "fake-verification-token", "team_id": TeamID, "context_team_id": TeamID,
		"api_app_id": AppID, "event": event, "type": "event_callback",
		"event_id": fmt.Sprintf("Ev%s", strings.ReplaceAll(fmt.Sprint(event["ts"]), ".", "")), "event_time": time.Now().Unix(),
		"authorizations": []map[string]any{{
			"enterprise_id": nil, "team_id": TeamID, "user_id": BotUserID, "is_bot": true, "is_enterprise_install": false,
		}},
		"is_ext_shared_channel": false, "event_context": "4-fake-event-context",
	}
}

// Message is a message a person posts in Slack, which the fake turns into
// the events Slack would deliver.
type Message struct {
	Channel      string // channel id: D… a DM, C… a public channel, G… a private one
	User         string // the sender's user id
	UserName     string // when set, users.info knows the sender by this name
	Text         string
	TS           string // the message's ts; a new one when empty
	ThreadTS     string // the thread's parent ts, for a reply in a thread
	ParentUserID string // the author of the thread's parent, which Slack sends with a reply
	Files        int    // attached files: the message gets subtype file_share
	Subtype      string // another subtype, such as "channel_join" or "message_changed"
	BotID        string // set for a message another bot posted
}

// InjectMessage delivers a "message" event (with channel_type, as Slack
// sends it to an app subscribed to message.im / message.channels) and
// returns m with TS filled in.
func (s *Server) InjectMessage(m Message) Message {
	m = s.prepare(m)
	s.deliver("events_api", eventCallback(m.event("message")))
	return m
}

// InjectAppMention delivers an "app_mention" event for m (which has no
// channel_type or subtype, as Slack sends it) and returns m with TS filled
// in. For the message and mention events of one post, pass the same TS.
func (s *Server) InjectAppMention(m Message) Message {
	m = s.prepare(m)
	s.deliver("events_api", eventCallback(m.event("app_mention")))
	return m
}

// InjectDM delivers a direct message from a user and returns its ts. The
// DM channel's id is the user's id with D for U.
func (s *Server) InjectDM(user, name, text string) string {
	return s.InjectMessage(Message{Channel: DMChannel(user), User: user, UserName: name, Text: text}).TS
}

// InjectChannelMessage delivers a channel message that does not mention
// the bot (in a thread when threadTS is set) and returns its ts.
func (s *Server) InjectChannelMessage(channel, user, name, text, threadTS string) string {
	return s.InjectMessage(Message{Channel: channel, User: user, UserName: name, Text: text, ThreadTS: threadTS}).TS
}

// InjectMention delivers what Slack sends when a person writes
// "<@bot> text" in a channel (in a thread when threadTS is set): a
// "message" event and then an "app_mention" event for the same ts. It
// returns that ts.
func (s *Server) InjectMention(channel, user, name, text, threadTS string) string {
	m := s.InjectMessage(Message{Channel: channel, User: user, UserName: name, Text: "<@" + BotUserID + "> " + text, ThreadTS: threadTS})
	return s.InjectAppMention(m).TS
}

// InjectAttachmentDM delivers a DM with files and no text and returns its
// ts.
func (s *Server) InjectAttachmentDM(user, name string, files int) string {
	return s.InjectMessage(Message{Channel: DMChannel(user), User: user, UserName: name, Files: files}).TS
}

// InjectMalformed delivers an events_api envelope whose event does not
// parse (ts and text of the wrong JSON types) and returns its envelope_id.
func (s *Server) InjectMalformed() string {
	return s.deliver("malformed", map[string]any{
		"type": "event_callback", "team_id": TeamID, "api_app_id": AppID,
		"event": map[string]any{"type": "message", "channel": "C0BROKEN", "user": "U0BROKEN", "ts": 12345, "text": []string{"not", "text"}},
	})
}

// DMChannel is the id the fake gives a user's DM with the bot.
func DMChannel(user string) string { return "D" + strings.TrimPrefix(user, "U") }

// prepare fills in a message's ts and registers its sender's name.
func (s *Server) prepare(m Message) Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.TS == "" {
		m.TS = s.newTS()
	}
	if m.UserName != "" {
		s.users[m.User] = m.UserName
	}
	return m
}

// event builds the Events API event Slack sends for m.
func (m Message) event(kind string) map[string]any {
	ev := map[string]any{
		"type": kind, "client_msg_id": "c1e4f7a0-" + strings.ReplaceAll(m.TS, ".", "-"),
		"text": m.Text, "user": m.User, "ts": m.TS, "team": TeamID, "channel": m.Channel, "event_ts": m.TS,
	}
	if kind == "message" {
		ev["channel_type"] = channelType(m.Channel)
	}
	if m.ThreadTS != "" {
		ev["thread_ts"] = m.ThreadTS
		if kind == "message" && m.ParentUserID != "" {
			ev["parent_user_id"] = m.ParentUserID
		}
	}
	if m.Files > 0 {
		var files []map[string]any
		for i := range m.Files {
			name := fmt.Sprintf("photo-%d.png", i+1)
			files = append(files, map[string]any{
				"id": fmt.Sprintf("F%s%d", strings.ReplaceAll(m.TS, ".", ""), i), "name": name, "title": name,
				"mimetype": "image/png", "filetype": "png", "size": 1024, "user": m.User,
				"url_private": "https://files.slack.com/files-pri/" + TeamID + "/" + name,
			})
		}
		ev["files"], ev["upload"] = files, false
		if kind == "message" {
			ev["subtype"] = "file_share"
		}
	}
	if m.BotID != "" {
		ev["bot_id"] = m.BotID
	}
	if m.Subtype == "message_changed" {
		edited := map[string]any{"type": "message", "user": m.User, "text": m.Text, "ts": m.TS,
			"edited": map[string]any{"user": m.User, "ts": m.TS}}
		return map[string]any{
			"type": "message", "subtype": "message_changed", "hidden": true, "channel": m.Channel,
			"channel_type": channelType(m.Channel), "ts": m.TS, "event_ts": m.TS,
			"message": edited, "previous_message": map[string]any{"type": "message", "user": m.User, "text": "before", "ts": m.TS},
		}
	}
	if m.Subtype != "" {
		ev["subtype"] = m.Subtype
	}
	return ev
}

// SendRaw writes a frame as it is to the newest socket (or the next one),
// such as text that is not JSON.
func (s *Server) SendRaw(data string) { s.send(frame{data: []byte(data)}) }

// Disconnect sends the newest socket a "disconnect" envelope with a reason
// such as "refresh_requested", "warning" or "link_disabled", as Slack does
// before it closes a connection; the client should open a new one.
func (s *Server) Disconnect(tb testing.TB, reason string) {
	tb.Helper()
	data, _ := json.Marshal(map[string]any{
		"type": "disconnect", "reason": reason, "debug_info": map[string]any{"host": "applink-fake"},
	})
	sock := s.newest(tb)
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	write(s.ctx, sock.ws, data)
}

// DropSocket closes the newest socket's TCP connection without a close
// frame, like a network failure.
func (s *Server) DropSocket(tb testing.TB) {
	tb.Helper()
	s.newest(tb).ws.CloseNow()
}

func (s *Server) newest(tb testing.TB) *socket {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	sock := s.newestReady()
	if sock == nil {
		tb.Fatal("fakeslack: no socket is open")
	}
	return sock
}

// Sockets returns how many Socket Mode WebSockets have been opened (hello
// sent) so far, and how many of them are still open.
func (s *Server) Sockets() (opened, open int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sock := range s.sockets {
		if sock.greeted {
			opened++
		}
	}
	return opened, s.openSockets()
}

// WaitSocket waits until the n-th socket has been greeted with hello and
// is open; it fails the test after timeout.
func (s *Server) WaitSocket(tb testing.TB, n int, timeout time.Duration) {
	tb.Helper()
	s.WaitFor(tb, timeout, fmt.Sprintf("socket %d to be ready", n), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.sockets) >= n && s.sockets[n-1].greeted && s.sockets[n-1].open
	})
}

// Envelopes returns every envelope sent or waiting for a socket (SentAt
// zero), with its acknowledgement.
func (s *Server) Envelopes() []Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Envelope(nil), s.envelopes...)
}

// WaitAllAcked waits until every envelope has been sent and acknowledged;
// it fails the test after timeout.
func (s *Server) WaitAllAcked(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	s.WaitFor(tb, timeout, "every envelope to be acknowledged", func() bool {
		for _, e := range s.Envelopes() {
			if e.AckedAt.IsZero() {
				return false
			}
		}
		return true
	})
}

// NotAckedWithin returns the envelopes sent more than d ago that were not
// acknowledged within d of being sent: the ones Slack would count as
// failed deliveries (its deadline is 3 s) and send again.
func (s *Server) NotAckedWithin(d time.Duration) []string {
	var late []string
	now := time.Now()
	for _, e := range s.Envelopes() {
		if e.SentAt.IsZero() {
			continue
		}
		acked := e.AckedAt
		if acked.IsZero() {
			acked = now
		}
		if acked.Sub(e.SentAt) > d {
			late = append(late, e.ID)
		}
	}
	return late
}
