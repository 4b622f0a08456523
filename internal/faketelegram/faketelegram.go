// Package faketelegram runs a loopback fake of the Telegram Bot API for
// tests: the real URL layout (`<URL>/bot<token>/<method>`), the real
// response envelope (`{"ok":true,"result":…}` or
// `{"ok":false,"error_code":…,"description":…,"parameters":{…}}` with the
// same HTTP status), a real getUpdates long poll with offset confirmation,
// webhook delivery with the secret-token header, and scripted failures
// (429 with retry_after, 5xx, dropped connections, 409 conflicts, a refused
// token). Tests inject what people send with Post, DM and InjectRaw and
// read what the bot did with Sent, ChatActions and Requests.
//
// It serves getMe, getUpdates, sendMessage, sendChatAction, setWebhook,
// deleteWebhook and getWebhookInfo, accepting parameters as a query
// string, JSON, URL-encoded or multipart form (go-telegram/bot sends
// multipart). Like Telegram it wants an https:// webhook URL on port 80,
// 88, 443 or 8443, but it also takes http:// on loopback, so a test can
// point the webhook at an httptest server.
package faketelegram

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/moltgate/moltgate/internal/failqueue"
)

// Defaults of the bot the fake pretends to be.
const (
	DefaultToken       = "123456789:AAHfakeTokenForTests_x-0123456789abcd"
	DefaultBotID       = 123456789
	DefaultBotUsername = "moltgate_test_bot"
	DefaultBotName     = "Moltgate Test"
)

// Telegram's descriptions for the conflicts getUpdates reports.
const (
	ConflictOtherPoller = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
	ConflictWebhook     = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)

// maxTextLength is Telegram's limit for a message text, in UTF-16 code
// units.
const maxTextLength = 4096

// webhookRetryDelay is how long the fake waits before delivering an update
// to a webhook again after a failure (Telegram waits longer; tests should
// not).
const webhookRetryDelay = 50 * time.Millisecond

// User is a Telegram account.
type User struct {
	ID        int64
	FirstName string
	LastName  string
	Username  string
	IsBot     bool
}

// Chat is a Telegram chat. Type is "private", "group", "supergroup" or
// "channel"; group ids are negative (-100… for supergroups).
type Chat struct {
	ID      int64
	Type    string
	Title   string
	IsForum bool
}

// Message is something a person sends to the bot, queued as an update by
// Post.
type Message struct {
	// Chat is where it was sent; the zero Chat is the private chat with
	// From.
	Chat Chat
	From User
	// Text is the message text, or the caption when Attachment is set.
	// Entities for @mentions and /commands are computed from it as
	// Telegram does.
	Text string
	// ThreadID puts the message in a forum topic (message_thread_id,
	// is_topic_message, and the chat becomes a forum).
	ThreadID int
	// ReplyTo is the id of a message in the chat that this one answers
	// (one injected earlier or one the bot sent).
	ReplyTo int
	// Attachment is "photo", "document", "sticker", "voice", "video",
	// "video_note", "audio" or "animation"; empty for a text message.
	Attachment string
	// Date is when it was sent; zero means now.
	Date time.Time
}

// Failure is a scripted answer for FailNext. The zero Failure lets the
// call through, so that a later call can be made to fail.
type Failure struct {
	Status      int    // HTTP status and error_code, such as 429, 403, 502
	Description string // Telegram's description; a default for Status when empty
	RetryAfter  int    // parameters.retry_after, seconds
	Body        string // when set, sent as is (text/html) instead of the JSON envelope, like a proxy's error page
	Drop        bool   // close the connection without an answer
}

// Request is one API call the fake received.
type Request struct {
	Method string            // as in the URL, such as "sendMessage"
	Path   string            // the URL path, token included
	Params map[string]string // parameters; JSON objects and numbers in their JSON text
}

// SentMessage is a message the bot sent with sendMessage.
type SentMessage struct {
	MessageID int
	ChatID    int64
	ThreadID  int
	ReplyTo   int // the message it answers; 0 also when sent without the reply because the original is unknown
	Text      string
	ParseMode string
}

// ChatAction is a sendChatAction call.
type ChatAction struct {
	ChatID   int64
	ThreadID int
	Action   string
}

