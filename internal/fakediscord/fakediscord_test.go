package fakediscord_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/moltgate/moltgate/internal/fakediscord"
)

// call makes a REST request with the bot token and decodes the JSON answer.
func call(t *testing.T, srv *fakediscord.Server, method, path, token, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+"/api/v10"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bot "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, data, err)
		}
	}
	return resp, out
}

func TestREST_WireFormat(t *testing.T) {
	srv := fakediscord.New(t)
	ch := srv.GuildChannelID
	post := "/channels/" + ch + "/messages"

	resp, body := call(t, srv, "GET", "/gateway/bot", srv.Token, "")
	if resp.StatusCode != 200 || body["url"] != srv.GatewayURL || body["session_start_limit"] == nil {
		t.Errorf("gateway/bot = %d %v", resp.StatusCode, body)
	}
	resp, body = call(t, srv, "GET", "/users/@me", "wrong", "")
	if resp.StatusCode != 401 || body["message"] != "401: Unauthorized" || body["code"] != 0.0 {
		t.Errorf("wrong token = %d %v, want 401 {message: 401: Unauthorized, code: 0}", resp.StatusCode, body)
	}

	resp, body = call(t, srv, "POST", post, srv.Token, `{"content":"hello"}`)
	if resp.StatusCode != 200 || body["content"] != "hello" || body["channel_id"] != ch || body["id"] == "" {
		t.Errorf("create = %d %v", resp.StatusCode, body)
	}
	if author, _ := body["author"].(map[string]any); author["id"] != srv.BotID || author["bot"] != true {
		t.Errorf("author = %v, want the bot", body["author"])
	}
	if resp.Header.Get("X-RateLimit-Bucket") == "" || resp.Header.Get("X-RateLimit-Remaining") == "" || resp.Header.Get("Via") == "" {
		t.Errorf("rate-limit headers missing: %v", resp.Header)
	}

	for _, tt := range []struct {
		name, path, body string
		status           int
		code             float64
	}{
		{"empty", post, `{"content":""}`, 400, 50006},
		{"too long", post, `{"content":"` + strings.Repeat("é", 2001) + `"}`, 400, 50035},
		{"bad JSON", post, `{"content":`, 400, 50109},
		{"unknown reply", post, `{"content":"x","message_reference":{"message_id":"1"}}`, 400, 50035},
		{"unknown channel", "/channels/1/messages", `{"content":"x"}`, 404, 10003},
	} {
		resp, body := call(t, srv, "POST", tt.path, srv.Token, tt.body)
		if resp.StatusCode != tt.status || body["code"] != tt.code {
			t.Errorf("%s: %d %v, want %d code %v", tt.name, resp.StatusCode, body, tt.status, tt.code)
		}
	}
	// fail_if_not_exists: false turns a reply to a missing message into a plain one.
	resp, _ = call(t, srv, "POST", post, srv.Token, `{"content":"x","message_reference":{"message_id":"1","fail_if_not_exists":false}}`)
	if resp.StatusCode != 200 {
		t.Errorf("reply with fail_if_not_exists false = %d, want 200", resp.StatusCode)
	}

	// A zero Failure lets its call through: here the second call fails.
	srv.FailNext(fakediscord.RouteCreateMessage, 1, fakediscord.Failure{})
	srv.FailNext(fakediscord.RouteCreateMessage, 1, fakediscord.Failure{Status: 429, RetryAfter: 1500 * time.Millisecond})
	if resp, _ := call(t, srv, "POST", post, srv.Token, `{"content":"x"}`); resp.StatusCode != 200 {
		t.Errorf("the call a zero Failure was scripted for = %d, want 200", resp.StatusCode)
	}
	resp, body = call(t, srv, "POST", post, srv.Token, `{"content":"x"}`)
	if resp.StatusCode != 429 || body["message"] != "You are being rate limited." || body["retry_after"] != 1.5 || body["global"] != false {
		t.Errorf("429 = %d %v", resp.StatusCode, body)
	}
	if resp.Header.Get("Retry-After") != "2" || resp.Header.Get("X-RateLimit-Reset-After") != "1.500" || resp.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("429 headers = %v, want Retry-After 2 (whole seconds), Reset-After 1.500, Remaining 0", resp.Header)
	}

	srv.SetRateLimit(fakediscord.RouteTyping, 1, time.Minute)
	typing := "/channels/" + ch + "/typing"
	if resp, _ := call(t, srv, "POST", typing, srv.Token, ""); resp.StatusCode != 204 {
		t.Errorf("typing = %d, want 204", resp.StatusCode)
	}
	if resp, body := call(t, srv, "POST", typing, srv.Token, ""); resp.StatusCode != 429 || body["retry_after"].(float64) <= 0 {
		t.Errorf("typing over the limit = %d %v, want 429", resp.StatusCode, body)
	}
	if got := srv.Typing(); len(got) != 1 || got[0] != ch {
		t.Errorf("typing = %v", got)
	}
}

