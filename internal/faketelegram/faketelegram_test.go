package faketelegram_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moltgate/moltgate/internal/faketelegram"
)

const wait = 5 * time.Second

type envelope struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  *struct {
		RetryAfter int `json:"retry_after"`
	} `json:"parameters"`
}

// call makes a Bot API call with URL-encoded parameters and decodes the
// envelope, checking the HTTP status matches error_code.
func call(t *testing.T, s *faketelegram.Server, token, method string, params url.Values) envelope {
	t.Helper()
	resp, err := http.PostForm(s.URL+"/bot"+token+"/"+method, params)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q, want application/json", method, ct)
	}
	var env envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	want := http.StatusOK
	if !env.OK {
		want = env.ErrorCode
	}
	if resp.StatusCode != want {
		t.Fatalf("%s: HTTP %d with error_code %d", method, resp.StatusCode, env.ErrorCode)
	}
	return env
}

type update struct {
	UpdateID int64           `json:"update_id"`
	Message  json.RawMessage `json:"message"`
}

func updates(t *testing.T, env envelope) []update {
	t.Helper()
	if !env.OK {
		t.Fatalf("getUpdates failed: %d %s", env.ErrorCode, env.Description)
	}
	var out []update
	if err := json.Unmarshal(env.Result, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

var alice = faketelegram.User{ID: 1001, FirstName: "Alice", Username: "alice"}

func TestServer_Auth(t *testing.T) {
	s := faketelegram.New(t)
	env := call(t, s, "123456789:wrong", "getMe", nil)
	if env.OK || env.ErrorCode != 401 || env.Description != "Unauthorized" {
		t.Errorf("wrong token: got %+v, want 401 Unauthorized", env)
	}
	env = call(t, s, s.Token, "getMe", nil)
	var me struct {
		ID       int64  `json:"id"`
		IsBot    bool   `json:"is_bot"`
		Username string `json:"username"`
	}
	json.Unmarshal(env.Result, &me)
	if !env.OK || me.ID != s.BotID || !me.IsBot || me.Username != s.BotUsername {
		t.Errorf("getMe: got %+v %s", env, env.Result)
	}
	s.RefuseToken(true)
	if env := call(t, s, s.Token, "getMe", nil); env.ErrorCode != 401 {
		t.Errorf("refused token: got %+v, want 401", env)
	}
	s.RefuseToken(false)
	if env := call(t, s, s.Token, "noSuchMethod", nil); env.ErrorCode != 404 {
		t.Errorf("unknown method: got %+v, want 404", env)
	}
	resp, err := http.Get(s.URL + "/getMe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("path without /bot<token>: HTTP %d, want 404", resp.StatusCode)
	}
}

func TestServer_GetUpdates_Offset(t *testing.T) {
	s := faketelegram.New(t)
	s.DM(alice, "one")
	s.DM(alice, "two")
	got := updates(t, call(t, s, s.Token, "getUpdates", nil))
	if len(got) != 2 || got[1].UpdateID != got[0].UpdateID+1 {
		t.Fatalf("got %d updates %+v, want 2 in sequence", len(got), got)
	}
	// Not confirmed: they come again.
	again := updates(t, call(t, s, s.Token, "getUpdates", nil))
	if len(again) != 2 || again[0].UpdateID != got[0].UpdateID {
		t.Fatalf("unconfirmed updates: got %+v, want the same two again", again)
	}
	// offset confirms everything before it.
	next := strconv.FormatInt(got[0].UpdateID+1, 10)
	rest := updates(t, call(t, s, s.Token, "getUpdates", url.Values{"offset": {next}}))
	if len(rest) != 1 || rest[0].UpdateID != got[1].UpdateID {
		t.Fatalf("after offset %s: got %+v, want only the second", next, rest)
	}
	if s.Pending() != 1 || s.Confirmed() != got[0].UpdateID+1 {
		t.Errorf("Pending %d, Confirmed %d", s.Pending(), s.Confirmed())
	}
	none := updates(t, call(t, s, s.Token, "getUpdates", url.Values{"offset": {strconv.FormatInt(got[1].UpdateID+1, 10)}}))
	if len(none) != 0 || s.Pending() != 0 {
		t.Errorf("after confirming all: got %+v, pending %d", none, s.Pending())
	}
	if env := call(t, s, s.Token, "getUpdates", url.Values{"offset": {"0"}}); string(env.Result) != "[]" {
		t.Errorf("an empty answer is %s, want []", env.Result)
	}
}

func TestServer_GetUpdates_LongPoll(t *testing.T) {
	s := faketelegram.New(t)
	result := make(chan []update, 1)
	go func() {
		var env envelope
		resp, err := http.PostForm(s.URL+"/bot"+s.Token+"/getUpdates", url.Values{"timeout": {"10"}})
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&env)
			resp.Body.Close()
		}
		var us []update
		json.Unmarshal(env.Result, &us)
		result <- us
	}()
	s.WaitRequests(t, "getUpdates", 1, wait)
	select {
	case us := <-result:
		t.Fatalf("the long poll answered %+v before any update", us)
	default:
	}
	s.DM(alice, "wake up")
	select {
	case us := <-result:
		if len(us) != 1 || !strings.Contains(string(us[0].Message), `"text":"wake up"`) {
			t.Fatalf("got %+v", us)
		}
	case <-time.After(wait):
		t.Fatal("the long poll did not answer when an update came")
	}
}

