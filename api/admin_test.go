package api_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/agent"
	"github.com/moltgate/moltgate/api"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/projections"
)

// adminHarness is a gateway with the admin mounted behind Access.
func adminHarness(t *testing.T) (*harness, *idp, string) {
	h := newHarness(t, "", agent.Echo{})
	p := newIDP(t)
	access, err := api.NewAccess(t.Context(), p.url, testAud, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := &api.Admin{Access: access, Gateway: h.gw, Channels: h.svc, History: &projections.History{Log: h.log}}
	h.server.MountAdmin(admin)
	h.server.MountDebug(admin)
	good := p.sign(t, jwt.SigningMethodRS256, "rsa-1", p.rsaKey, p.claims(nil))
	return h, p, good
}

func adminDo(t *testing.T, h *harness, method, path, jwtToken, body string, headers ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, strings.Replace(h.url, "ws://", "http://", 1)+path, strings.NewReader(body))
	if jwtToken != "" {
		req.Header.Set("Cf-Access-Jwt-Assertion", jwtToken)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return res.StatusCode, out
}

// Every protected route, taken from the router itself so that a new route
// cannot be added unprotected, refuses a missing or forged credential and
// admits a good one. Each route is tried from its own client address
// (through a trusted proxy): from one, the failures would use up its
// budget (TestHTTP_FailuresShareTheHandshakeBudget) after a few routes.
func TestAdmin_EveryProtectedRoute(t *testing.T) {
	h, p, good := adminHarness(t)
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	h.gw.Trust = &api.Trust{Loopback: true, Proxies: func() []*net.IPNet { return []*net.IPNet{loopback} }}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged := p.sign(t, jwt.SigningMethodRS256, "rsa-1", other, p.claims(nil))
	expired := p.sign(t, jwt.SigningMethodRS256, "rsa-1", p.rsaKey, p.claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))
	n := 0
	for _, r := range h.server.Router().Routes() {
		if !strings.HasPrefix(r.Path, "/api/admin") && !strings.HasPrefix(r.Path, "/_admin") && !strings.HasPrefix(r.Path, "/debug") {
			continue
		}
		n++
		path := strings.NewReplacer(":id", "unknown-id", ":key", "unknown-session", ":seq", "999999").Replace(r.Path)
		client := []string{"Cf-Connecting-Ip", fmt.Sprintf("198.51.100.%d", n)}
		for name, tok := range map[string]string{"none": "", "forged": forged, "expired": expired} {
			if code, _ := adminDo(t, h, r.Method, path, tok, "", client...); code != http.StatusUnauthorized {
				t.Errorf("%s %s with %s credential: %d, want 401", r.Method, r.Path, name, code)
			}
		}
		if code, _ := adminDo(t, h, r.Method, path, good, "", client...); code == http.StatusUnauthorized || code == http.StatusForbidden {
			t.Errorf("%s %s with a good credential: %d", r.Method, r.Path, code)
		}
	}
	if n < 20 {
		t.Fatalf("only %d protected routes found", n)
	}
}

