package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/agent"
)

func TestGateway_Handshake(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	c := h.operator("operator.read")
	hello := c.hello
	if hello["type"] != "hello-ok" || hello["protocol"] != float64(4) {
		t.Fatalf("hello = %v", hello)
	}
	for _, k := range []string{"server", "features", "snapshot", "auth", "policy"} {
		if hello[k] == nil {
			t.Errorf("hello-ok lacks %s", k)
		}
	}
	policy := hello["policy"].(map[string]any)
	if policy["maxPayload"].(float64) <= 0 || policy["tickIntervalMs"] != float64(200) {
		t.Errorf("policy = %v", policy)
	}
	methods := hello["features"].(map[string]any)["methods"].([]any)
	if len(methods) < 16 {
		t.Errorf("features.methods = %v", methods)
	}
	if got := hello["auth"].(map[string]any)["scopes"]; len(got.([]any)) != 1 {
		t.Errorf("auth.scopes = %v", got)
	}
	c.event("tick", nil)
	if p := c.ok("health", map[string]any{}); p["ok"] != true {
		t.Fatalf("health = %v", p)
	}

	t.Run("UnknownMethod", func(t *testing.T) {
		if res := c.call("no.such.method", nil); errCode(res) != "INVALID_REQUEST" {
			t.Fatalf("%v", res)
		}
	})
	t.Run("MissingParams", func(t *testing.T) {
		if res := c.call("chat.history", map[string]any{}); errCode(res) != "INVALID_REQUEST" || !strings.Contains(res["error"].(map[string]any)["message"].(string), "sessionKey") {
			t.Fatalf("%v", res)
		}
	})
	t.Run("BadParamTypes", func(t *testing.T) {
		if res := c.call("chat.history", map[string]any{"sessionKey": 42}); errCode(res) != "INVALID_REQUEST" {
			t.Fatalf("%v", res)
		}
	})
	t.Run("ScopeDenied", func(t *testing.T) {
		res := c.call("chat.send", map[string]any{"sessionKey": "main", "message": "hi", "idempotencyKey": "x"})
		if errCode(res) != "FORBIDDEN" || errDetail(res, "missingScope") != "operator.write" {
			t.Fatalf("%v", res)
		}
		for _, m := range []string{"config.apply", "device.pair.list"} {
			if res := c.call(m, map[string]any{}); errCode(res) != "FORBIDDEN" {
				t.Fatalf("%s: %v", m, res)
			}
		}
	})
	t.Run("NonJSONFrameKeepsConnection", func(t *testing.T) {
		if err := c.ws.Write(context.Background(), websocket.MessageText, []byte("not json")); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-c.res:
			if errCode(f) != "INVALID_REQUEST" {
				t.Fatalf("%v", f)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no error response to a non-JSON frame")
		}
		c.ok("health", nil)
	})
}

