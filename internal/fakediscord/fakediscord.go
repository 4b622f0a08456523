// Package fakediscord runs a loopback Discord for tests: the REST API a bot
// uses (/api/v10/gateway/bot, /users/@me, /channels/{id}/messages,
// /channels/{id}/typing) with Discord's JSON bodies, error bodies and
// rate-limit headers, and a gateway WebSocket speaking the real protocol
// (JSON encoding, no compression): HELLO, heartbeats and their ACKs,
// IDENTIFY → READY + GUILD_CREATE, numbered dispatches, RESUME replaying
// what a dropped connection missed, INVALID_SESSION, RECONNECT and close
// codes such as 4004 for a refused token.
//
// A test starts one with New, points the adapter at URL (REST) and lets it
// discover GatewayURL through GET /api/v10/gateway/bot, then drives it:
// DM, GuildMessage and Inject put messages on the gateway, Sent and
// WaitSent return what the bot posted, FailNext makes REST calls fail,
// DropConnection, SendReconnect, InvalidateSession and CloseGateway
// exercise the reconnect paths, and RefuseToken rejects the bot token.
package fakediscord

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltgate/moltgate/internal/failqueue"
)

// Route names a REST call, for FailNext and SetRateLimit. The values are
// the method and Discord's route template.
type Route string

// The REST routes the fake serves.
const (
	RouteGatewayBot    Route = "GET /gateway/bot"
	RouteUsersMe       Route = "GET /users/@me"
	RouteCreateMessage Route = "POST /channels/{channel.id}/messages"
	RouteTyping        Route = "POST /channels/{channel.id}/typing"
)

// Failure is an error answer to inject with FailNext. The zero Failure
// lets the call through, so that FailNext can fail a later call rather
// than the next one. Code and Message default to what Discord answers with that status (429: "You are being
// rate limited.", 403: Missing Permissions 50013, 404: Unknown Channel
// 10003, 400: Invalid Form Body 50035, 5xx: "500: Internal Server Error").
type Failure struct {
	Status     int
	RetryAfter time.Duration // 429 only: retry_after in the body, Retry-After and X-RateLimit-Reset-After headers
	Global     bool          // 429 only: a global rate limit
	Code       int
	Message    string
}

// Request is one REST request the fake received.
type Request struct {
	Method string
	Path   string // including /api/v10
	Header http.Header
	Body   []byte
	Status int // the status the fake answered
}

// SentMessage is a message the bot posted with POST /channels/{id}/messages.
type SentMessage struct {
	ID        string
	ChannelID string
	Content   string
	// ReplyTo is message_reference.message_id, "" when not a reply.
	ReplyTo string
	// FailIfNotExists is message_reference.fail_if_not_exists as sent (nil
	// when absent: Discord then defaults to true).
	FailIfNotExists *bool
	// AllowedMentions is the allowed_mentions object as sent (nil when
	// absent).
	AllowedMentions json.RawMessage
}

// Server is a running fake Discord. Its exported fields are fixed at New;
// everything else goes through methods, which are safe for concurrent use.
type Server struct {
	// URL is the REST base to give the adapter (its APIURL): requests go to
	// URL + "/api/v10/...".
	URL string
	// GatewayURL is the gateway WebSocket, as GET /api/v10/gateway/bot
	// reports it.
	GatewayURL string
	// ResumeURL is the resume_gateway_url READY hands out: the same server
	// under another path, so tests can see that a RESUME went there.
	ResumeURL string
	// Token is the bot token the fake accepts, shaped like Discord's:
	// base64(BotID) "." timestamp "." signature.
	Token string
	// BotID and BotName are the bot user's id and username (READY's user,
	// GET /users/@me).
	BotID   string
	BotName string
	// GuildID is a guild the bot is in (READY and GUILD_CREATE list it);
	// GuildChannelID is its text channel, where GuildMessage posts.
	GuildID        string
	GuildChannelID string

	tb   testing.TB // the test given to New: the Inject family fails it
	http *httptest.Server
	ids  idGenerator
	wg   sync.WaitGroup // gateway connection handlers

	// dispatchMu orders dispatches: a sequence number is assigned and the
	// frame written under it, so frames reach the bot in sequence order,
	// and a RESUME's replay is not interleaved with new dispatches.
	dispatchMu sync.Mutex

	mu                sync.Mutex
	closed            bool
	refuseToken       bool
	noContentIntent   bool
	noHeartbeatACKs   bool
	heartbeatInterval time.Duration
	users             map[string]user    // id → user, for mentions
	dmChannels        map[string]string  // user id → DM channel id
	channels          map[string]string  // channel id → guild id ("" for DMs)
	messages          map[string]message // id → message, for replies
	sent              []SentMessage
	typing            []string
	requests          []Request
	failures          failqueue.Queue[Route, Failure]
	limits            map[Route]rateLimit
	windows           map[string]*window // route + channel → current window
	conns             map[*gwConn]bool
	sessions          map[string]*session
	current           *session // the latest identified session
	identifies        int
	resumes           int
	heartbeats        int
	connections       map[string]int // path → WebSocket connections accepted
	clientCloses      []int          // how the bot's connections ended
	lastIntents       int64
}