func TestAdmin_Actions(t *testing.T) {
	h, _, good := adminHarness(t)
	ctx := context.Background()
	res := dial(t, h.url).connect(connectOpts{token: testToken, device: newDevice()})
	requestID := errDetail(res, "requestId").(string)

	code, list := adminDo(t, h, "GET", "/api/admin/devices", good, "")
	if code != 200 || len(list["pending"].([]any)) != 1 {
		t.Fatalf("devices = %d %v", code, list)
	}
	if code, out := adminDo(t, h, "POST", "/api/admin/devices/"+requestID+"/approve", good, ""); code != 200 || out["success"] != true {
		t.Fatalf("approve = %d %v", code, out)
	}
	if code, _ := adminDo(t, h, "POST", "/api/admin/devices/"+requestID+"/approve", good, ""); code != 200 {
		t.Fatalf("double approval = %d, want idempotent 200", code)
	}
	if code, out := adminDo(t, h, "POST", "/api/admin/devices/nope/approve", good, ""); code != 404 || !strings.Contains(out["error"].(map[string]any)["message"].(string), "nope") {
		t.Fatalf("unknown id = %d %v", code, out)
	}
	events, _ := h.log.Query(ctx, eventlog.Filter{TypePrefix: moltgate.EventDevicePairingApproved})
	if len(events) != 1 || events[0].Meta.Actor != "owner@example.com" || events[0].Meta.Source != moltgate.SourceUI {
		t.Fatalf("approval event = %+v", events)
	}

	// Approve-all.
	for i := 0; i < 3; i++ {
		dial(t, h.url).connect(connectOpts{token: testToken, device: newDevice()})
	}
	if code, out := adminDo(t, h, "POST", "/api/admin/devices/approve-all", good, ""); code != 200 || len(out["approved"].([]any)) != 3 || len(out["failed"].([]any)) != 0 {
		t.Fatalf("approve-all = %d %v", code, out)
	}

	// Config: malformed body, stale baseHash, success.
	if code, _ := adminDo(t, h, "PUT", "/api/admin/config", good, `{"config": `); code != 400 {
		t.Fatalf("malformed body = %d", code)
	}
	code, out := adminDo(t, h, "PUT", "/api/admin/config", good, `{"config":{"agents":{}}}`)
	if code != 200 {
		t.Fatalf("apply = %d %v", code, out)
	}
	hash := out["hash"].(string)
	code, out = adminDo(t, h, "PUT", "/api/admin/config", good, `{"config":{"agents":{"x":1}},"baseHash":"stale"}`)
	if code != 409 || out["error"].(map[string]any)["details"].(map[string]any)["currentHash"] != hash {
		t.Fatalf("stale baseHash = %d %v", code, out)
	}

	// History: diff, one version, revert.
	first := h.models.Config.History()[0].Seq
	code, out = adminDo(t, h, "GET", "/api/admin/config/diff?from="+strconv.FormatInt(first, 10), good, "")
	if code != 200 || len(out["changes"].([]any)) != 0 {
		t.Fatalf("diff against itself = %d %v", code, out)
	}
	code, out = adminDo(t, h, "PUT", "/api/admin/config", good, `{"config":{"agents":{"defaults":{"model":{"primary":"openai/gpt-4o"}}}},"baseHash":"`+hash+`"}`)
	if code != 200 {
		t.Fatalf("second apply = %d %v", code, out)
	}
	code, out = adminDo(t, h, "GET", "/api/admin/config/diff?from="+strconv.FormatInt(first, 10), good, "")
	if changes := out["changes"].([]any); code != 200 || len(changes) != 1 || changes[0].(map[string]any)["path"] != "agents.defaults.model.primary" {
		t.Fatalf("diff = %d %v", code, out)
	}
	code, out = adminDo(t, h, "POST", "/api/admin/config/revert", good, `{"seq":`+strconv.FormatInt(first, 10)+`,"baseHash":"stale-hash"}`)
	if code != 409 {
		t.Fatalf("revert with a wrong baseHash = %d %v", code, out)
	}
	_, current := h.models.Config.Current()
	code, out = adminDo(t, h, "POST", "/api/admin/config/revert", good, `{"seq":`+strconv.FormatInt(first, 10)+`,"baseHash":"`+current+`"}`)
	if _, now := h.models.Config.Current(); code != 200 || now != hash {
		t.Fatalf("revert = %d %v (hash %s, want %s)", code, out, now, hash)
	}
	if code, _ := adminDo(t, h, "GET", "/api/admin/config/versions/1", good, ""); code != 404 {
		t.Fatalf("a non-config seq as a version = %d", code)
	}

	// Validate without applying.
	code, out = adminDo(t, h, "POST", "/api/admin/config/validate", good, `{"config":{"models":{"providers":{"x":{"api":"soap"}}}}}`)
	if code != 200 || out["valid"] != false || len(out["issues"].([]any)) != 1 {
		t.Fatalf("validate = %d %v", code, out)
	}

	// Events by actor and time.
	code, out = adminDo(t, h, "GET", "/api/admin/events?actor=owner@example.com&since="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), good, "")
	if code != 200 || len(out["events"].([]any)) == 0 {
		t.Fatalf("events by actor = %d %v", code, out)
	}
	for _, e := range out["events"].([]any) {
		if e.(map[string]any)["meta"].(map[string]any)["actor"] != "owner@example.com" {
			t.Fatalf("actor filter let through %v", e)
		}
		// The list is of envelopes, as the stream's log frames: a payload
		// is read one event at a time.
		if _, ok := e.(map[string]any)["data"]; ok {
			t.Fatalf("the events list carries a payload: %v", e)
		}
	}
	if code, _ := adminDo(t, h, "GET", "/api/admin/events?since=yesterday", good, ""); code != 400 {
		t.Fatalf("bad since = %d", code)
	}

	// Events page.
	code, out = adminDo(t, h, "GET", "/api/admin/events?type=device.&limit=2", good, "")
	if code != 200 || len(out["events"].([]any)) != 2 || out["nextBefore"] == nil {
		t.Fatalf("events = %d %v", code, out)
	}
	code, out = adminDo(t, h, "GET", "/api/admin/replay?seq=1", good, "")
	then := out["then"].(map[string]any)
	if code != 200 || len(then["devices"].(map[string]any)["pending"].([]any)) != 1 || len(out["now"].(map[string]any)["devices"].(map[string]any)["paired"].([]any)) != 4 {
		t.Fatalf("replay = %d %v", code, out)
	}
	if code, _ := adminDo(t, h, "GET", "/api/admin/replay?seq=999999", good, ""); code != 400 {
		t.Fatalf("replay past the end = %d", code)
	}
	if code, _ := adminDo(t, h, "GET", "/api/admin/events?limit=0", good, ""); code != 400 {
		t.Fatalf("bad limit = %d", code)
	}
	if code, out := adminDo(t, h, "POST", "/api/admin/storage/sync", good, ""); code != 503 || !strings.Contains(out["error"].(map[string]any)["message"].(string), "R2_ACCESS_KEY_ID") {
		t.Fatalf("backup without replica = %d %v", code, out)
	}
	if code, out := adminDo(t, h, "GET", "/api/admin/events/1", good, ""); code != 200 || out["type"] != moltgate.EventDevicePairingRequested {
		t.Fatalf("event 1 = %d %v", code, out)
	}
	if code, _ := adminDo(t, h, "GET", "/api/admin/events/999999", good, ""); code != 404 {
		t.Fatalf("unknown event = %d", code)
	}
	deviceID := events[0].Stream[len("device:"):]
	if code, _ := adminDo(t, h, "POST", "/api/admin/devices/"+deviceID+"/token/revoke", good, ""); code != 200 {
		t.Fatalf("revoke = %d", code)
	}
	revoked, _ := h.log.Query(ctx, eventlog.Filter{TypePrefix: moltgate.EventDeviceTokenRevoked})
	if len(revoked) != 1 || revoked[0].Meta.Actor != "owner@example.com" {
		t.Fatalf("revoke events = %+v", revoked)
	}
	if code, out := adminDo(t, h, "GET", "/api/status", "", ""); code != 200 || out["ready"] != true {
		t.Fatalf("public status = %d %v", code, out)
	}
}

