package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/agent"
	"github.com/moltgate/moltgate/api"
	"github.com/moltgate/moltgate/projections"
)

func proxies(cidrs ...string) func() []*net.IPNet {
	var out []*net.IPNet
	for _, c := range cidrs {
		n, _ := moltgate.ParseProxy(c)
		out = append(out, n)
	}
	return func() []*net.IPNet { return out }
}

// request is a GET of http://127.0.0.1/ from remote.
func request(remote string, headers ...string) *http.Request {
	r := httptest.NewRequest("GET", "http://127.0.0.1/", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

// Forwarding headers are believed only from trusted proxies.
func TestTrust_ClientIP(t *testing.T) {
	trust := &api.Trust{Proxies: proxies("10.0.0.0/8", "::1")}
	for name, tc := range map[string]struct {
		r    *http.Request
		want string
	}{
		"untrusted peer's header ignored":    {request("203.0.113.7:5555", "Cf-Connecting-Ip", "1.2.3.4"), "203.0.113.7"},
		"untrusted peer's XFF ignored":       {request("203.0.113.7:5555", "X-Forwarded-For", "1.2.3.4"), "203.0.113.7"},
		"trusted proxy's CF-Connecting-IP":   {request("10.1.2.3:5555", "Cf-Connecting-Ip", "198.51.100.9"), "198.51.100.9"},
		"trusted proxy's XFF, right-most":    {request("10.1.2.3:5555", "X-Forwarded-For", "6.6.6.6, 198.51.100.9"), "198.51.100.9"},
		"XFF through two trusted proxies":    {request("10.1.2.3:5555", "X-Forwarded-For", "198.51.100.9, 10.9.9.9"), "198.51.100.9"},
		"garbled hop stops the walk":         {request("10.1.2.3:5555", "X-Forwarded-For", "198.51.100.9, nonsense"), "10.1.2.3"},
		"trusted proxy without header":       {request("10.1.2.3:5555"), "10.1.2.3"},
		"bad CF-Connecting-IP falls back":    {request("10.1.2.3:5555", "Cf-Connecting-Ip", "not-an-ip"), "10.1.2.3"},
		"IPv6 trusted proxy":                 {request("[::1]:5555", "Cf-Connecting-Ip", "2001:db8::1"), "2001:db8::1"},
		"no proxies configured: header lies": {request("127.0.0.1:5555", "Cf-Connecting-Ip", "1.1.1.1"), "127.0.0.1"},
	} {
		tr := trust
		if strings.HasPrefix(name, "no proxies") {
			tr = &api.Trust{}
		}
		if got := tr.ClientIP(tc.r); got != tc.want {
			t.Errorf("%s: ClientIP = %s, want %s", name, got, tc.want)
		}
	}
}

// Loopback trust only when it is on, and never through a proxy.
func TestTrust_Local(t *testing.T) {
	on, off := &api.Trust{Loopback: true}, &api.Trust{Loopback: false}
	if !on.Local(request("127.0.0.1:1")) || !on.Local(request("[::1]:1")) {
		t.Fatal("a direct loopback peer is not local with loopback trust on")
	}
	if off.Local(request("127.0.0.1:1")) {
		t.Fatal("loopback trust off (listening beyond loopback) but a loopback peer is local")
	}
	if on.Local(request("127.0.0.1:1", "X-Forwarded-For", "8.8.8.8")) || on.Local(request("127.0.0.1:1", "Cf-Connecting-Ip", "8.8.8.8")) {
		t.Fatal("a request through a local proxy is local")
	}
	if on.Local(request("192.168.1.5:1")) {
		t.Fatal("a LAN peer is local")
	}
	for host, local := range map[string]bool{"localhost:18789": true, "LOCALHOST": true, "[::1]:18789": true, "[::1]": true, "127.0.0.1": true,
		"evil.example:18789": false, "evil.example": false, "localhost.evil.example": false, "192.168.1.5:18789": false, "": false} {
		r := request("127.0.0.1:1")
		r.Host = host
		if on.Local(r) != local {
			t.Errorf("a loopback peer asking for Host %q: local = %v, want %v", host, !local, local)
		}
	}
}

// dialHeaders opens a gateway connection with extra request headers.
func dialHeaders(t testing.TB, url string, headers http.Header) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: headers})
}