// gw is a raw gateway client.
type gw struct {
	t  *testing.T
	ws *websocket.Conn
}

func dial(t *testing.T, url string) *gw {
	t.Helper()
	ws, _, err := websocket.Dial(t.Context(), url+"?v=10&encoding=json", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	g := &gw{t, ws}
	if f := g.read(); f["op"] != 10.0 {
		t.Fatalf("first frame %v, want HELLO", f)
	}
	return g
}

func (g *gw) send(op int, d any) {
	g.t.Helper()
	data, _ := json.Marshal(map[string]any{"op": op, "d": d})
	if err := g.ws.Write(g.t.Context(), websocket.MessageText, data); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gw) read() map[string]any {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(g.t.Context(), 5*time.Second)
	defer cancel()
	_, data, err := g.ws.Read(ctx)
	if err != nil {
		g.t.Fatalf("read: %v", err)
	}
	var f map[string]any
	json.Unmarshal(data, &f)
	return f
}

// closed reads until the server closes and returns the close code.
func (g *gw) closed() int {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(g.t.Context(), 5*time.Second)
	defer cancel()
	for {
		if _, _, err := g.ws.Read(ctx); err != nil {
			return int(websocket.CloseStatus(err))
		}
	}
}

func TestGateway_Protocol(t *testing.T) {
	srv := fakediscord.New(t)

	g := dial(t, srv.GatewayURL)
	g.send(1, nil)
	if f := g.read(); f["op"] != 11.0 {
		t.Errorf("heartbeat answered %v, want op 11", f)
	}
	g.send(2, map[string]any{"token": srv.Token, "intents": 1})
	ready := g.read()
	d, _ := ready["d"].(map[string]any)
	if ready["t"] != "READY" || ready["s"] != 1.0 || d["session_id"] == "" || d["resume_gateway_url"] != srv.ResumeURL {
		t.Fatalf("READY = %v", ready)
	}
	if f := g.read(); f["t"] != "GUILD_CREATE" || f["s"] != 2.0 {
		t.Errorf("second dispatch %v, want GUILD_CREATE s 2", f)
	}
	id := srv.DM("1", "alice", "hi")
	if f := g.read(); f["t"] != "MESSAGE_CREATE" || f["s"] != 3.0 || f["d"].(map[string]any)["id"] != id {
		t.Errorf("message dispatch %v", f)
	}
	g.send(2, map[string]any{"token": srv.Token, "intents": 1})
	if code := g.closed(); code != 4005 {
		t.Errorf("second IDENTIFY closed with %d, want 4005", code)
	}

	// RESUME replays what came after seq, then RESUMED.
	srv.DM("1", "alice", "while away")
	r := dial(t, srv.ResumeURL)
	r.send(6, map[string]any{"token": srv.Token, "session_id": d["session_id"], "seq": 3})
	if f := r.read(); f["t"] != "MESSAGE_CREATE" || f["s"] != 4.0 {
		t.Errorf("replay %v, want the message with s 4", f)
	}
	if f := r.read(); f["t"] != "RESUMED" {
		t.Errorf("after the replay %v, want RESUMED", f)
	}

	bad := dial(t, srv.GatewayURL)
	bad.send(6, map[string]any{"token": srv.Token, "session_id": d["session_id"], "seq": 99})
	if code := bad.closed(); code != 4007 {
		t.Errorf("RESUME with a future seq closed with %d, want 4007", code)
	}
	gone := dial(t, srv.GatewayURL)
	gone.send(6, map[string]any{"token": srv.Token, "session_id": "nope", "seq": 1})
	if f := gone.read(); f["op"] != 9.0 || f["d"] != false {
		t.Errorf("RESUME of an unknown session = %v, want op 9 false", f)
	}
	early := dial(t, srv.GatewayURL)
	early.send(3, map[string]any{"status": "online"})
	if code := early.closed(); code != 4003 {
		t.Errorf("presence before IDENTIFY closed with %d, want 4003", code)
	}
	wrong := dial(t, srv.GatewayURL)
	wrong.send(2, map[string]any{"token": fakediscord.MakeToken("1"), "intents": 1})
	if code := wrong.closed(); code != 4004 {
		t.Errorf("wrong token closed with %d, want 4004", code)
	}
	if srv.Identifies() != 3 || srv.Resumes() != 3 || srv.Connections("/resume") != 1 {
		t.Errorf("identifies %d resumes %d resume connections %d, want 3 3 1", srv.Identifies(), srv.Resumes(), srv.Connections("/resume"))
	}
}