func TestAdmin_WithoutAccess(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	h.server.MountAdmin(&api.Admin{Gateway: h.gw, History: &projections.History{Log: h.log}, AccessMissing: []string{"CF_ACCESS_TEAM_DOMAIN", "CF_ACCESS_AUD"}})
	if code, _ := adminDo(t, h, "GET", "/api/admin/devices", "", "", "Authorization", "Bearer "+testToken); code != 200 {
		t.Fatalf("loopback with token = %d", code)
	}
	if code, _ := adminDo(t, h, "GET", "/api/admin/devices", "", "", "Authorization", "Bearer wrong"); code != 401 {
		t.Fatalf("loopback with a wrong token = %d", code)
	}
	code, out := adminDo(t, h, "GET", "/api/admin/devices", "", "", "Authorization", "Bearer "+testToken, "X-Forwarded-For", "203.0.113.5")
	if code != 503 || !strings.Contains(out["error"].(map[string]any)["message"].(string), "CF_ACCESS_TEAM_DOMAIN") {
		t.Fatalf("through a proxy = %d %v", code, out)
	}
}

func TestMetrics(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	h.server.MountMetrics(h.gw, nil)
	h.svc.OnAppend = h.gw.ObserveAppend
	c := h.operator()
	runID := c.ok("chat.send", map[string]any{"sessionKey": "m", "message": "count me", "idempotencyKey": "m1"})["runId"]
	c.event("chat", func(p map[string]any) bool { return p["runId"] == runID && p["state"] == "final" })
	base := strings.Replace(h.url, "ws://", "http://", 1)
	if res, _ := http.Get(base + "/metrics"); res.StatusCode != 401 {
		t.Fatalf("/metrics without token = %d", res.StatusCode)
	}
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		body := string(b)
		if strings.Contains(body, `moltgate_events_appended_total{type="chat.run.finished"} 1`) &&
			strings.Contains(body, `moltgate_runs_total{state="final"} 1`) && strings.Contains(body, "moltgate_ws_connections 1") &&
			strings.Contains(body, "moltgate_append_seconds_count 2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDebug(t *testing.T) {
	h, _, good := adminHarness(t)
	code, out := adminDo(t, h, "GET", "/debug/models", good, "")
	if code != 200 || out["devices"] == nil {
		t.Fatalf("/debug/models = %d %v", code, out)
	}
	if code, out := adminDo(t, h, "GET", "/debug/build", good, ""); code != 200 || out["go"] == nil {
		t.Fatalf("/debug/build = %d %v", code, out)
	}
	if code, _ := adminDo(t, h, "GET", "/debug/pprof/cmdline", good, ""); code != 404 {
		t.Fatalf("/debug/pprof/cmdline = %d, want 404", code)
	}
	req, _ := http.NewRequest("GET", strings.Replace(h.url, "ws://", "http://", 1)+"/debug/pprof/heap?debug=1", nil)
	req.Header.Set("Cf-Access-Jwt-Assertion", good)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("heap profile = %d", res.StatusCode)
	}
}

