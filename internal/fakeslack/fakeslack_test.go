package fakeslack

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const wait = 10 * time.Second

// call posts a form to a Web API method as slack-go does, and returns the
// status, headers and decoded body (nil when it is not JSON).
func call(t *testing.T, s *Server, method string, form url.Values, bearer string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+method, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if json.Unmarshal(data, &body) != nil {
		body = nil
	}
	return resp.StatusCode, resp.Header, body
}

func TestWebAPI(t *testing.T) {
	s := New(t)
	bot := url.Values{"token": {s.BotToken}}

	t.Run("auth.test", func(t *testing.T) {
		status, _, body := call(t, s, "auth.test", bot, "")
		if status != 200 || body["ok"] != true || body["team_id"] != TeamID || body["user_id"] != BotUserID || body["bot_id"] != BotID || body["user"] != BotName {
			t.Errorf("%d %v", status, body)
		}
	})
	for _, tt := range []struct {
		name, method string
		form         url.Values
		bearer, want string
	}{
		{"no token", "auth.test", url.Values{}, "", "not_authed"},
		{"unknown token", "auth.test", url.Values{"token": {"xoxb-other"}}, "", "invalid_auth"},
		{"app token for a bot method", "chat.postMessage", url.Values{}, s.AppToken, "not_allowed_token_type"},
		{"bot token for apps.connections.open", "apps.connections.open", url.Values{}, s.BotToken, "not_allowed_token_type"},
		{"unknown method", "nope.nope", bot, "", "unknown_method"},
		{"no text", "chat.postMessage", url.Values{"token": {s.BotToken}, "channel": {"C1"}}, "", "no_text"},
		{"unknown user", "users.info", url.Values{"token": {s.BotToken}, "user": {"U0NOBODY"}}, "", "user_not_found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := call(t, s, tt.method, tt.form, tt.bearer)
			if status != 200 || body["ok"] != false || body["error"] != tt.want {
				t.Errorf("%d %v, want 200 and error %q", status, body, tt.want)
			}
		})
	}
	t.Run("refused tokens", func(t *testing.T) {
		s.RefuseBotToken(true)
		s.RefuseAppToken(true)
		defer s.RefuseBotToken(false)
		defer s.RefuseAppToken(false)
		if _, _, body := call(t, s, "auth.test", bot, ""); body["error"] != "invalid_auth" {
			t.Errorf("bot token: %v", body)
		}
		if _, _, body := call(t, s, "apps.connections.open", nil, s.AppToken); body["error"] != "invalid_auth" {
			t.Errorf("app token: %v", body)
		}
	})
	t.Run("failures", func(t *testing.T) {
		s.FailNext("chat.postMessage", 1, RateLimited(30))
		s.FailNext("chat.postMessage", 1, ServerError(502))
		s.FailNext("chat.postMessage", 1, Failure{}) // passes
		s.FailNext("chat.postMessage", 1, SlackError("is_archived"))
		form := url.Values{"token": {s.BotToken}, "channel": {"C1"}, "text": {"hi"}}
		status, h, body := call(t, s, "chat.postMessage", form, "")
		if status != 429 || h.Get("Retry-After") != "30" || body["error"] != "ratelimited" {
			t.Errorf("rate limit: %d %v %v", status, h, body)
		}
		if status, h, body := call(t, s, "chat.postMessage", form, ""); status != 502 || body != nil || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			t.Errorf("5xx: %d %v %v", status, h, body)
		}
		if _, _, body := call(t, s, "chat.postMessage", form, ""); body["ok"] != true {
			t.Errorf("zero Failure did not pass: %v", body)
		}
		if status, _, body := call(t, s, "chat.postMessage", form, ""); status != 200 || body["error"] != "is_archived" {
			t.Errorf("slack error: %d %v", status, body)
		}
		if _, _, body := call(t, s, "chat.postMessage", form, ""); body["ok"] != true {
			t.Errorf("after the failures: %v", body)
		}
	})
	t.Run("requests recorded without token", func(t *testing.T) {
		r := s.Requests("auth.test")
		if len(r) == 0 || r[0].Token != s.BotToken || r[0].Params.Has("token") {
			t.Errorf("%+v", r)
		}
	})
}