// New starts a fake Discord on loopback, closed when the test ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{
		tb:                tb,
		BotName:           "moltbot",
		heartbeatInterval: 41250 * time.Millisecond, // what Discord sends
		users:             map[string]user{},
		dmChannels:        map[string]string{},
		channels:          map[string]string{},
		messages:          map[string]message{},
		limits:            map[Route]rateLimit{},
		windows:           map[string]*window{},
		conns:             map[*gwConn]bool{},
		sessions:          map[string]*session{},
		connections:       map[string]int{},
	}
	s.BotID = s.ids.next()
	s.GuildID = s.ids.next()
	s.GuildChannelID = s.ids.next()
	s.Token = MakeToken(s.BotID)
	s.users[s.BotID] = user{ID: s.BotID, Username: s.BotName, Discriminator: "0", Bot: true}
	s.channels[s.GuildChannelID] = s.GuildID

	mux := http.NewServeMux()
	s.routes(mux)
	s.http = httptest.NewServer(mux)
	s.URL = s.http.URL
	ws := "ws" + strings.TrimPrefix(s.http.URL, "http")
	s.GatewayURL = ws + "/gateway"
	s.ResumeURL = ws + "/resume"
	tb.Cleanup(s.close)
	return s
}

// MakeToken returns a token shaped like a Discord bot token for the
// application id: base64(id) "." a timestamp part "." a random signature.
func MakeToken(appID string) string {
	sig := make([]byte, 27)
	rand.Read(sig)
	return base64.RawStdEncoding.EncodeToString([]byte(appID)) + ".GaKe01." +
		base64.RawURLEncoding.EncodeToString(sig)
}

func (s *Server) close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*gwConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.ws.CloseNow()
	}
	s.http.Close()
	s.wg.Wait()
}

// RefuseToken makes the fake refuse the bot token: REST calls answer 401
// and IDENTIFY or RESUME is closed with 4004, as when a token was reset.
func (s *Server) RefuseToken(refuse bool) {
	s.mu.Lock()
	s.refuseToken = refuse
	s.mu.Unlock()
}

// DisallowMessageContent makes IDENTIFY with the privileged Message
// Content intent fail with close code 4014, as when the intent is not
// enabled in the developer portal.
func (s *Server) DisallowMessageContent(disallow bool) {
	s.mu.Lock()
	s.noContentIntent = disallow
	s.mu.Unlock()
}

// SetHeartbeatInterval sets the heartbeat_interval later HELLOs announce
// (Discord's 41.25 s by default).
func (s *Server) SetHeartbeatInterval(d time.Duration) {
	s.mu.Lock()
	s.heartbeatInterval = d
	s.mu.Unlock()
}

// StopHeartbeatACKs makes the gateway stop (or resume) acknowledging
// heartbeats, as a zombie connection does.
func (s *Server) StopHeartbeatACKs(stop bool) {
	s.mu.Lock()
	s.noHeartbeatACKs = stop
	s.mu.Unlock()
}