func TestGateway_BadConnects(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	t.Run("WrongToken", func(t *testing.T) {
		c := dial(t, h.url)
		res := c.connect(connectOpts{token: "wrong"})
		if res["ok"] != false || errDetail(res, "code") != "AUTH_TOKEN_MISMATCH" {
			t.Fatalf("%v", res)
		}
		if code, _ := c.closeStatus(); code != websocket.StatusPolicyViolation {
			t.Fatalf("close code %d, want 1008", code)
		}
	})
	t.Run("MissingToken", func(t *testing.T) {
		c := dial(t, h.url)
		if res := c.connect(connectOpts{}); res["ok"] != false {
			t.Fatalf("%v", res)
		}
		if code, _ := c.closeStatus(); code != websocket.StatusPolicyViolation {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("FrameBeforeConnect", func(t *testing.T) {
		c := dial(t, h.url)
		c.write(map[string]any{"type": "req", "id": "1", "method": "health", "params": map[string]any{}})
		if code, reason := c.closeStatus(); code != websocket.StatusPolicyViolation || !strings.Contains(reason, "connect") {
			t.Fatalf("close %d %q", code, reason)
		}
	})
	t.Run("NonJSONFirstFrame", func(t *testing.T) {
		c := dial(t, h.url)
		c.ws.Write(context.Background(), websocket.MessageText, []byte("{{{"))
		if code, _ := c.closeStatus(); code != websocket.StatusPolicyViolation {
			t.Fatalf("close %d", code)
		}
	})
	t.Run("OversizedPreauthFrame", func(t *testing.T) {
		c := dial(t, h.url)
		big := `{"type":"req","id":"1","method":"connect","params":{"pad":"` + strings.Repeat("x", 70<<10) + `"}}`
		c.ws.Write(context.Background(), websocket.MessageText, []byte(big))
		if code, _ := c.closeStatus(); code != websocket.StatusMessageTooBig {
			t.Fatalf("close %d, want 1009", code)
		}
	})
	t.Run("OversizedFrameAfterHello", func(t *testing.T) {
		h.gw.Policy.MaxPayload = 128 << 10
		defer func() { h.gw.Policy.MaxPayload = 4 << 20 }()
		c := dial(t, h.url)
		if res := c.connect(connectOpts{token: testToken}); res["ok"] != true {
			t.Fatal(res)
		}
		big := `{"type":"req","id":"1","method":"health","params":{"pad":"` + strings.Repeat("x", 200<<10) + `"}}`
		c.ws.Write(context.Background(), websocket.MessageText, []byte(big))
		if err := <-c.closed; websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
			t.Fatalf("closed with %v, want 1009", err)
		}
	})
	t.Run("UnsupportedProtocol", func(t *testing.T) {
		c := dial(t, h.url)
		res := c.connect(connectOpts{token: testToken, tamper: func(p map[string]any) { p["minProtocol"], p["maxProtocol"] = 2, 3 }})
		if errCode(res) != "INVALID_REQUEST" {
			t.Fatalf("%v", res)
		}
	})
	t.Run("HandshakeTimeout", func(t *testing.T) {
		c := dial(t, h.url)
		if code, reason := c.closeStatus(); code != websocket.StatusPolicyViolation || reason != "handshake timeout" {
			t.Fatalf("close %d %q", code, reason)
		}
	})
}

// failingDevices is a device service whose writes fail inside (a full disk).
type failingDevices struct{ moltgate.DeviceService }

func (failingDevices) RequestPairing(context.Context, moltgate.Device, moltgate.Meta) (string, bool, error) {
	return "", false, errors.New("disk I/O error")
}

func (failingDevices) IssueToken(context.Context, string, moltgate.Meta) (string, error) {
	return "", errors.New("disk I/O error")
}

// A connect that fails on the gateway's side is logged and closed as
// "unavailable", which the web chat retries; "unauthorized", which it
// does not, is for refused credentials only.
func TestGateway_InternalConnectFailure(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	logs := &syncWriter{w: &bytes.Buffer{}}
	h.gw.Logger = slog.New(slog.NewTextHandler(logs, nil))
	// A paired device with no token yet: the handshake issues one.
	paired := newDevice()
	res := dial(t, h.url).connect(connectOpts{token: testToken, device: paired})
	if _, err := h.svc.ApprovePairing(t.Context(), errDetail(res, "requestId").(string), moltgate.OwnerScopes, moltgate.Meta{}); err != nil {
		t.Fatal(err)
	}
	h.gw.Devices = failingDevices{h.svc}
	for name, dev := range map[string]*device{"request pairing": newDevice(), "issue a token": paired} {
		c := dial(t, h.url)
		res := c.connect(connectOpts{token: testToken, device: dev})
		if res["ok"] != false || errCode(res) != "UNAVAILABLE" || strings.Contains(fmt.Sprint(res), "disk") {
			t.Fatalf("%s failing: connect = %v", name, res)
		}
		if code, reason := c.closeStatus(); code != websocket.StatusPolicyViolation || reason != "unavailable" {
			t.Fatalf("%s failing: close %d %q, want 1008 unavailable", name, code, reason)
		}
	}
	if n := strings.Count(logs.String(), "disk I/O error"); n != 2 {
		t.Fatalf("%d of the 2 failures logged:\n%s", n, logs.String())
	}
	c := dial(t, h.url)
	c.connect(connectOpts{token: "wrong", device: newDevice()})
	if _, reason := c.closeStatus(); reason != "unauthorized" {
		t.Fatalf("wrong token: close reason %q, want unauthorized", reason)
	}
}

func TestGateway_TokenOnlyNeedsLoopback(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The same loopback peer, but through a proxy (the Worker adds these).
	ws, _, err := websocket.Dial(ctx, h.url, &websocket.DialOptions{HTTPHeader: map[string][]string{"X-Forwarded-For": {"203.0.113.9"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, ws: ws, events: make(chan map[string]any, 16), res: make(chan map[string]any, 16), closed: make(chan error, 1)}
	_, data, _ := ws.Read(ctx)
	var ch map[string]any
	json.Unmarshal(data, &ch)
	p := ch["payload"].(map[string]any)
	c.nonce, c.ts = p["nonce"].(string), int64(p["ts"].(float64))
	res := c.connect(connectOpts{token: testToken})
	if res["ok"] != false || errCode(res) != "NOT_PAIRED" {
		t.Fatalf("token-only through a proxy = %v, want NOT_PAIRED", res)
	}
}

func TestGateway_Pairing(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	admin := h.operator()
	dev := newDevice()

	c := dial(t, h.url)
	res := c.connect(connectOpts{token: testToken, device: dev, scopes: []string{"operator.read", "operator.write"}})
	if errCode(res) != "NOT_PAIRED" {
		t.Fatalf("unknown device = %v", res)
	}
	requestID, _ := errDetail(res, "requestId").(string)
	if requestID == "" {
		t.Fatalf("no details.requestId in %v", res)
	}
	if code, reason := c.closeStatus(); code != websocket.StatusPolicyViolation || reason != "pairing required" {
		t.Fatalf("close %d %q", code, reason)
	}
	ev := admin.event("device.pair.requested", func(p map[string]any) bool { return p["requestId"] == requestID })
	if expires, _ := ev["expiresAtMs"].(float64); ev["deviceId"] != dev.id() || expires <= float64(time.Now().UnixMilli()) {
		t.Fatalf("event = %v, want the device and when its request expires", ev)
	}
	list := admin.ok("device.pair.list", nil)
	if pending := list["pending"].([]any); len(pending) != 1 || pending[0].(map[string]any)["requestId"] != requestID {
		t.Fatalf("list = %v", list)
	} else if fmt.Sprint(pending[0]) != fmt.Sprint(ev) {
		t.Fatalf("the event says %v, the list %v", ev, pending[0])
	}

	// Retrying while pending keeps the same request.
	c = dial(t, h.url)
	if res := c.connect(connectOpts{token: testToken, device: dev, scopes: []string{"operator.read", "operator.write"}}); errDetail(res, "requestId") != requestID {
		t.Fatalf("retry got %v", res)
	}

	if res := admin.call("device.pair.approve", map[string]any{"requestId": "nope"}); errDetail(res, "code") != "NOT_FOUND" {
		t.Fatalf("approve unknown = %v", res)
	}
	admin.ok("device.pair.approve", map[string]any{"requestId": requestID})
	admin.ok("device.pair.approve", map[string]any{"requestId": requestID}) // idempotent
	admin.event("device.pair.resolved", func(p map[string]any) bool { return p["requestId"] == requestID && p["decision"] == "approved" })

	c = dial(t, h.url)
	res = c.connect(connectOpts{token: testToken, device: dev, scopes: []string{"operator.read", "operator.write", "operator.admin"}})
	if res["ok"] != true {
		t.Fatalf("approved device = %v", res)
	}
	auth := c.hello["auth"].(map[string]any)
	deviceToken, _ := auth["deviceToken"].(string)
	if deviceToken == "" {
		t.Fatalf("no deviceToken in %v", auth)
	}
	// Only the approved scopes: admin was not approved.
	if got := auth["scopes"].([]any); len(got) != 2 {
		t.Fatalf("scopes = %v", got)
	}
	events, _ := h.log.Query(context.Background(), eventlogAll())
	for _, e := range events {
		if strings.Contains(string(e.Data), deviceToken) || strings.Contains(string(e.Data), testToken) {
			t.Fatalf("a token is in the log at seq %d (%s)", e.Seq, e.Type)
		}
	}

	// Later connects use the device token, signed; no new token is issued.
	c2 := dial(t, h.url)
	if res := c2.connect(connectOpts{token: deviceToken, device: dev, scopes: []string{"operator.read"}}); res["ok"] != true {
		t.Fatalf("device-token connect = %v", res)
	}
	if c2.hello["auth"].(map[string]any)["deviceToken"] != nil {
		t.Fatal("a second token was issued")
	}
	// The v2 signature is still accepted.
	c3 := dial(t, h.url)
	if res := c3.connect(connectOpts{token: deviceToken, device: dev, scopes: []string{"operator.read"}, v2: true}); res["ok"] != true {
		t.Fatalf("v2 connect = %v", res)
	}

	// Removal disconnects the device, and it must pair again.
	admin.ok("device.pair.remove", map[string]any{"deviceId": dev.id()})
	if err := <-c2.closed; websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("removed device's connection closed with %v", err)
	}
	c4 := dial(t, h.url)
	if res := c4.connect(connectOpts{token: deviceToken, device: dev}); res["ok"] != false {
		t.Fatalf("removed device with its old token = %v", res)
	}
}

func TestGateway_PairingReject(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	admin := h.operator()
	dev := newDevice()
	res := dial(t, h.url).connect(connectOpts{token: testToken, device: dev})
	requestID := errDetail(res, "requestId").(string)
	admin.ok("device.pair.reject", map[string]any{"requestId": requestID})
	admin.event("device.pair.resolved", func(p map[string]any) bool { return p["decision"] == "rejected" })
	if res := admin.call("device.pair.approve", map[string]any{"requestId": requestID}); res["ok"] != false {
		t.Fatalf("approve after reject = %v", res)
	}
	if res := dial(t, h.url).connect(connectOpts{token: testToken, device: dev}); errCode(res) != "NOT_PAIRED" {
		t.Fatalf("rejected device = %v", res)
	}
}

func TestGateway_DeviceSignatures(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	dev, other := newDevice(), newDevice()
	for name, tc := range map[string]struct {
		opts connectOpts
		code string
	}{
		"Forged": {connectOpts{token: testToken, device: dev, tamper: func(p map[string]any) {
			p["scopes"] = []string{"operator.admin"} // signed for other scopes
		}}, "DEVICE_AUTH_SIGNATURE_INVALID"},
		"WrongDeviceID": {connectOpts{token: testToken, device: dev, tamper: func(p map[string]any) {
			p["device"].(map[string]any)["id"] = other.id()
		}}, "DEVICE_AUTH_DEVICE_ID_MISMATCH"},
		"OtherKey": {connectOpts{token: testToken, device: dev, tamper: func(p map[string]any) {
			p["device"].(map[string]any)["publicKey"] = "AAAA"
		}}, "DEVICE_AUTH_PUBLIC_KEY_INVALID"},
		"Stale":         {connectOpts{token: testToken, device: dev, signedAt: time.Now().Add(-11 * time.Minute).UnixMilli()}, "DEVICE_AUTH_SIGNATURE_EXPIRED"},
		"ReplayedNonce": {connectOpts{token: testToken, device: dev, nonce: "a-nonce-from-another-connection"}, "DEVICE_AUTH_NONCE_MISMATCH"},
		"NoNonce": {connectOpts{token: testToken, device: dev, tamper: func(p map[string]any) {
			delete(p["device"].(map[string]any), "nonce")
		}}, "DEVICE_AUTH_NONCE_REQUIRED"},
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, h.url)
			res := c.connect(tc.opts)
			if res["ok"] != false || errDetail(res, "code") != tc.code {
				t.Fatalf("got %v, want %s", res["error"], tc.code)
			}
			if code, _ := c.closeStatus(); code != websocket.StatusPolicyViolation {
				t.Fatalf("close %d", code)
			}
		})
	}
	if n, _ := h.log.Count(context.Background(), eventlogAll()); n != 0 {
		t.Fatalf("refused connects appended %d events", n)
	}
}

func TestGateway_DevModeAutoApproves(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	h.gw.DevMode = true
	c := dial(t, h.url)
	if res := c.connect(connectOpts{token: testToken, device: newDevice(), scopes: []string{"operator.read"}}); res["ok"] != true {
		t.Fatalf("dev mode connect = %v", res)
	}
	if c.hello["auth"].(map[string]any)["deviceToken"] == nil {
		t.Fatal("no device token in dev mode")
	}
}

func TestGateway_Config(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	c := h.operator()
	got := c.ok("config.get", nil)
	if got["exists"] != false {
		t.Fatalf("config.get on a new gateway = %v", got)
	}
	applied := c.ok("config.apply", map[string]any{"raw": `{"agents":{"defaults":{"model":{"primary":"anthropic/claude-sonnet-4"}}}}`})
	hash := applied["hash"].(string)
	waitConfigChanged := c.event("config.changed", nil)
	if waitConfigChanged["hash"] != hash {
		t.Fatalf("config.changed = %v, want hash %s", waitConfigChanged, hash)
	}
	res := c.call("config.patch", map[string]any{"raw": `{"agents":{"defaults":{"model":{"primary":"openai/gpt-5"}}}}`, "baseHash": "stale"})
	if errDetail(res, "code") != "CONFLICT" || errDetail(res, "currentHash") != hash {
		t.Fatalf("stale baseHash = %v", res)
	}
	res = c.call("config.apply", map[string]any{"raw": `{"models":{"providers":{"x":{"api":"soap"}}}}`, "baseHash": hash})
	issues, _ := errDetail(res, "issues").([]any)
	if errCode(res) != "INVALID_REQUEST" || len(issues) != 1 {
		t.Fatalf("invalid config = %v", res)
	}
	if res := c.call("config.apply", map[string]any{"raw": `{not json`, "baseHash": hash}); errCode(res) != "INVALID_REQUEST" {
		t.Fatalf("non-JSON config = %v", res)
	}
	patched := c.ok("config.patch", map[string]any{"raw": `{"agents":{"defaults":{"model":{"primary":"openai/gpt-5"}}}}`, "baseHash": hash})
	if patched["hash"] == hash || !strings.Contains(string(mustJSON(patched["config"])), "gpt-5") {
		t.Fatalf("patched = %v", patched)
	}
	if got := c.ok("config.get", nil); got["hash"] != patched["hash"] {
		t.Fatalf("config.get after patch = %v", got)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

var _ = moltgate.RunCompleted

func TestGateway_FailedAttemptsAreRateLimited(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	for i := 0; i < 10; i++ {
		if res := dial(t, h.url).connect(connectOpts{token: "guess-" + strings.Repeat("x", i)}); res["ok"] != false {
			t.Fatalf("attempt %d succeeded", i)
		}
	}
	// Even the right token is refused for a while after ten failures.
	res := dial(t, h.url).connect(connectOpts{token: testToken})
	if res["ok"] != false || errDetail(res, "code") != "AUTH_RATE_LIMITED" {
		t.Fatalf("11th attempt = %v", res)
	}
}

// A client that stops reading is dropped once its queue passes
// maxBufferedBytes; everyone else carries on.
func TestGateway_SlowConsumerIsDisconnected(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	h.gw.Policy.MaxBufferedBytes = 256 << 10
	fast := h.operator()
	slow := dialSmallWindow(t, h.url)
	if res := slow.connect(connectOpts{token: testToken, raw: true}); res["ok"] != true {
		t.Fatal(res)
	}
	// The slow client follows the session, reads the answer, then never reads again.
	slow.write(map[string]any{"type": "req", "id": "h", "method": "chat.history", "params": map[string]any{"sessionKey": "flood"}})
	slow.readRes()
	if h.gw.Connections() != 2 {
		t.Fatalf("%d connections", h.gw.Connections())
	}
	big := strings.Repeat("x", 200<<10)
	deadline := time.Now().Add(30 * time.Second)
	n := 0
	for ; h.gw.Connections() > 1; n++ {
		if time.Now().After(deadline) {
			t.Fatal("the slow client was never disconnected")
		}
		fast.ok("chat.inject", map[string]any{"sessionKey": "flood", "message": big})
	}
	t.Logf("disconnected after %d injects", n)
	// The fast client is unaffected.
	if p := fast.ok("health", nil); p["ok"] != true {
		t.Fatal("the fast client stopped working")
	}
}