// WebhookInfo is the webhook as the bot last set it.
type WebhookInfo struct {
	URL            string
	Secret         string
	AllowedUpdates []string
}

type queuedUpdate struct {
	id  int64
	raw json.RawMessage
}

// Server is a running fake Bot API. Its fields are fixed at New.
type Server struct {
	URL         string // the API URL to configure the adapter with (APIURL)
	Token       string // the only token it accepts
	BotID       int64
	BotUsername string
	BotName     string

	srv    *httptest.Server
	closed chan struct{}
	wg     sync.WaitGroup

	mu            sync.Mutex
	changed       chan struct{} // closed and replaced on every change, to wake long polls and waiters
	nextUpdateID  int64
	nextMessageID int
	updates       []queuedUpdate // not yet confirmed, in order
	confirmed     int64          // the highest offset a getUpdates call confirmed
	poll          chan struct{}  // closed to terminate the pending getUpdates with a 409
	conflict      bool
	refuse        bool
	failures      failqueue.Queue[string, Failure] // by lower-case method
	chats         map[int64]Chat
	messages      map[int64]map[int]json.RawMessage // chat → message id → message object
	requests      []Request
	sent          []SentMessage
	actions       []ChatAction
	webhook       WebhookInfo
	webhookError  string
	webhookErrAt  int64
}

// New starts a fake on loopback, closed when the test ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{
		Token:         DefaultToken,
		BotID:         DefaultBotID,
		BotUsername:   DefaultBotUsername,
		BotName:       DefaultBotName,
		closed:        make(chan struct{}),
		changed:       make(chan struct{}),
		nextUpdateID:  500000001,
		nextMessageID: 100,
		chats:         map[int64]Chat{},
		messages:      map[int64]map[int]json.RawMessage{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	ctx, cancel := context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.deliverWebhooks(ctx)
	tb.Cleanup(func() {
		close(s.closed)
		cancel()
		s.wg.Wait()
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
	return s
}

// BotUser is the bot's own account, as getMe answers it.
func (s *Server) BotUser() User {
	return User{ID: s.BotID, FirstName: s.BotName, Username: s.BotUsername, IsBot: true}
}

// --- injecting what people send ---

// DM queues a private text message from a user and returns its message id.
func (s *Server) DM(from User, text string) int {
	return s.Post(Message{From: from, Text: text})
}

// Post queues a message as an update (delivered by getUpdates, or pushed
// to the webhook when one is set) and returns its message id.
func (s *Server) Post(m Message) int {
	if m.Chat.ID == 0 {
		m.Chat = Chat{ID: m.From.ID, Type: "private"}
	}
	if m.Chat.Type == "" {
		m.Chat.Type = "supergroup"
	}
	if m.ThreadID != 0 {
		m.Chat.IsForum = true
	}
	if m.Date.IsZero() {
		m.Date = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chats[m.Chat.ID] = m.Chat
	id := s.newMessageID()
	msg := map[string]any{
		"message_id": id,
		"from":       userJSON(m.From),
		"chat":       chatJSON(m.Chat),
		"date":       m.Date.Unix(),
	}
	if m.ThreadID != 0 {
		msg["message_thread_id"] = m.ThreadID
		msg["is_topic_message"] = true
	}
	switch {
	case m.ReplyTo != 0:
		msg["reply_to_message"] = s.lookup(m.Chat.ID, m.ReplyTo)
	case m.ThreadID != 0:
		// In a forum topic every message answers the topic's first
		// (service) message unless it answers another one.
		msg["reply_to_message"] = map[string]any{
			"message_id": m.ThreadID, "message_thread_id": m.ThreadID, "is_topic_message": true,
			"from": userJSON(m.From), "chat": chatJSON(m.Chat), "date": m.Date.Unix() - 60,
			"forum_topic_created": map[string]any{"name": "Topic", "icon_color": 7322096},
		}
	}
	textField, entitiesField := "text", "entities"
	if m.Attachment != "" {
		textField, entitiesField = "caption", "caption_entities"
		for k, v := range attachmentJSON(m.Attachment, id) {
			msg[k] = v
		}
	}
	if m.Text != "" {
		msg[textField] = m.Text
		if ents := entities(m.Text); len(ents) > 0 {
			msg[entitiesField] = ents
		}
	}
	raw, _ := json.Marshal(msg)
	s.remember(m.Chat.ID, id, raw)
	s.queue(json.RawMessage(fmt.Sprintf(`{"update_id":%d,"message":%s}`, s.nextUpdateID, raw)))
	return id
}

// InjectRaw queues an update whose "message" is the given JSON text, as
// is: use it for a malformed update (`"not an object"`,
// `{"message_id":"seven"}`). It returns the update id.
func (s *Server) InjectRaw(message string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextUpdateID
	s.queue(json.RawMessage(fmt.Sprintf(`{"update_id":%d,"message":%s}`, id, message)))
	return id
}

// queue appends an update with the next update id. Callers hold s.mu.
func (s *Server) queue(raw json.RawMessage) {
	s.updates = append(s.updates, queuedUpdate{id: s.nextUpdateID, raw: raw})
	s.nextUpdateID++
	s.notify()
}

// notify wakes long polls, the webhook deliverer and waiters. Callers
// hold s.mu.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) newMessageID() int {
	s.nextMessageID++
	return s.nextMessageID
}

func (s *Server) remember(chat int64, id int, raw json.RawMessage) {
	if s.messages[chat] == nil {
		s.messages[chat] = map[int]json.RawMessage{}
	}
	s.messages[chat][id] = raw
}

// lookup returns a message of a chat for reply_to_message, or a bare stub
// when the fake does not know it.
func (s *Server) lookup(chat int64, id int) any {
	if raw, ok := s.messages[chat][id]; ok {
		return raw
	}
	return map[string]any{"message_id": id, "chat": chatJSON(s.chats[chat]), "date": time.Now().Unix()}
}

// --- scripting the server ---

// FailNext makes the next n calls of method (such as "sendMessage")
// answer with f instead of their usual answer, after the failures already
// scripted.
func (s *Server) FailNext(method string, n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures.Add(strings.ToLower(method), n, f)
}

// ClearFailures drops the failures FailNext scripted that have not
// happened yet.
func (s *Server) ClearFailures() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures.Clear()
}

// Forget drops what the fake recorded so far (requests, sent messages,
// chat actions, stored messages), so that a long benchmark measures the
// gateway's memory rather than the fake's.
func (s *Server) Forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests, s.sent, s.actions = nil, nil, nil
	s.messages = map[int64]map[int]json.RawMessage{}
}