// Rotating a forwarding header does not escape the failure limit (the
// peer is not a trusted proxy, so the header is not believed).
func TestGateway_ForgedForwardingHeadersDoNotEscapeTheLimit(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	for i := 0; i < 12; i++ {
		ws, _, err := dialHeaders(t, h.url, http.Header{"Cf-Connecting-Ip": {fmt.Sprintf("198.51.100.%d", i)}, "X-Forwarded-For": {fmt.Sprintf("203.0.113.%d", i)}})
		if err != nil {
			t.Fatal(err)
		}
		c := &client{t: t, ws: ws}
		c.readRes() // the challenge
		c.write(map[string]any{"type": "req", "id": "c", "method": "connect", "params": map[string]any{"minProtocol": 4, "maxProtocol": 4, "auth": map[string]any{"token": "wrong"}}})
		res := c.readRes()
		if i >= 10 && errDetail(res, "code") != "AUTH_RATE_LIMITED" {
			t.Fatalf("attempt %d with a fresh forged address = %v, want rate limited", i, res)
		}
		ws.CloseNow()
	}
}

// Unauthenticated connections are capped per address.
func TestGateway_PreauthConnectionsAreLimited(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	var open []*websocket.Conn
	defer func() {
		for _, ws := range open {
			ws.CloseNow()
		}
	}()
	for i := 0; ; i++ {
		ws, res, err := dialHeaders(t, h.url, nil)
		if err != nil {
			if res == nil || res.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("connection %d refused with %v %v", i, res, err)
			}
			if i != 16 {
				t.Fatalf("refused at connection %d, want 16 allowed", i)
			}
			break
		}
		open = append(open, ws)
		if i > 100 {
			t.Fatal("no limit on unauthenticated connections")
		}
	}
	// A connection that goes away frees its slot.
	open[0].CloseNow()
	open = open[1:]
	waitUntil(t, "a freed slot", func() bool {
		ws, _, err := dialHeaders(t, h.url, nil)
		if err == nil {
			open = append(open, ws)
		}
		return err == nil
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A device may grant only scopes it holds itself, over the protocol too.
func TestGateway_ApproverNeedsTheScopesItGrants(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	pairer := newDevice()
	res := dial(t, h.url).connect(connectOpts{token: testToken, device: pairer, scopes: []string{"operator.pairing"}})
	id := errDetail(res, "requestId").(string)
	h.svc.ApprovePairing(context.Background(), id, moltgate.OwnerScopes, moltgate.Meta{})
	p := dial(t, h.url)
	if res := p.connect(connectOpts{token: testToken, device: pairer, scopes: []string{"operator.pairing"}}); res["ok"] != true {
		t.Fatal(res)
	}
	greedy := dial(t, h.url).connect(connectOpts{token: testToken, device: newDevice(), scopes: []string{"operator.admin"}})
	res = p.call("device.pair.approve", map[string]any{"requestId": errDetail(greedy, "requestId")})
	if res["ok"] != false || errDetail(res, "code") != "MISSING_SCOPE" || !strings.Contains(fmt.Sprint(res["error"]), "operator.admin") {
		t.Fatalf("pairing-only device approving an admin = %v", res)
	}
}

// adminWith mounts the admin on a harness in DEV_MODE whose trust is t.
func adminWith(t *testing.T, trust *api.Trust, logs io.Writer) *harness {
	h := newHarness(t, "", agent.Echo{})
	h.gw.Trust, h.gw.DevMode = trust, true
	if logs != nil {
		h.gw.Logger = slog.New(slog.NewTextHandler(logs, nil))
		h.server.Logger = h.gw.Logger
	}
	h.server.MountAdmin(&api.Admin{Gateway: h.gw, Channels: h.svc, History: &projections.History{Log: h.log},
		AccessMissing: []string{"CF_ACCESS_TEAM_DOMAIN", "CF_ACCESS_AUD"}})
	return h
}

// DEV_MODE opens the admin to local clients only.
func TestAdmin_DevModeIsLocalOnly(t *testing.T) {
	local := adminWith(t, &api.Trust{Loopback: true}, nil)
	if code, _ := adminDo(t, local, "GET", "/api/admin/whoami", "", ""); code != 200 {
		t.Fatalf("local DEV_MODE = %d", code)
	}
	if code, _ := adminDo(t, local, "GET", "/api/admin/whoami", "", "", "X-Forwarded-For", "203.0.113.9"); code != 503 {
		t.Fatalf("proxied request in DEV_MODE = %d, want 503", code)
	}
	// Listening beyond loopback (a container): no local trust at all.
	remote := adminWith(t, &api.Trust{Loopback: false}, nil)
	for _, path := range []string{"/api/admin/whoami", "/api/admin/devices"} {
		if code, out := adminDo(t, remote, "GET", path, "", ""); code != 503 || !strings.Contains(fmt.Sprint(out), "CF_ACCESS_TEAM_DOMAIN") {
			t.Fatalf("%s from a non-local client in DEV_MODE = %d %v", path, code, out)
		}
	}
}

// A page on another name that resolves to 127.0.0.1 (DNS rebinding)
// reaches the gateway from a loopback peer, same-origin with itself: it
// is not local, so DEV_MODE and the token fallback do not open the admin.
func TestAdmin_DNSRebindingIsNotLocal(t *testing.T) {
	h := adminWith(t, &api.Trust{Loopback: true}, nil)
	base := strings.Replace(h.url, "ws://", "http://", 1)
	evil := "evil.example:" + base[strings.LastIndex(base, ":")+1:]
	for _, m := range []struct{ method, path, body string }{{"GET", "/api/admin/config", ""}, {"PUT", "/api/admin/config", `{"config":{}}`}, {"GET", "/_admin/", ""}} {
		req, _ := http.NewRequest(m.method, base+m.path, strings.NewReader(m.body))
		req.Host = evil
		req.Header.Set("Origin", "http://"+evil)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Authorization", "Bearer "+testToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s %s for Host %s from loopback = %d, want 503 (not local)", m.method, m.path, evil, res.StatusCode)
		}
	}
	if _, hash := h.models.Config.Current(); hash != "" {
		t.Fatal("the rebound page changed the config")
	}
}