func TestServer_GetUpdates_Conflicts(t *testing.T) {
	s := faketelegram.New(t)
	s.SetConflict(true)
	env := call(t, s, s.Token, "getUpdates", nil)
	if env.ErrorCode != 409 || env.Description != faketelegram.ConflictOtherPoller {
		t.Errorf("conflict: got %+v", env)
	}
	s.SetConflict(false)

	// A second poller terminates the first one's pending request.
	first := make(chan envelope, 1)
	go func() {
		resp, err := http.PostForm(s.URL+"/bot"+s.Token+"/getUpdates", url.Values{"timeout": {"10"}})
		var env envelope
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&env)
			resp.Body.Close()
		}
		first <- env
	}()
	s.WaitRequests(t, "getUpdates", 2, wait)
	call(t, s, s.Token, "getUpdates", url.Values{"timeout": {"0"}})
	if env := <-first; env.ErrorCode != 409 {
		t.Errorf("the terminated poll got %+v, want 409", env)
	}

	s.SetWebhook("https://example.test/hook", "s3cret")
	if env := call(t, s, s.Token, "getUpdates", nil); env.ErrorCode != 409 || env.Description != faketelegram.ConflictWebhook {
		t.Errorf("with a webhook: got %+v", env)
	}
}

func TestServer_FailNext(t *testing.T) {
	s := faketelegram.New(t)
	s.DM(alice, "hi")
	s.FailNext("sendMessage", 1, faketelegram.Failure{Status: 429, RetryAfter: 3})
	params := url.Values{"chat_id": {"1001"}, "text": {"hello"}}
	env := call(t, s, s.Token, "sendMessage", params)
	if env.ErrorCode != 429 || env.Description != "Too Many Requests: retry after 3" || env.Parameters == nil || env.Parameters.RetryAfter != 3 {
		t.Errorf("429: got %+v", env)
	}
	if env := call(t, s, s.Token, "sendMessage", params); !env.OK {
		t.Errorf("after the failure: got %+v", env)
	}
	s.FailNext("sendMessage", 1, faketelegram.Failure{Status: 502, Body: "<html>bad gateway</html>"})
	resp, err := http.PostForm(s.URL+"/bot"+s.Token+"/sendMessage", params)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || string(body) != "<html>bad gateway</html>" {
		t.Errorf("raw body failure: HTTP %d %q", resp.StatusCode, body)
	}
	s.FailNext("getMe", 1, faketelegram.Failure{Drop: true})
	if _, err := http.PostForm(s.URL+"/bot"+s.Token+"/getMe", nil); err == nil {
		t.Error("a dropped connection answered")
	}
}