// SetConflict makes getUpdates answer 409 "terminated by other getUpdates
// request", as when a second instance polls with the same token, until it
// is switched off.
func (s *Server) SetConflict(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conflict = on
	if on && s.poll != nil {
		close(s.poll)
		s.poll = nil
	}
}

// RefuseToken makes every call answer 401 Unauthorized, as when the token
// was revoked with @BotFather, until it is switched off.
func (s *Server) RefuseToken(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = on
}

// SetWebhook sets (or with url "" removes) the webhook as the bot's
// setWebhook would, for example to test an adapter returning to polling.
func (s *Server) SetWebhook(url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhook = WebhookInfo{URL: url, Secret: secret}
	s.notify()
}

// --- reading what the bot did ---

// Requests returns every API call received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// RequestsTo returns the calls of one method.
func (s *Server) RequestsTo(method string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if strings.EqualFold(r.Method, method) {
			out = append(out, r)
		}
	}
	return out
}

// Sent returns the messages the bot sent, in order.
func (s *Server) Sent() []SentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SentMessage(nil), s.sent...)
}

// ChatActions returns the sendChatAction calls that succeeded.
func (s *Server) ChatActions() []ChatAction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ChatAction(nil), s.actions...)
}

// Webhook returns the webhook as the bot last set it (URL "" when none).
func (s *Server) Webhook() WebhookInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.webhook
}

// Confirmed returns the highest offset a getUpdates call sent: every
// update with a smaller id is confirmed and will not be sent again.
func (s *Server) Confirmed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.confirmed
}

// Pending returns how many updates are queued and not yet confirmed.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.updates)
}

