package fakediscord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Gateway opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
const (
	opDispatch       = 0
	opHeartbeat      = 1
	opIdentify       = 2
	opPresenceUpdate = 3
	opVoiceState     = 4
	opResume         = 6
	opReconnect      = 7
	opRequestMembers = 8
	opInvalidSession = 9
	opHello          = 10
	opHeartbeatACK   = 11
)

// intentMessageContent is the privileged MESSAGE_CONTENT intent (1 << 15).
const intentMessageContent = 1 << 15

// frame is a gateway payload as Discord writes it: s and t are null except
// on dispatches.
type frame struct {
	Op int     `json:"op"`
	D  any     `json:"d"`
	S  *int64  `json:"s"`
	T  *string `json:"t"`
}

// session is a gateway session: its sequence and every dispatch, for
// RESUME to replay what a dropped connection missed.
type session struct {
	id   string
	seq  int64
	log  []logged
	conn *gwConn // the live connection, nil while the bot is away
}

type logged struct {
	seq   int64
	frame []byte
}

// gwConn is one gateway WebSocket connection.
type gwConn struct {
	ws             *websocket.Conn
	sess           *session // guarded by Server.mu; nil until IDENTIFY or RESUME succeeded
	closedByServer bool     // guarded by Server.mu
}

func (c *gwConn) write(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.writeRaw(data)
}

func (c *gwConn) writeRaw(data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, data)
}

// serveGateway runs one gateway connection, as wss://gateway.discord.gg
// does: HELLO first, then heartbeats, IDENTIFY or RESUME from the client.
func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	ws.SetReadLimit(1 << 20)
	c := &gwConn{ws: ws}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ws.CloseNow()
		return
	}
	s.conns[c] = true
	s.connections[r.URL.Path]++
	interval := s.heartbeatInterval
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer s.detach(c)

	q := r.URL.Query()
	if q.Get("v") != "10" {
		ws.Close(4012, "Invalid API version.")
		return
	}
	if enc := q.Get("encoding"); enc != "" && enc != "json" {
		ws.Close(4002, "Decode error.") // the fake speaks JSON only
		return
	}
	if c.write(frame{Op: opHello, D: map[string]int64{"heartbeat_interval": interval.Milliseconds()}}) != nil {
		return
	}
	for {
		_, data, err := ws.Read(context.Background())
		if err != nil {
			s.clientGone(c, err)
			return
		}
		var in struct {
			Op int             `json:"op"`
			D  json.RawMessage `json:"d"`
		}
		if json.Unmarshal(data, &in) != nil {
			ws.Close(4002, "Decode error.")
			return
		}
		switch in.Op {
		case opHeartbeat:
			s.mu.Lock()
			s.heartbeats++
			ack := !s.noHeartbeatACKs
			s.mu.Unlock()
			if ack {
				c.write(frame{Op: opHeartbeatACK})
			}
		case opIdentify:
			if !s.identify(c, in.D) {
				return
			}
		case opResume:
			if !s.resume(c, in.D) {
				return
			}
		case opPresenceUpdate, opVoiceState, opRequestMembers:
			if !s.identified(c) {
				ws.Close(4003, "Not authenticated.")
				return
			}
		default:
			ws.Close(4001, "Unknown opcode.")
			return
		}
	}
}

func (s *Server) identified(c *gwConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.sess != nil
}

// authenticate checks an IDENTIFY or RESUME token, closing the connection
// as Discord does when it is wrong or the connection already has a
// session.
func (s *Server) authenticate(c *gwConn, token string) bool {
	s.mu.Lock()
	already := c.sess != nil
	refused := s.refuseToken || token != s.Token
	s.mu.Unlock()
	switch {
	case already:
		c.ws.Close(4005, "Already authenticated.")
	case refused:
		c.ws.Close(4004, "Authentication failed.")
	default:
		return true
	}
	return false
}