// Bodies over 1 MB get 413 before they are read; cross-site writes get 403.
func TestAdmin_LimitsAndOrigin(t *testing.T) {
	h := adminWith(t, &api.Trust{Loopback: true}, nil)
	base := strings.Replace(h.url, "ws://", "http://", 1)
	big := bytes.Repeat([]byte("x"), api.MaxAdminBody+1)
	res, err := http.Post(base+"/api/admin/config/validate", "application/json", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body = %d, want 413", res.StatusCode)
	}
	// Without Content-Length (chunked), the limit cuts in while reading.
	req, _ := http.NewRequest("POST", base+"/api/admin/config/validate", io.MultiReader(strings.NewReader(`{"config":{"x":"`), bytes.NewReader(big), strings.NewReader(`"}}`)))
	req.ContentLength = -1
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversized body = %d, want 413", res.StatusCode)
	}

	if code, _ := adminDo(t, h, "PUT", "/api/admin/config", "", `{"config":{}}`, "Origin", "https://evil.example"); code != 403 {
		t.Fatalf("cross-origin write = %d, want 403", code)
	}
	if code, _ := adminDo(t, h, "PUT", "/api/admin/config", "", `{"config":{}}`, "Sec-Fetch-Site", "cross-site"); code != 403 {
		t.Fatalf("cross-site write = %d, want 403", code)
	}
	if code, _ := adminDo(t, h, "GET", "/api/admin/devices", "", "", "Origin", "https://evil.example"); code != 200 {
		t.Fatalf("cross-origin read = %d (reads are protected by CORS, not refused)", code)
	}
	if code, out := adminDo(t, h, "PUT", "/api/admin/config", "", `{"config":{}}`, "Origin", base); code != 200 {
		t.Fatalf("same-origin write = %d %v", code, out)
	}
}