// WaitSent waits until the bot has sent at least n messages and returns
// them; it fails the test after timeout.
func (s *Server) WaitSent(tb testing.TB, n int, timeout time.Duration) []SentMessage {
	tb.Helper()
	s.Wait(tb, timeout, fmt.Sprintf("%d sent messages", n), func() bool { return len(s.sent) >= n })
	return s.Sent()
}

// WaitRequests waits until method has been called at least n times and
// returns those calls; it fails the test after timeout.
func (s *Server) WaitRequests(tb testing.TB, method string, n int, timeout time.Duration) []Request {
	tb.Helper()
	s.Wait(tb, timeout, fmt.Sprintf("%d %s calls", n, method), func() bool {
		count := 0
		for _, r := range s.requests {
			if strings.EqualFold(r.Method, method) {
				count++
			}
		}
		return count >= n
	})
	return s.RequestsTo(method)
}

// WaitConfirmed waits until every queued update is confirmed (a getUpdates
// call sent a larger offset, or the webhook accepted it); it fails the
// test after timeout.
func (s *Server) WaitConfirmed(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	s.Wait(tb, timeout, "every update confirmed", func() bool { return len(s.updates) == 0 })
}

// Wait waits until cond, called with the server's lock held (so it may
// read the server's state but not call its methods), is true; it fails the
// test after timeout, naming what.
func (s *Server) Wait(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, changed := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("faketelegram: timed out after %s waiting for %s", timeout, what)
		}
	}
}

// --- webhook ---

// PostWebhook sends one update to url as Telegram does, with secret in
// X-Telegram-Bot-Api-Secret-Token (none when secret is ""), and returns
// the HTTP status. The update is not queued: use it to test a webhook
// handler's answers, such as 401 to a wrong secret.
func PostWebhook(url, secret string, update []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(update))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// deliverWebhooks pushes queued updates to the webhook while one is set,
// one at a time and in order, as Telegram does: a 2xx answer confirms the
// update; anything else is recorded for getWebhookInfo and retried.
func (s *Server) deliverWebhooks(ctx context.Context) {
	defer s.wg.Done()
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		s.mu.Lock()
		hook, changed := s.webhook, s.changed
		var next *queuedUpdate
		if hook.URL != "" && len(s.updates) > 0 {
			u := s.updates[0]
			next = &u
		}
		s.mu.Unlock()
		if next == nil {
			select {
			case <-changed:
				continue
			case <-s.closed:
				return
			}
		}
		errMsg := s.post(ctx, client, hook, next.raw)
		s.mu.Lock()
		if errMsg == "" {
			if len(s.updates) > 0 && s.updates[0].id == next.id {
				s.updates = s.updates[1:]
			}
		} else {
			s.webhookError, s.webhookErrAt = errMsg, time.Now().Unix()
		}
		s.notify()
		s.mu.Unlock()
		if errMsg != "" {
			select {
			case <-time.After(webhookRetryDelay):
			case <-s.closed:
				return
			}
		}
	}
}