// identify starts a session: READY, then GUILD_CREATE for the bot's guild.
func (s *Server) identify(c *gwConn, d json.RawMessage) bool {
	var id struct {
		Token   string `json:"token"`
		Intents int64  `json:"intents"`
	}
	if json.Unmarshal(d, &id) != nil {
		c.ws.Close(4002, "Decode error.")
		return false
	}
	s.mu.Lock()
	s.identifies++
	s.lastIntents = id.Intents
	disallowed := s.noContentIntent && id.Intents&intentMessageContent != 0
	s.mu.Unlock()
	if !s.authenticate(c, id.Token) {
		return false
	}
	if disallowed {
		c.ws.Close(4014, "Disallowed intent(s).")
		return false
	}

	sess := &session{id: randomHex(16)}
	s.dispatchMu.Lock()
	defer s.dispatchMu.Unlock()
	s.mu.Lock()
	s.sessions[sess.id] = sess
	s.current = sess
	sess.conn, c.sess = c, sess
	bot := s.users[s.BotID]
	s.mu.Unlock()

	ready := map[string]any{
		"v":                  10,
		"user":               map[string]any{"id": bot.ID, "username": bot.Username, "discriminator": "0", "global_name": nil, "avatar": nil, "bot": true, "verified": true, "mfa_enabled": false, "flags": 0},
		"guilds":             []map[string]any{{"id": s.GuildID, "unavailable": true}},
		"session_id":         sess.id,
		"resume_gateway_url": s.ResumeURL,
		"shard":              []int{0, 1},
		"application":        map[string]any{"id": s.BotID, "flags": 0},
		"private_channels":   []any{},
	}
	guild := map[string]any{
		"id": s.GuildID, "name": "Fake Guild", "owner_id": s.ids.next(), "unavailable": false,
		"member_count": 2, "large": false, "joined_at": discordTime(time.Now().Add(-time.Hour)),
		"roles": []any{}, "emojis": []any{}, "stickers": []any{}, "features": []any{},
		"members": []any{}, "voice_states": []any{}, "presences": []any{}, "threads": []any{},
		"channels": []map[string]any{{"id": s.GuildChannelID, "type": 0, "name": "general", "position": 0}},
	}
	for _, ev := range []struct {
		t string
		d any
	}{{"READY", ready}, {"GUILD_CREATE", guild}} {
		data, _ := json.Marshal(ev.d)
		if s.sendDispatch(sess, ev.t, data) != nil {
			return false
		}
	}
	return true
}

// resume reattaches a connection to its session and replays the
// dispatches after the client's seq, then RESUMED.
func (s *Server) resume(c *gwConn, d json.RawMessage) bool {
	var rs struct {
		Token     string `json:"token"`
		SessionID string `json:"session_id"`
		Seq       int64  `json:"seq"`
	}
	if json.Unmarshal(d, &rs) != nil {
		c.ws.Close(4002, "Decode error.")
		return false
	}
	s.mu.Lock()
	s.resumes++
	sess := s.sessions[rs.SessionID]
	s.mu.Unlock()
	if !s.authenticate(c, rs.Token) {
		return false
	}
	if sess == nil {
		// An unknown or expired session: Discord answers op 9 (not
		// resumable) and the client identifies again.
		return c.write(frame{Op: opInvalidSession, D: false}) == nil
	}

	s.dispatchMu.Lock()
	defer s.dispatchMu.Unlock()
	s.mu.Lock()
	if rs.Seq > sess.seq {
		s.mu.Unlock()
		c.ws.Close(4007, "Invalid seq.")
		return false
	}
	old := sess.conn
	if old != nil {
		old.closedByServer = true
	}
	sess.conn, c.sess = c, sess
	var missed [][]byte
	for _, l := range sess.log {
		if l.seq > rs.Seq {
			missed = append(missed, l.frame)
		}
	}
	sess.seq++
	seq := sess.seq
	s.mu.Unlock()
	if old != nil && old != c {
		old.ws.CloseNow() // the session moved to the new connection
	}
	for _, f := range missed {
		if c.writeRaw(f) != nil {
			return false
		}
	}
	t := "RESUMED"
	return c.write(frame{Op: opDispatch, D: map[string]any{}, S: &seq, T: &t}) == nil
}

// clientGone records how the bot ended a connection, unless the fake
// closed it.
func (s *Server) clientGone(c *gwConn, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closedByServer || s.closed {
		return
	}
	s.clientCloses = append(s.clientCloses, int(websocket.CloseStatus(err)))
}