// FailNext makes the next n calls of route answer with f instead.
func (s *Server) FailNext(route Route, n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures.Add(route, n, f)
}

// ClearFailures drops the failures FailNext queued and not yet served.
func (s *Server) ClearFailures() {
	s.mu.Lock()
	s.failures.Clear()
	s.mu.Unlock()
}

// SetRateLimit enforces Discord's per-channel rate limit on route: n calls
// per window for each channel, answered 429 beyond that, with the
// X-RateLimit-* headers counting down. Without it the limit is 1,000 per
// 5 s, so tests never hit it by accident.
func (s *Server) SetRateLimit(route Route, n int, window time.Duration) {
	s.mu.Lock()
	s.limits[route] = rateLimit{n: n, window: window}
	s.mu.Unlock()
}

// AddChannel makes a channel known, in guildID ("" for a DM channel), so
// the bot may post in it; channels that messages were injected in are
// known already. Posting to an unknown channel answers 404 Unknown Channel.
func (s *Server) AddChannel(channelID, guildID string) {
	s.mu.Lock()
	s.channels[channelID] = guildID
	s.mu.Unlock()
}

// DMChannel returns the id of the DM channel between the bot and a user,
// creating it.
func (s *Server) DMChannel(userID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dmChannelLocked(userID)
}

func (s *Server) dmChannelLocked(userID string) string {
	id, ok := s.dmChannels[userID]
	if !ok {
		id = s.ids.next()
		s.dmChannels[userID] = id
		s.channels[id] = ""
	}
	return id
}

// Sent returns the messages the bot posted so far, in order.
func (s *Server) Sent() []SentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SentMessage(nil), s.sent...)
}

// WaitSent waits until the bot posted at least n messages and returns
// them, failing the test after timeout.
func (s *Server) WaitSent(tb testing.TB, n int, timeout time.Duration) []SentMessage {
	tb.Helper()
	var sent []SentMessage
	s.waitFor(tb, timeout, fmt.Sprintf("%d sent messages", n), func() bool {
		sent = s.Sent()
		return len(sent) >= n
	})
	return sent
}

// Typing returns the channel ids of the typing indicators the bot
// triggered, in order.
func (s *Server) Typing() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.typing...)
}

// Requests returns every REST request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Identifies counts IDENTIFY payloads received (accepted or not).
func (s *Server) Identifies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identifies
}

// Resumes counts RESUME payloads received (accepted or not).
func (s *Server) Resumes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumes
}

// Heartbeats counts heartbeats (op 1) received.
func (s *Server) Heartbeats() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heartbeats
}

// Connections counts the gateway WebSocket connections accepted on a path:
// "/gateway" (GatewayURL) or "/resume" (ResumeURL).
func (s *Server) Connections(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections[path]
}

// ClientCloses returns how each gateway connection the bot ended itself
// ended, in order: the close code it sent (1000 when it shut down
// politely), or -1 when it cut the connection without a close frame.
// Connections the fake closed are not listed.
func (s *Server) ClientCloses() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.clientCloses...)
}

// Intents returns the intents of the last IDENTIFY.
func (s *Server) Intents() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastIntents
}

// WaitReady waits until the bot holds a live, identified or resumed
// gateway session (so injected messages reach it at once), failing the
// test after timeout.
func (s *Server) WaitReady(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	s.waitFor(tb, timeout, "a ready gateway session", s.ready)
}

func (s *Server) ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current != nil && s.current.conn != nil
}

// waitFor polls cond until it holds, failing tb after timeout.
func (s *Server) waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("fakediscord: timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// idGenerator makes snowflakes: milliseconds since Discord's epoch in the
// top bits, always increasing.
type idGenerator struct {
	mu   sync.Mutex
	last uint64
}

const discordEpochMS = 1420070400000

func (g *idGenerator) next() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	id := uint64(time.Now().UnixMilli()-discordEpochMS) << 22
	if id <= g.last {
		id = g.last + 1
	}
	g.last = id
	return strconv.FormatUint(id, 10)
}