// dial opens a socket the way slack-go does: apps.connections.open with
// the app token, then the URL with Slack's Origin header.
func dial(t *testing.T, s *Server) (*websocket.Conn, string) {
	t.Helper()
	_, _, body := call(t, s, "apps.connections.open", nil, s.AppToken)
	wsURL, _ := body["url"].(string)
	if body["ok"] != true || !strings.Contains(wsURL, "ticket=") {
		t.Fatalf("apps.connections.open: %v", body)
	}
	ws, _, err := websocket.Dial(context.Background(), wsURL, &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {"https://api.slack.com"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws, wsURL
}

func read(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, data, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return v
}

func TestSocket(t *testing.T) {
	s := New(t)
	early := s.InjectDM("U0ALICE", "alice", "sent while no socket is open")

	ws, wsURL := dial(t, s)
	if hello := read(t, ws); hello["type"] != "hello" || hello["num_connections"] != 1.0 {
		t.Errorf("first frame = %v, want hello", hello)
	}
	env := read(t, ws)
	payload, _ := env["payload"].(map[string]any)
	event, _ := payload["event"].(map[string]any)
	id, _ := env["envelope_id"].(string)
	if env["type"] != "events_api" || id == "" || env["accepts_response_payload"] != false ||
		payload["type"] != "event_callback" || payload["team_id"] != TeamID ||
		event["type"] != "message" || event["channel_type"] != "im" || event["ts"] != early || event["channel"] != DMChannel("U0ALICE") {
		t.Errorf("envelope = %v", env)
	}

	t.Run("ticket works once", func(t *testing.T) {
		_, resp, err := websocket.Dial(context.Background(), wsURL, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("second dial with the same ticket: %v %v", resp, err)
		}
	})

	t.Run("acknowledgements", func(t *testing.T) {
		if late := s.NotAckedWithin(time.Hour); len(late) != 0 {
			t.Errorf("late within an hour: %v", late)
		}
		if late := s.NotAckedWithin(0); len(late) != 1 || late[0] != id {
			t.Errorf("NotAckedWithin(0) = %v, want [%s]", late, id)
		}
		ws.Write(context.Background(), websocket.MessageText, []byte(`{"envelope_id":"`+id+`"}`))
		s.WaitAllAcked(t, wait)
		if e := s.Envelopes(); len(e) != 1 || e[0].Socket != 1 || e[0].AckedAt.Before(e[0].SentAt) {
			t.Errorf("envelopes = %+v", e)
		}
	})

	t.Run("mention is a message and an app_mention", func(t *testing.T) {
		ts := s.InjectMention("C0GENERAL", "U0BOB", "bob", "hi", "1700000000.000001")
		msg, mention := read(t, ws), read(t, ws)
		me := msg["payload"].(map[string]any)["event"].(map[string]any)
		ae := mention["payload"].(map[string]any)["event"].(map[string]any)
		if me["type"] != "message" || ae["type"] != "app_mention" || me["ts"] != ts || ae["ts"] != ts ||
			ae["text"] != "<@"+BotUserID+"> hi" || ae["thread_ts"] != "1700000000.000001" || ae["channel_type"] != nil {
			t.Errorf("message %v\napp_mention %v", me, ae)
		}
	})

	t.Run("bot messages echo back", func(t *testing.T) {
		form := url.Values{"token": {s.BotToken}, "channel": {"C0GENERAL"}, "text": {"answer"}, "thread_ts": {"1700000000.000001"}}
		_, _, body := call(t, s, "chat.postMessage", form, "")
		echo := read(t, ws)["payload"].(map[string]any)["event"].(map[string]any)
		if echo["bot_id"] != BotID || echo["ts"] != body["ts"] || echo["thread_ts"] != "1700000000.000001" {
			t.Errorf("echo %v for %v", echo, body)
		}
		if sent := s.WaitSent(t, 1, wait); sent[0] != (SentMessage{Channel: "C0GENERAL", ThreadTS: "1700000000.000001", Text: "answer", TS: body["ts"].(string)}) {
			t.Errorf("sent %+v", sent)
		}
	})

	t.Run("disconnect", func(t *testing.T) {
		s.Disconnect(t, "refresh_requested")
		if d := read(t, ws); d["type"] != "disconnect" || d["reason"] != "refresh_requested" {
			t.Errorf("got %v", d)
		}
	})

	t.Run("drop", func(t *testing.T) {
		s.DropSocket(t)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if _, _, err := ws.Read(ctx); err == nil || ctx.Err() != nil {
			t.Errorf("read after drop: %v", err)
		}
		s.WaitFor(t, wait, "the socket to close", func() bool { _, open := s.Sockets(); return open == 0 })
		ws2, _ := dial(t, s)
		read(t, ws2) // hello
		s.WaitSocket(t, 2, wait)
		if opened, open := s.Sockets(); opened != 2 || open != 1 {
			t.Errorf("Sockets() = %d, %d", opened, open)
		}
	})
}

func TestMalformed(t *testing.T) {
	s := New(t)
	ws, _ := dial(t, s)
	read(t, ws) // hello
	id := s.InjectMalformed()
	env := read(t, ws)
	event := env["payload"].(map[string]any)["event"].(map[string]any)
	if env["envelope_id"] != id || env["type"] != "events_api" {
		t.Errorf("envelope %v", env)
	}
	if _, isNumber := event["ts"].(float64); !isNumber {
		t.Errorf("event %v: ts should be of the wrong type", event)
	}
}