// detach forgets a connection that ended, or that the fake is closing
// (which ClientCloses then leaves out); its session stays for a RESUME.
func (s *Server) detach(c *gwConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.closedByServer = true
	delete(s.conns, c)
	if c.sess != nil && c.sess.conn == c {
		c.sess.conn = nil
	}
}

// dispatch sends an event in the current session.
func (s *Server) dispatch(t string, d json.RawMessage) error {
	s.dispatchMu.Lock()
	defer s.dispatchMu.Unlock()
	s.mu.Lock()
	sess := s.current
	s.mu.Unlock()
	if sess == nil {
		return errors.New("the bot has no gateway session (it has not identified, or the session was invalidated)")
	}
	return s.sendDispatch(sess, t, d)
}

// sendDispatch numbers an event, keeps it for replay and writes it to the
// session's connection if there is one. The caller holds dispatchMu.
func (s *Server) sendDispatch(sess *session, t string, d json.RawMessage) error {
	s.mu.Lock()
	sess.seq++
	seq := sess.seq
	data, err := json.Marshal(frame{Op: opDispatch, D: d, S: &seq, T: &t})
	if err != nil {
		s.mu.Unlock()
		return err
	}
	sess.log = append(sess.log, logged{seq: seq, frame: data})
	c := sess.conn
	s.mu.Unlock()
	if c != nil {
		// A failed write leaves the event in the log: the bot gets it when
		// it resumes, as on Discord.
		c.writeRaw(data)
	}
	return nil
}

// liveConn returns the current session's connection, failing tb if
// there is none.
func (s *Server) liveConn(tb testing.TB) *gwConn {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == nil || s.current.conn == nil {
		tb.Fatalf("fakediscord: the bot has no live gateway connection")
	}
	return s.current.conn
}

// DropConnection cuts the bot's gateway connection without a close frame,
// as a network failure does. The session stays resumable, and messages
// injected before the bot resumes are replayed then.
func (s *Server) DropConnection(tb testing.TB) {
	tb.Helper()
	c := s.liveConn(tb)
	s.detach(c)
	c.ws.CloseNow()
}

// ExpireSession forgets the bot's session and cuts its connection, as
// when the bot was away too long: its RESUME is answered with op 9 (not
// resumable) and it must identify again.
func (s *Server) ExpireSession(tb testing.TB) {
	tb.Helper()
	c := s.liveConn(tb)
	s.mu.Lock()
	delete(s.sessions, c.sess.id)
	s.current = nil
	s.mu.Unlock()
	s.detach(c)
	c.ws.CloseNow()
}

// CloseGateway closes the bot's gateway connection with a close code, as
// Discord does (4000 unknown error, 4004 authentication failed, 4009
// session timed out…). After 4007 and 4009 the session is gone and the
// bot must identify again.
func (s *Server) CloseGateway(tb testing.TB, code int, reason string) {
	tb.Helper()
	c := s.liveConn(tb)
	s.mu.Lock()
	if code == 4007 || code == 4009 {
		delete(s.sessions, c.sess.id)
		s.current = nil
	}
	s.mu.Unlock()
	s.detach(c)
	c.ws.Close(websocket.StatusCode(code), reason)
}

// SendReconnect sends op 7 RECONNECT: the bot should reconnect and resume.
func (s *Server) SendReconnect(tb testing.TB) {
	tb.Helper()
	if err := s.liveConn(tb).write(frame{Op: opReconnect}); err != nil {
		tb.Fatalf("fakediscord: cannot send RECONNECT: %v", err)
	}
}

// InvalidateSession sends op 9 INVALID_SESSION. Unless resumable, the
// session is gone: the bot must identify again, and events until then are
// lost, as on Discord.
func (s *Server) InvalidateSession(tb testing.TB, resumable bool) {
	tb.Helper()
	c := s.liveConn(tb)
	if !resumable {
		s.mu.Lock()
		delete(s.sessions, c.sess.id)
		s.current = nil
		s.mu.Unlock()
	}
	if err := c.write(frame{Op: opInvalidSession, D: resumable}); err != nil {
		tb.Fatalf("fakediscord: cannot send INVALID_SESSION: %v", err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