func TestAdmin_Channels(t *testing.T) {
	h, _, good := adminHarness(t)
	ctx := context.Background()
	code, _, err := h.svc.RequestChannelPairing(ctx, "telegram", "4242", "Ada", nil, moltgate.Meta{Source: moltgate.SourceChannel})
	if err != nil {
		t.Fatal(err)
	}
	again, _, _ := h.svc.RequestChannelPairing(ctx, "telegram", "4242", "Ada", nil, moltgate.Meta{})
	if again != code {
		t.Fatalf("a second request got code %s, want %s", again, code)
	}
	st, out := adminDo(t, h, "GET", "/api/admin/channels", good, "")
	pending := out["pending"].([]any)
	if st != 200 || len(pending) != 1 || pending[0].(map[string]any)["senderName"] != "Ada" {
		t.Fatalf("channels = %d %v", st, out)
	}
	// The same shape as the stream's channel.pair.requested.
	if at, _ := pending[0].(map[string]any)["requestedAtMs"].(float64); at > float64(time.Now().UnixMilli()) || at < float64(time.Now().Add(-time.Minute).UnixMilli()) {
		t.Fatalf("pending sender = %v, want requestedAtMs", pending[0])
	}
	if st, _ := adminDo(t, h, "POST", "/api/admin/channels/telegram/pairing/WRONG123/approve", good, ""); st != 404 {
		t.Fatalf("unknown code = %d", st)
	}
	if st, _ := adminDo(t, h, "POST", "/api/admin/channels/myspace/pairing/"+code+"/approve", good, ""); st != 400 {
		t.Fatalf("unknown channel = %d", st)
	}
	if st, out := adminDo(t, h, "POST", "/api/admin/channels/telegram/pairing/"+code+"/approve", good, ""); st != 200 {
		t.Fatalf("approve = %d %v", st, out)
	}
	if !h.models.Channels.Allowed("telegram", "4242") {
		t.Fatal("approved sender not allowed")
	}
	st, out = adminDo(t, h, "PUT", "/api/admin/channels/telegram/allowlist", good, `{"add":["7"],"remove":["4242"]}`)
	if st != 200 || fmt.Sprint(out["allowlist"]) != "[7]" {
		t.Fatalf("allowlist = %d %v", st, out)
	}
	if st, _ := adminDo(t, h, "PUT", "/api/admin/channels/telegram/allowlist", good, `{"add":`); st != 400 {
		t.Fatalf("malformed body = %d", st)
	}
	events, _ := h.log.Query(ctx, eventlog.Filter{TypePrefix: "channel."})
	if len(events) != 3 || events[1].Meta.Actor != "owner@example.com" || events[2].Meta.Actor != "owner@example.com" {
		t.Fatalf("channel events = %+v", events)
	}
}