func TestServer_SendMessage(t *testing.T) {
	s := faketelegram.New(t)
	s.DM(alice, "question")
	forum := faketelegram.Chat{ID: -1002003004005, Type: "supergroup", Title: "Team", IsForum: true}
	asked := s.Post(faketelegram.Message{Chat: forum, From: alice, Text: "in a topic", ThreadID: 77})

	tests := []struct {
		name   string
		params url.Values
		want   string // "" for success, else the description
	}{
		{"ok", url.Values{"chat_id": {"1001"}, "text": {"hello"}}, ""},
		{"no chat", url.Values{"text": {"hello"}}, "Bad Request: chat_id is empty"},
		{"unknown chat", url.Values{"chat_id": {"42"}, "text": {"hello"}}, "Bad Request: chat not found"},
		{"empty text", url.Values{"chat_id": {"1001"}, "text": {" "}}, "Bad Request: message text is empty"},
		{"too long", url.Values{"chat_id": {"1001"}, "text": {strings.Repeat("😀", 2049)}}, "Bad Request: message is too long"},
		{"4096 units", url.Values{"chat_id": {"1001"}, "text": {strings.Repeat("😀", 2048)}}, ""},
		{"thread outside a forum", url.Values{"chat_id": {"1001"}, "text": {"x"}, "message_thread_id": {"5"}}, "Bad Request: message thread not found"},
		{"thread in a forum", url.Values{"chat_id": {"-1002003004005"}, "text": {"x"}, "message_thread_id": {"77"}}, ""},
		{"reply to unknown", url.Values{"chat_id": {"1001"}, "text": {"x"}, "reply_parameters": {`{"message_id":999999}`}}, "Bad Request: message to be replied not found"},
		{"reply to unknown allowed", url.Values{"chat_id": {"1001"}, "text": {"x"}, "reply_parameters": {`{"message_id":999999,"allow_sending_without_reply":true}`}}, ""},
		{"reply", url.Values{"chat_id": {"-1002003004005"}, "text": {"x"}, "reply_parameters": {`{"message_id":` + strconv.Itoa(asked) + `}`}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := call(t, s, s.Token, "sendMessage", tt.params)
			if tt.want == "" && !env.OK {
				t.Fatalf("got %d %s, want success", env.ErrorCode, env.Description)
			}
			if tt.want != "" && (env.ErrorCode != 400 || env.Description != tt.want) {
				t.Fatalf("got %+v, want 400 %q", env, tt.want)
			}
		})
	}
	sent := s.WaitSent(t, 5, wait)
	if len(sent) != 5 {
		t.Fatalf("recorded %d sent messages, want 5", len(sent))
	}
	if last := sent[4]; last.ChatID != forum.ID || last.ReplyTo != asked {
		t.Errorf("last sent %+v, want a reply to %d in %d", last, asked, forum.ID)
	}
	if sent[3].ReplyTo != 0 {
		t.Errorf("a reply to an unknown message sent without reply is recorded as %+v", sent[3])
	}

	// JSON bodies work too, as the Bot API accepts them.
	resp, err := http.Post(s.URL+"/bot"+s.Token+"/sendChatAction", "application/json",
		strings.NewReader(`{"chat_id":-1002003004005,"message_thread_id":77,"action":"typing"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := s.ChatActions(); len(got) != 1 || got[0] != (faketelegram.ChatAction{ChatID: forum.ID, ThreadID: 77, Action: "typing"}) {
		t.Errorf("chat actions %+v", got)
	}
}

func TestServer_Entities(t *testing.T) {
	s := faketelegram.New(t)
	group := faketelegram.Chat{ID: -100200, Type: "supergroup", Title: "G"}
	s.Post(faketelegram.Message{Chat: group, From: alice, Text: "😀 @moltgate_test_bot hi /ask@moltgate_test_bot me@mail.com"})
	got := updates(t, call(t, s, s.Token, "getUpdates", nil))
	var msg struct {
		Entities []struct {
			Type   string `json:"type"`
			Offset int    `json:"offset"`
			Length int    `json:"length"`
		} `json:"entities"`
	}
	json.Unmarshal(got[0].Message, &msg)
	// The emoji is two UTF-16 code units.
	want := `[{mention 3 18} {bot_command 25 22}]`
	var parts []string
	for _, e := range msg.Entities {
		parts = append(parts, "{"+e.Type+" "+strconv.Itoa(e.Offset)+" "+strconv.Itoa(e.Length)+"}")
	}
	if got := "[" + strings.Join(parts, " ") + "]"; got != want {
		t.Errorf("entities %s, want %s", got, want)
	}
}

func TestServer_Webhook(t *testing.T) {
	s := faketelegram.New(t)
	var mu sync.Mutex
	var got []string
	failing := true
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		body, _ := io.ReadAll(r.Body)
		got = append(got, r.Header.Get("X-Telegram-Bot-Api-Secret-Token")+" "+string(body))
	}))
	defer hook.Close()
	env := call(t, s, s.Token, "setWebhook", url.Values{"url": {hook.URL}, "secret_token": {"s3cret"}, "allowed_updates": {`["message"]`}})
	if !env.OK || env.Description != "Webhook was set" {
		t.Fatalf("setWebhook: %+v", env)
	}
	s.DM(alice, "pushed")
	info := func() map[string]any {
		var m map[string]any
		json.Unmarshal(call(t, s, s.Token, "getWebhookInfo", nil).Result, &m)
		return m
	}
	deadline := time.Now().Add(wait)
	for info()["last_error_message"] != "Wrong response from the webhook: 500 Internal Server Error" {
		if time.Now().After(deadline) {
			t.Fatalf("getWebhookInfo never showed the delivery error: %v", info())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m := info(); m["url"] != hook.URL || m["pending_update_count"] != float64(1) {
		t.Errorf("getWebhookInfo %v", m)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	s.WaitConfirmed(t, wait)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || !strings.HasPrefix(got[0], "s3cret {") || !strings.Contains(got[0], `"text":"pushed"`) {
		t.Errorf("webhook got %q", got)
	}
	if env := call(t, s, s.Token, "setWebhook", url.Values{"url": {hook.URL}, "secret_token": {"bad secret!"}}); env.ErrorCode != 400 {
		t.Errorf("bad secret: %+v", env)
	}
	if env := call(t, s, s.Token, "deleteWebhook", nil); env.Description != "Webhook was deleted" || s.Webhook().URL != "" {
		t.Errorf("deleteWebhook: %+v", env)
	}
}