// An internal error is logged with the request id the client is given.
func TestAdmin_InternalErrorsAreLoggedWithTheRequestID(t *testing.T) {
	logs := &syncWriter{w: &bytes.Buffer{}}
	h := adminWith(t, &api.Trust{Loopback: true}, logs)
	h.log.Close(context.Background()) // every read now fails inside
	code, out := adminDo(t, h, "GET", "/api/admin/events/1", "", "")
	e, _ := out["error"].(map[string]any)
	d, _ := e["details"].(map[string]any)
	id, _ := d["requestId"].(string)
	if code != 500 || e["message"] != "internal error" || id == "" {
		t.Fatalf("internal error answer = %d %v", code, out)
	}
	if !strings.Contains(logs.String(), "requestId="+id) || !strings.Contains(logs.String(), "internal error") {
		t.Fatalf("log does not name request %s:\n%s", id, logs.String())
	}
}

// The HTTP routes that check a credential share the handshake's budget of
// failures: ten wrong tokens or secrets a minute, over /metrics, a route
// mounted with Handle (as /cdp is) and the admin's Access, and then even
// the right one is refused, over HTTP (429) and WebSocket alike.
func TestHTTP_FailuresShareTheHandshakeBudget(t *testing.T) {
	h, p, good := adminHarness(t)
	h.server.MountMetrics(h.gw, nil)
	const secret = "the-cdp-secret"
	h.server.Handle("", "/guarded", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			http.Error(w, "wrong secret", http.StatusUnauthorized)
		}
	}), h.gw.LimitFailures)
	get := func(path, auth string, headers ...string) int {
		t.Helper()
		code, _ := adminDo(t, h, "GET", path, "", "", append([]string{"Authorization", auth}, headers...)...)
		return code
	}
	if code := get("/guarded", "Bearer "+secret); code != 200 {
		t.Fatalf("the right secret = %d", code)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged := p.sign(t, jwt.SigningMethodRS256, "rsa-1", other, p.claims(nil)) // signed by someone else
	for i := range 10 {
		var code int
		switch i % 3 {
		case 0:
			code = get("/metrics", "Bearer wrong")
		case 1:
			code = get("/guarded", "Bearer wrong")
		default:
			code, _ = adminDo(t, h, "GET", "/api/admin/devices", forged, "")
		}
		if code != 401 {
			t.Fatalf("failure %d = %d, want 401", i, code)
		}
	}
	if code := get("/metrics", "Bearer "+testToken); code != 429 {
		t.Fatalf("/metrics with the right token after ten failures = %d, want 429", code)
	}
	if code := get("/guarded", "Bearer "+secret); code != 429 {
		t.Fatalf("a Handle route with the right secret after ten failures = %d, want 429", code)
	}
	if code, _ := adminDo(t, h, "GET", "/api/admin/devices", good, ""); code != 429 {
		t.Fatalf("the admin with a good Access token after ten failures = %d, want 429", code)
	}
	if res := dial(t, h.url).connect(connectOpts{token: testToken}); errDetail(res, "code") != "AUTH_RATE_LIMITED" {
		t.Fatalf("the handshake after ten HTTP failures = %v, want AUTH_RATE_LIMITED", res)
	}
}