// post delivers one update and returns "" or Telegram's last_error_message
// for the failure.
func (s *Server) post(ctx context.Context, client *http.Client, hook WebhookInfo, raw []byte) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(raw))
	if err != nil {
		return "Bad webhook URL"
	}
	req.Header.Set("Content-Type", "application/json")
	if hook.Secret != "" {
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", hook.Secret)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "Connection refused"
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Sprintf("Wrong response from the webhook: %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return ""
}

// --- the API ---

// answer is what a method handler returns: a result, or an error code.
type answer struct {
	result      any
	description string // with result: a success description (setWebhook); with code: the error
	code        int
	retryAfter  int
}

func ok(result any) answer { return answer{result: result} }

func fail(code int, description string) answer { return answer{code: code, description: description} }

var pathRE = regexp.MustCompile(`^/bot([^/]+)/([A-Za-z]+)$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	m := pathRE.FindStringSubmatch(r.URL.Path)
	if m == nil {
		writeAnswer(w, fail(http.StatusNotFound, "Not Found"))
		return
	}
	token, method := m[1], m[2]
	params, err := parseParams(r)
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: method, Path: r.URL.Path, Params: params})
	s.notify()
	if token != s.Token || s.refuse {
		s.mu.Unlock()
		writeAnswer(w, fail(http.StatusUnauthorized, "Unauthorized"))
		return
	}
	if err != nil {
		s.mu.Unlock()
		writeAnswer(w, fail(http.StatusBadRequest, "Bad Request: "+err.Error()))
		return
	}
	key := strings.ToLower(method)
	if f, _ := s.failures.Next(key); f != (Failure{}) { // a zero Failure lets the call through
		s.mu.Unlock()
		writeFailure(w, f)
		return
	}
	if key == "getupdates" {
		s.mu.Unlock() // getUpdates waits, so it takes the lock itself
		writeAnswer(w, s.getUpdates(r.Context(), params))
		return
	}
	defer s.mu.Unlock()
	var a answer
	switch key {
	case "getme":
		a = ok(map[string]any{
			"id": s.BotID, "is_bot": true, "first_name": s.BotName, "username": s.BotUsername,
			"can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
			"can_connect_to_business": false, "has_main_web_app": false,
		})
	case "sendmessage":
		a = s.sendMessage(params)
	case "sendchataction":
		a = s.sendChatAction(params)
	case "setwebhook":
		a = s.setWebhook(params)
	case "deletewebhook":
		a = s.deleteWebhook(params)
	case "getwebhookinfo":
		a = s.getWebhookInfo()
	default:
		a = fail(http.StatusNotFound, "Not Found: method not found")
	}
	writeAnswer(w, a)
}

// getUpdates is a real long poll: it answers at once when updates at or
// after offset are queued, else holds the request until one is queued or
// timeout seconds pass. An offset confirms every update before it.
func (s *Server) getUpdates(ctx context.Context, p map[string]string) answer {
	offset, _ := strconv.ParseInt(p["offset"], 10, 64)
	limit, _ := strconv.Atoi(p["limit"])
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	timeout, _ := strconv.Atoi(p["timeout"])
	s.mu.Lock()
	if s.webhook.URL != "" {
		s.mu.Unlock()
		return fail(http.StatusConflict, ConflictWebhook)
	}
	if s.conflict {
		s.mu.Unlock()
		return fail(http.StatusConflict, ConflictOtherPoller)
	}
	if offset > s.confirmed {
		s.confirmed = offset
		for len(s.updates) > 0 && s.updates[0].id < offset {
			s.updates = s.updates[1:]
		}
		s.notify()
	}
	// A new poll terminates the pending one, as Telegram does.
	if s.poll != nil {
		close(s.poll)
	}
	mine := make(chan struct{})
	s.poll = mine
	s.mu.Unlock()

	expired := time.NewTimer(time.Duration(timeout) * time.Second)
	defer expired.Stop()
	done := timeout <= 0
	for {
		s.mu.Lock()
		var batch []json.RawMessage
		for _, u := range s.updates {
			if u.id >= offset && len(batch) < limit {
				batch = append(batch, u.raw)
			}
		}
		changed := s.changed
		if len(batch) > 0 || done {
			if s.poll == mine {
				s.poll = nil
			}
			s.mu.Unlock()
			if batch == nil {
				batch = []json.RawMessage{}
			}
			return ok(batch)
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-expired.C:
			done = true
		case <-mine:
			return fail(http.StatusConflict, ConflictOtherPoller)
		case <-ctx.Done():
			s.release(mine)
			return answer{}
		case <-s.closed:
			s.release(mine)
			return answer{}
		}
	}
}

func (s *Server) release(poll chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.poll == poll {
		s.poll = nil
	}
}

func (s *Server) sendMessage(p map[string]string) answer {
	chat, a, found := s.chat(p)
	if !found {
		return a
	}
	text := p["text"]
	if strings.TrimSpace(text) == "" {
		return fail(http.StatusBadRequest, "Bad Request: message text is empty")
	}
	if len(utf16.Encode([]rune(text))) > maxTextLength {
		return fail(http.StatusBadRequest, "Bad Request: message is too long")
	}
	if pm := p["parse_mode"]; pm != "" && pm != "HTML" && pm != "Markdown" && pm != "MarkdownV2" {
		return fail(http.StatusBadRequest, "Bad Request: unsupported parse_mode")
	}
	thread, a, found := s.thread(chat, p)
	if !found {
		return a
	}
	replyTo, allowWithout := 0, p["allow_sending_without_reply"] == "true"
	if rp := p["reply_parameters"]; rp != "" {
		var params struct {
			MessageID                int  `json:"message_id"`
			AllowSendingWithoutReply bool `json:"allow_sending_without_reply"`
		}
		if err := json.Unmarshal([]byte(rp), &params); err != nil {
			return fail(http.StatusBadRequest, "Bad Request: can't parse reply parameters JSON object")
		}
		replyTo, allowWithout = params.MessageID, params.AllowSendingWithoutReply
	} else if id := p["reply_to_message_id"]; id != "" {
		replyTo, _ = strconv.Atoi(id)
	}
	id := s.newMessageID()
	msg := map[string]any{
		"message_id": id,
		"from":       userJSON(s.BotUser()),
		"chat":       chatJSON(chat),
		"date":       time.Now().Unix(),
		"text":       text,
	}
	if thread != 0 {
		msg["message_thread_id"] = thread
		msg["is_topic_message"] = true
	}
	if replyTo != 0 {
		if orig, known := s.messages[chat.ID][replyTo]; known {
			msg["reply_to_message"] = orig
		} else if !allowWithout {
			return fail(http.StatusBadRequest, "Bad Request: message to be replied not found")
		} else {
			replyTo = 0
		}
	}
	raw, _ := json.Marshal(msg)
	s.remember(chat.ID, id, raw)
	s.sent = append(s.sent, SentMessage{MessageID: id, ChatID: chat.ID, ThreadID: thread, ReplyTo: replyTo, Text: text, ParseMode: p["parse_mode"]})
	s.notify()
	return ok(json.RawMessage(raw))
}

var chatActions = map[string]bool{
	"typing": true, "upload_photo": true, "record_video": true, "upload_video": true,
	"record_voice": true, "upload_voice": true, "upload_document": true, "choose_sticker": true,
	"find_location": true, "record_video_note": true, "upload_video_note": true,
}

func (s *Server) sendChatAction(p map[string]string) answer {
	chat, a, found := s.chat(p)
	if !found {
		return a
	}
	if !chatActions[p["action"]] {
		return fail(http.StatusBadRequest, "Bad Request: wrong parameter action in request")
	}
	thread, a, found := s.thread(chat, p)
	if !found {
		return a
	}
	s.actions = append(s.actions, ChatAction{ChatID: chat.ID, ThreadID: thread, Action: p["action"]})
	s.notify()
	return ok(true)
}

// chat finds the chat_id parameter's chat: the fake knows the chats that
// messages were posted in.
func (s *Server) chat(p map[string]string) (Chat, answer, bool) {
	raw := p["chat_id"]
	if raw == "" {
		return Chat{}, fail(http.StatusBadRequest, "Bad Request: chat_id is empty"), false
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	chat, known := s.chats[id]
	if err != nil || !known {
		return Chat{}, fail(http.StatusBadRequest, "Bad Request: chat not found"), false
	}
	return chat, answer{}, true
}

// thread checks message_thread_id: only forum chats have topics.
func (s *Server) thread(chat Chat, p map[string]string) (int, answer, bool) {
	raw := p["message_thread_id"]
	if raw == "" {
		return 0, answer{}, true
	}
	id, err := strconv.Atoi(raw)
	if err != nil || id <= 0 || !chat.IsForum {
		return 0, fail(http.StatusBadRequest, "Bad Request: message thread not found"), false
	}
	return id, answer{}, true
}

var secretRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

func (s *Server) setWebhook(p map[string]string) answer {
	hook := p["url"]
	if hook == "" {
		return s.deleteWebhook(p)
	}
	u, err := url.Parse(hook)
	loopback := err == nil && u.Scheme == "http" && isLoopback(u.Hostname())
	if err != nil || (u.Scheme != "https" && !loopback) || u.Host == "" {
		return fail(http.StatusBadRequest, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
	}
	if port := u.Port(); !loopback && port != "" && port != "443" && port != "80" && port != "88" && port != "8443" {
		return fail(http.StatusBadRequest, "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
	}
	if secret := p["secret_token"]; secret != "" && !secretRE.MatchString(secret) {
		return fail(http.StatusBadRequest, "Bad Request: bad webhook: secret token contains unallowed characters")
	}
	var allowed []string
	if au := p["allowed_updates"]; au != "" {
		if err := json.Unmarshal([]byte(au), &allowed); err != nil {
			return fail(http.StatusBadRequest, "Bad Request: can't parse allowed updates JSON object")
		}
	}
	if p["drop_pending_updates"] == "true" {
		s.updates = nil
	}
	s.webhook = WebhookInfo{URL: hook, Secret: p["secret_token"], AllowedUpdates: allowed}
	s.webhookError, s.webhookErrAt = "", 0
	s.notify()
	return answer{result: true, description: "Webhook was set"}
}

func (s *Server) deleteWebhook(p map[string]string) answer {
	if p["drop_pending_updates"] == "true" {
		s.updates = nil
	}
	if s.webhook.URL == "" {
		return answer{result: true, description: "Webhook is already deleted"}
	}
	s.webhook = WebhookInfo{}
	s.notify()
	return answer{result: true, description: "Webhook was deleted"}
}

func (s *Server) getWebhookInfo() answer {
	info := map[string]any{"url": s.webhook.URL, "has_custom_certificate": false, "pending_update_count": len(s.updates)}
	if s.webhook.URL != "" {
		info["max_connections"] = 40
		info["ip_address"] = "127.0.0.1"
		if len(s.webhook.AllowedUpdates) > 0 {
			info["allowed_updates"] = s.webhook.AllowedUpdates
		}
		if s.webhookError != "" {
			info["last_error_date"] = s.webhookErrAt
			info["last_error_message"] = s.webhookError
		}
	}
	return ok(info)
}

// --- wire format ---

func writeAnswer(w http.ResponseWriter, a answer) {
	if a.result == nil && a.code == 0 {
		return // the client went away
	}
	body := map[string]any{"ok": a.code == 0}
	status := http.StatusOK
	if a.code == 0 {
		body["result"] = a.result
		if a.description != "" {
			body["description"] = a.description
		}
	} else {
		status = a.code
		body["error_code"] = a.code
		body["description"] = a.description
		if a.retryAfter > 0 {
			body["parameters"] = map[string]any{"retry_after": a.retryAfter}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

var defaultDescriptions = map[int]string{
	http.StatusBadRequest:          "Bad Request",
	http.StatusUnauthorized:        "Unauthorized",
	http.StatusForbidden:           "Forbidden: bot was blocked by the user",
	http.StatusNotFound:            "Not Found",
	http.StatusConflict:            ConflictOtherPoller,
	http.StatusInternalServerError: "Internal Server Error",
	http.StatusBadGateway:          "Bad Gateway",
}

func writeFailure(w http.ResponseWriter, f Failure) {
	switch {
	case f.Drop:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case f.Body != "":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Status)
		fmt.Fprint(w, f.Body)
	default:
		desc := f.Description
		if desc == "" {
			desc = defaultDescriptions[f.Status]
		}
		if desc == "" && f.Status == http.StatusTooManyRequests {
			desc = fmt.Sprintf("Too Many Requests: retry after %d", f.RetryAfter)
		}
		writeAnswer(w, answer{code: f.Status, description: desc, retryAfter: f.RetryAfter})
	}
}

// parseParams reads a method's parameters from the query string and the
// body, whichever encoding the Bot API accepts was used. Values that are
// not strings in JSON (numbers, objects) keep their JSON text, as they
// arrive in a form.
func parseParams(r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range r.URL.Query() {
		out[k] = v[0]
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return out, fmt.Errorf("can't read the request body")
	}
	if len(body) == 0 {
		// go-telegram/bot sends an empty body, typed multipart, for a
		// method without parameters; Telegram takes it.
		return out, nil
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		var body map[string]json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return out, fmt.Errorf("can't parse JSON encoded request body")
		}
		for k, v := range body {
			var str string
			if json.Unmarshal(v, &str) == nil {
				out[k] = str
			} else {
				out[k] = string(v)
			}
		}
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return out, fmt.Errorf("can't parse form")
		}
		for k, v := range r.PostForm {
			out[k] = v[0]
		}
	case "multipart/form-data":
		if err := r.ParseMultipartForm(10 << 20); err != nil {
			return out, fmt.Errorf("can't parse multipart form")
		}
		for k, v := range r.MultipartForm.Value {
			out[k] = v[0]
		}
	}
	return out, nil
}

func userJSON(u User) map[string]any {
	m := map[string]any{"id": u.ID, "is_bot": u.IsBot, "first_name": u.FirstName}
	if u.LastName != "" {
		m["last_name"] = u.LastName
	}
	if u.Username != "" {
		m["username"] = u.Username
	}
	if !u.IsBot {
		m["language_code"] = "en"
	}
	return m
}

func chatJSON(c Chat) map[string]any {
	m := map[string]any{"id": c.ID, "type": c.Type}
	if c.Title != "" {
		m["title"] = c.Title
	}
	if c.IsForum {
		m["is_forum"] = true
	}
	return m
}

// attachmentJSON returns the fields Telegram sets for a kind of
// attachment.
func attachmentJSON(kind string, id int) map[string]any {
	file := func(extra map[string]any) map[string]any {
		m := map[string]any{
			"file_id":        fmt.Sprintf("AgACAgIAAxkBAAI%s%d", kind, id),
			"file_unique_id": fmt.Sprintf("AQAD%s%d", kind, id),
			"file_size":      20480,
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	switch kind {
	case "photo":
		return map[string]any{"photo": []any{
			file(map[string]any{"width": 90, "height": 60}),
			file(map[string]any{"width": 1280, "height": 853}),
		}}
	case "document":
		return map[string]any{"document": file(map[string]any{"file_name": "report.pdf", "mime_type": "application/pdf"})}
	case "sticker":
		return map[string]any{"sticker": file(map[string]any{"type": "regular", "width": 512, "height": 512, "is_animated": false, "is_video": false, "emoji": "👍"})}
	case "voice":
		return map[string]any{"voice": file(map[string]any{"duration": 3, "mime_type": "audio/ogg"})}
	case "video":
		return map[string]any{"video": file(map[string]any{"width": 640, "height": 360, "duration": 5, "mime_type": "video/mp4"})}
	case "video_note":
		return map[string]any{"video_note": file(map[string]any{"length": 240, "duration": 4})}
	case "audio":
		return map[string]any{"audio": file(map[string]any{"duration": 180, "performer": "Artist", "title": "Song", "mime_type": "audio/mpeg"})}
	case "animation":
		// Telegram also sets document for an animation, for old clients.
		anim := file(map[string]any{"width": 320, "height": 240, "duration": 2, "file_name": "cat.mp4", "mime_type": "video/mp4"})
		return map[string]any{"animation": anim, "document": anim}
	}
	panic("faketelegram: unknown attachment kind " + kind)
}

var (
	mentionRE = regexp.MustCompile(`@[A-Za-z0-9_]{5,32}`)
	commandRE = regexp.MustCompile(`/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{5,32})?`)
)

// entities finds @mentions and /commands as Telegram marks them, with
// offsets and lengths in UTF-16 code units.
func entities(text string) []map[string]any {
	var out []map[string]any
	add := func(kind string, re *regexp.Regexp) {
		for _, loc := range re.FindAllStringIndex(text, -1) {
			if loc[0] > 0 && !isBoundary(text[loc[0]-1]) {
				continue
			}
			if loc[1] < len(text) && !isBoundary(text[loc[1]]) {
				continue
			}
			out = append(out, map[string]any{
				"type":   kind,
				"offset": utf16Len(text[:loc[0]]),
				"length": utf16Len(text[loc[0]:loc[1]]),
			})
		}
	}
	add("mention", mentionRE)
	add("bot_command", commandRE)
	return out
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func isBoundary(b byte) bool {
	return b == ' ' || b == '\n' || b == '\t' || b == ',' || b == '.' || b == ':' || b == '!' || b == '?' || b >= 0x80
}

func utf16Len(s string) int { return len(utf16.Encode([]rune(s))) }