// The events list pages back to the first event and stops there: before=1
// lists nothing (UntilSeq 0 would have meant "no bound": the newest events
// again, and a client paging by nextBefore would loop).
func TestAdmin_EventPagesEnd(t *testing.T) {
	h, _, good := adminHarness(t)
	deviceRequests(t, h, 4, "x")
	var seqs []int64
	for path := "/api/admin/events?limit=3"; ; {
		code, out := adminDo(t, h, "GET", path, good, "")
		if code != 200 {
			t.Fatalf("%s = %d %v", path, code, out)
		}
		for _, e := range out["events"].([]any) {
			seqs = append(seqs, int64(e.(map[string]any)["seq"].(float64)))
		}
		next, ok := out["nextBefore"].(float64)
		if !ok {
			break
		}
		if len(seqs) > 4 {
			t.Fatalf("paging does not end: %v", seqs)
		}
		path = fmt.Sprintf("/api/admin/events?limit=3&before=%d", int64(next))
	}
	if fmt.Sprint(seqs) != "[4 3 2 1]" {
		t.Fatalf("pages = %v, want [4 3 2 1]", seqs)
	}
	for _, before := range []string{"1", "0", "-5"} {
		if code, out := adminDo(t, h, "GET", "/api/admin/events?before="+before, good, ""); code != 200 || len(out["events"].([]any)) != 0 || out["nextBefore"] != nil {
			t.Fatalf("before=%s = %d %v, want no events", before, code, out)
		}
	}
	if code, out := adminDo(t, h, "GET", "/api/admin/events?limit=4", good, ""); code != 200 || len(out["events"].([]any)) != 4 || out["nextBefore"] != nil {
		t.Fatalf("a full page ending at seq 1 = %d %v, want no nextBefore", code, out)
	}
}

// pagedReader is the log as an export must read it: a page at a time.
type pagedReader struct {
	moltgate.EventReader
	t       *testing.T
	queries atomic.Int32
}

func (r *pagedReader) Query(ctx context.Context, f moltgate.EventFilter) ([]moltgate.Event, error) {
	if f.Limit < 1 || f.Limit > 1000 {
		r.t.Errorf("a query of %d events", f.Limit)
	}
	r.queries.Add(1)
	return r.EventReader.Query(ctx, f)
}

func (r *pagedReader) Scan(ctx context.Context, f moltgate.EventFilter, fn func(moltgate.Event) error) error {
	r.t.Error("the export read the whole log in one transaction while writing to the client")
	return r.EventReader.Scan(ctx, f, fn)
}

// adminOver serves the admin (DEV_MODE, loopback trust) of a gateway over
// h's read models whose log reader is events, and returns its base URL.
func adminOver(t *testing.T, h *harness, events moltgate.EventReader) string {
	gw := api.NewGateway(testToken)
	gw.Trust, gw.DevMode = &api.Trust{Loopback: true}, true
	gw.Queries, gw.Events, gw.Storage, gw.Logger = h.models, events, h.log, h.log.Logger
	s := api.NewServer("127.0.0.1:0")
	s.MountAdmin(&api.Admin{Gateway: gw, Channels: h.svc, History: &projections.History{Log: h.log}})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	s.Ready()
	return s.URL()
}

// The export reads the log a page at a time, so no read transaction
// lasts while the client downloads, and the pages join up.
func TestAdmin_ExportPages(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	deviceRequests(t, h, 2100, "x")
	reader := &pagedReader{EventReader: h.log, t: t}
	base := adminOver(t, h, reader)
	for query, want := range map[string]int{"": 2100, "?after=50&before=1051": 1000, "?before=1": 0} {
		reader.queries.Store(0)
		res, err := http.Get(base + "/api/admin/events/export" + query)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for dec := json.NewDecoder(res.Body); ; {
			var e moltgate.Event
			if err := dec.Decode(&e); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, e.Seq)
		}
		res.Body.Close()
		if res.StatusCode != 200 || len(seqs) != want {
			t.Fatalf("export%s = %d with %d events, want %d", query, res.StatusCode, len(seqs), want)
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] != seqs[i-1]+1 {
				t.Fatalf("export%s: seq %d after %d", query, seqs[i], seqs[i-1])
			}
		}
		if pages := int(reader.queries.Load()); want > 0 && pages != want/1000+1 {
			t.Fatalf("export%s read %d pages for %d events", query, pages, want)
		}
	}
}

// A body that may be left out may be left out however it is framed: an
// empty chunked body has no Content-Length either. Given, it is read:
// {"notify": false} approves a sender without telling them.
func TestAdmin_OptionalBodies(t *testing.T) {
	h, _, good := adminHarness(t)
	requestID := errDetail(dial(t, h.url).connect(connectOpts{token: testToken, device: newDevice()}), "requestId").(string)
	req, _ := http.NewRequest("POST", strings.Replace(h.url, "ws://", "http://", 1)+"/api/admin/devices/"+requestID+"/reject", io.MultiReader())
	req.ContentLength = -1 // chunked
	req.Header.Set("Cf-Access-Jwt-Assertion", good)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("reject with an empty chunked body = %d", res.StatusCode)
	}
	if code, out := adminDo(t, h, "POST", "/api/admin/devices/"+requestID+"/reject", good, `{"reason": `); code != 400 {
		t.Fatalf("reject with a malformed body = %d %v", code, out)
	}

	code, _, err := h.svc.RequestChannelPairing(t.Context(), "telegram", "4242", "Ada", nil, moltgate.Meta{Source: moltgate.SourceChannel})
	if err != nil {
		t.Fatal(err)
	}
	if st, out := adminDo(t, h, "POST", "/api/admin/channels/telegram/pairing/"+code+"/approve", good, `{"notify":false}`); st != 200 {
		t.Fatalf("approve without notifying = %d %v", st, out)
	}
	events, _ := h.log.Query(t.Context(), eventlog.Filter{TypePrefix: moltgate.EventChannelPairingApproved})
	var d moltgate.ChannelPairingResolvedData
	if len(events) != 1 || events[0].Decode(&d) != nil || d.Notify {
		t.Fatalf("approval = %+v, want notify false", events)
	}
}
