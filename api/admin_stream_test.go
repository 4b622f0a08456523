package api_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/agent"
	"github.com/moltgate/moltgate/api"
	"github.com/moltgate/moltgate/internal/fakes3"
	"github.com/moltgate/moltgate/projections"
)

// sseFrame is one Server-Sent Event as a client parses it; a comment
// (": ping") has only comment set.
type sseFrame struct {
	id, event, data, comment string
	at                       time.Time // when the client parsed it
}

func (f sseFrame) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(f.data), &m); err != nil {
		t.Fatalf("%s frame data %q: %v", f.event, f.data, err)
	}
	return m
}

func (f sseFrame) seq(t testing.TB) int64 {
	t.Helper()
	n, err := strconv.ParseInt(f.id, 10, 64)
	if err != nil {
		t.Fatalf("%s frame id %q: %v", f.event, f.id, err)
	}
	return n
}

// sseStream is an open GET /api/admin/stream, read by a goroutine that
// parses frames as the EventSource spec says.
type sseStream struct {
	t      testing.TB
	res    *http.Response
	cancel context.CancelFunc
	frames chan sseFrame
	ended  chan struct{} // closed when the body ends
}

// streamClient opens one connection per stream, so that closing a stream
// closes its connection.
var streamClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// streamRequest sends the stream request with header pairs and returns
// the response, whatever its status.
func streamRequest(t testing.TB, h *harness, query string, headers ...string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", strings.Replace(h.url, "ws://", "http://", 1)+"/api/admin/stream"+query, nil)
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := streamClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return res, cancel
}

// openStream opens the stream and fails unless it is a 200 event stream.
func openStream(t testing.TB, h *harness, query string, headers ...string) *sseStream {
	t.Helper()
	res, cancel := streamRequest(t, h, query, headers...)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		t.Fatalf("stream = %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	s := &sseStream{t: t, res: res, cancel: cancel, frames: make(chan sseFrame, 4096), ended: make(chan struct{})}
	go s.read()
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) read() {
	defer close(s.ended)
	defer close(s.frames)
	r := bufio.NewReader(s.res.Body)
	var f sseFrame
	var data []string
	seen := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if seen {
				f.data, f.at = strings.Join(data, "\n"), time.Now()
				s.frames <- f
			}
			f, data, seen = sseFrame{}, nil, false
			continue
		}
		seen = true
		if c, ok := strings.CutPrefix(line, ":"); ok {
			f.comment = strings.TrimSpace(c)
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "id":
			f.id = value
		case "event":
			f.event = value
		case "data":
			data = append(data, value)
		}
	}
}

func (s *sseStream) close() {
	s.cancel()
	s.res.Body.Close()
}

// next returns the next frame that is not a keep-alive or a storage
// update (those come on timers): what the stream says about the log.
func (s *sseStream) next() sseFrame {
	s.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				s.t.Fatal("the stream ended")
			}
			if f.comment != "" || f.event == "storage" {
				continue
			}
			return f
		case <-timeout:
			s.t.Fatal("no frame within 10 s")
		}
	}
}

// expect reads the next frame and fails unless it is of kind.
func (s *sseStream) expect(kind string) (sseFrame, map[string]any) {
	s.t.Helper()
	f := s.next()
	if f.event != kind {
		s.t.Fatalf("frame %q (id %q, %s), want %q", f.event, f.id, f.data, kind)
	}
	return f, f.json(s.t)
}

// expectLog reads an event's log frame and checks it against the log.
func (s *sseStream) expectLog(h *harness, typ string) int64 {
	s.t.Helper()
	f, m := s.expect("log")
	seq := f.seq(s.t)
	e, err := h.log.GetSeq(context.Background(), seq)
	if err != nil || e.Type != typ || m["type"] != typ || m["seq"] != float64(seq) {
		s.t.Fatalf("log frame %s (id %d) for %s; the log has %+v (%v)", f.data, seq, typ, e, err)
	}
	if _, hasData := m["data"]; hasData {
		s.t.Fatalf("log frame carries the payload: %s", f.data)
	}
	return seq
}

// logIDs collects the ids of log frames until the one with seq last.
func (s *sseStream) logIDs(last int64) []int64 {
	s.t.Helper()
	var ids []int64
	for {
		f := s.next()
		if f.id == "" {
			continue
		}
		if f.event != "log" {
			s.t.Fatalf("a %s frame carries id %s", f.event, f.id)
		}
		ids = append(ids, f.seq(s.t))
		if ids[len(ids)-1] >= last {
			return ids
		}
	}
}

// goroutines counts the goroutines whose stack mentions fn.
func goroutines(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

const (
	streamFunc       = "api.(*adminStream)"
	subscriptionFunc = "eventlog.(*Log).Subscribe.func"
)

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAdminStream_DevicePairing(t *testing.T) {
	h, _, good := adminHarness(t)
	s := openStream(t, h, "", "Cf-Access-Jwt-Assertion", good)
	f, snap := s.expect("snapshot")
	if f.seq(t) != h.log.LastSeq() || len(snap["devices"].(map[string]any)["pending"].([]any)) != 0 || snap["storage"].(map[string]any)["configured"] != false {
		t.Fatalf("snapshot id %s: %s", f.id, f.data)
	}

	// A device asks to pair: the open stream's very next frames are its
	// request and its log line, with nothing asked of the server.
	dev := newDevice()
	requestID := errDetail(dial(t, h.url).connect(connectOpts{token: testToken, device: dev}), "requestId").(string)
	_, req := s.expect("device.pair.requested")
	if req["requestId"] != requestID || req["deviceId"] != dev.id() || req["state"] != "pending" || req["expiresAtMs"].(float64) <= float64(time.Now().UnixMilli()) {
		t.Fatalf("request frame = %v", req)
	}
	if seq := s.expectLog(h, moltgate.EventDevicePairingRequested); req["seq"] != float64(seq) {
		t.Fatalf("request frame seq %v, log frame id %d", req["seq"], seq)
	}

	if code, out := adminDo(t, h, "POST", "/api/admin/devices/"+requestID+"/approve", good, ""); code != 200 {
		t.Fatalf("approve = %d %v", code, out)
	}
	_, res := s.expect("device.pair.resolved")
	device, _ := res["device"].(map[string]any)
	if res["decision"] != "approved" || res["requestId"] != requestID || res["actor"] != "owner@example.com" ||
		device["deviceId"] != dev.id() || device["state"] != "paired" || device["clientId"] != "cli" || device["approvedAtMs"] == nil {
		t.Fatalf("approval frame = %v", res)
	}
	s.expectLog(h, moltgate.EventDevicePairingApproved)

	other := newDevice()
	otherRequest := errDetail(dial(t, h.url).connect(connectOpts{token: testToken, device: other}), "requestId").(string)
	s.expect("device.pair.requested")
	s.expectLog(h, moltgate.EventDevicePairingRequested)
	if code, _ := adminDo(t, h, "POST", "/api/admin/devices/"+otherRequest+"/reject", good, `{"reason":"not mine"}`); code != 200 {
		t.Fatalf("reject = %d", code)
	}
	if _, res := s.expect("device.pair.resolved"); res["decision"] != "rejected" || res["requestId"] != otherRequest || res["reason"] != "not mine" {
		t.Fatalf("rejection frame = %v", res)
	}
	s.expectLog(h, moltgate.EventDevicePairingRejected)

	if code, _ := adminDo(t, h, "DELETE", "/api/admin/devices/"+dev.id(), good, ""); code != 200 {
		t.Fatalf("remove = %d", code)
	}
	if _, res := s.expect("device.pair.resolved"); res["decision"] != "removed" || res["deviceId"] != dev.id() {
		t.Fatalf("removal frame = %v", res)
	}
	s.expectLog(h, moltgate.EventDeviceRemoved)

	code, out := adminDo(t, h, "PUT", "/api/admin/config", good, `{"config":{"agents":{}}}`)
	if code != 200 {
		t.Fatalf("apply config = %d %v", code, out)
	}
	if _, cfg := s.expect("config.changed"); cfg["hash"] != out["hash"] || cfg["actor"] != "owner@example.com" {
		t.Fatalf("config frame = %v, applied %v", cfg, out["hash"])
	}
	s.expectLog(h, moltgate.EventConfigApplied)
}

func TestAdminStream_ChannelPairing(t *testing.T) {
	h, _, good := adminHarness(t)
	s := openStream(t, h, "", "Cf-Access-Jwt-Assertion", good)
	s.expect("snapshot")
	ctx := context.Background()
	code, _, err := h.svc.RequestChannelPairing(ctx, "telegram", "4242", "Ada Lovelace", nil, moltgate.Meta{Source: moltgate.SourceChannel})
	if err != nil {
		t.Fatal(err)
	}
	_, req := s.expect("channel.pair.requested")
	if req["channel"] != "telegram" || req["senderId"] != "4242" || req["senderName"] != "Ada Lovelace" || req["code"] != code ||
		req["expiresAtMs"].(float64) <= float64(time.Now().UnixMilli()) || req["requestedAtMs"].(float64) <= 0 {
		t.Fatalf("channel request frame = %v", req)
	}
	s.expectLog(h, moltgate.EventChannelPairingRequested)

	if st, out := adminDo(t, h, "POST", "/api/admin/channels/telegram/pairing/"+code+"/approve", good, `{"notify": true}`); st != 200 {
		t.Fatalf("approve = %d %v", st, out)
	}
	_, res := s.expect("channel.pair.resolved")
	if res["decision"] != "approved" || res["channel"] != "telegram" || res["code"] != code || res["senderId"] != "4242" || res["notify"] != true || res["actor"] != "owner@example.com" {
		t.Fatalf("channel approval frame = %v", res)
	}
	s.expectLog(h, moltgate.EventChannelPairingApproved)

	code2, _, err := h.svc.RequestChannelPairing(ctx, "discord", "77", "Grace", nil, moltgate.Meta{Source: moltgate.SourceChannel})
	if err != nil {
		t.Fatal(err)
	}
	s.expect("channel.pair.requested")
	s.expectLog(h, moltgate.EventChannelPairingRequested)
	if st, _ := adminDo(t, h, "POST", "/api/admin/channels/discord/pairing/"+code2+"/reject", good, ""); st != 200 {
		t.Fatalf("reject = %d", st)
	}
	if _, res := s.expect("channel.pair.resolved"); res["decision"] != "rejected" || res["channel"] != "discord" || res["code"] != code2 {
		t.Fatalf("channel rejection frame = %v", res)
	}
	s.expectLog(h, moltgate.EventChannelPairingRejected)

	// A new stream's snapshot lists who still waits.
	code3, _, _ := h.svc.RequestChannelPairing(ctx, "slack", "U1", "Linus", nil, moltgate.Meta{})
	_, snap := openStream(t, h, "", "Cf-Access-Jwt-Assertion", good).expect("snapshot")
	pending := snap["channels"].(map[string]any)["pending"].([]any)
	if len(pending) != 1 || pending[0].(map[string]any)["code"] != code3 || pending[0].(map[string]any)["senderName"] != "Linus" {
		t.Fatalf("snapshot senders = %v", pending)
	}
}

// deviceRequests appends n device pairing requests in one commit, as
// unknown devices would make them, and returns their device ids.
func deviceRequests(tb testing.TB, h *harness, n int, displayName string) []string {
	tb.Helper()
	var events []moltgate.Event
	var ids []string
	for range n {
		id := make([]byte, 32)
		rand.Read(id)
		deviceID := hex.EncodeToString(id)
		e := moltgate.MustEvent(moltgate.DeviceStream(deviceID), moltgate.EventDevicePairingRequested, moltgate.DevicePairingRequestedData{
			RequestID: moltgate.NewID(), DeviceID: deviceID, PublicKey: "k", DisplayName: displayName, Role: "operator", Scopes: []string{},
			ExpiresAtMs: time.Now().Add(time.Hour).UnixMilli()}, moltgate.Meta{Source: moltgate.SourceUI})
		e.Version = 1
		events = append(events, e)
		ids = append(ids, deviceID)
	}
	if _, err := h.log.Append(context.Background(), events...); err != nil {
		tb.Fatal(err)
	}
	return ids
}

func consecutive(from, to int64) []int64 {
	var out []int64
	for n := from; n <= to; n++ {
		out = append(out, n)
	}
	return out
}

func TestAdminStream_Resume(t *testing.T) {
	h, _, good := adminHarness(t)
	auth := []string{"Cf-Access-Jwt-Assertion", good}
	s := openStream(t, h, "", auth...)
	s.expect("snapshot")
	deviceRequests(t, h, 3, "before")
	ids := s.logIDs(h.log.LastSeq())
	last := ids[len(ids)-1]
	s.close()

	// While no one listens: more requests, a config change, a device.
	deviceRequests(t, h, 5, "while away")
	if code, _ := adminDo(t, h, "PUT", "/api/admin/config", good, `{"config":{"agents":{}}}`); code != 200 {
		t.Fatalf("apply = %d", code)
	}
	dial(t, h.url).connect(connectOpts{token: testToken, device: newDevice()})
	missed := h.log.LastSeq()
	if missed-last < 7 {
		t.Fatalf("only %d events appended while disconnected", missed-last)
	}

	for name, resume := range map[string][]string{
		"Last-Event-ID header": append([]string{"Last-Event-ID", strconv.FormatInt(last, 10)}, auth...),
		"lastEventId query":    auth,
	} {
		query := ""
		if name == "lastEventId query" {
			query = "?lastEventId=" + strconv.FormatInt(last, 10)
		}
		r := openStream(t, h, query, resume...)
		if _, m := r.expect("resume"); m["after"] != float64(last) {
			t.Fatalf("%s: resume frame %v", name, m)
		}
		// One event after reconnecting marks the end: every seq from
		// last+1 to it must come exactly once, in order.
		deviceRequests(t, h, 1, "after "+name)
		end := h.log.LastSeq()
		if got, want := r.logIDs(end), consecutive(last+1, end); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: resumed ids %v, want %v", name, got, want)
		}
		r.close()
	}

	// A client that saw more than this log holds (a restore from an older
	// replica) starts afresh.
	end := h.log.LastSeq()
	r := openStream(t, h, "", append([]string{"Last-Event-ID", strconv.FormatInt(end+100, 10)}, auth...)...)
	// The snapshot is the read models' seq, which may be a commit behind
	// the log; the stream brings what they had not applied yet.
	f, _ := r.expect("snapshot")
	if from := f.seq(t); from > end {
		t.Fatalf("snapshot id %d past the log's end %d", from, end)
	} else if from < end {
		if got := r.logIDs(end); fmt.Sprint(got) != fmt.Sprint(consecutive(from+1, end)) {
			t.Fatalf("after a snapshot at %d: ids %v", from, got)
		}
	}
	for _, bad := range []string{"abc", "-1", "1.5"} {
		res, cancel := streamRequest(t, h, "", append([]string{"Last-Event-ID", bad}, auth...)...)
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "Last-Event-ID must be") {
			t.Fatalf("Last-Event-ID %q = %d %s", bad, res.StatusCode, b)
		}
	}
}

func TestAdminStream_Credentials(t *testing.T) {
	h, p, good := adminHarness(t)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged := p.sign(t, jwt.SigningMethodRS256, "rsa-1", other, p.claims(nil))
	expired := p.sign(t, jwt.SigningMethodRS256, "rsa-1", p.rsaKey, p.claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))
	for name, tok := range map[string]string{"none": "", "forged": forged, "expired": expired} {
		res, cancel := streamRequest(t, h, "", "Cf-Access-Jwt-Assertion", tok)
		res.Body.Close()
		cancel()
		if res.StatusCode != http.StatusUnauthorized || strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
			t.Errorf("%s credential: %d %s, want 401", name, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	openStream(t, h, "", "Cf-Access-Jwt-Assertion", good).expect("snapshot")
	// With Access configured, a gateway token in the query is not a
	// credential for a remote client.
	res, cancel := streamRequest(t, h, "?token="+testToken, "X-Forwarded-For", "203.0.113.5")
	res.Body.Close()
	cancel()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("remote ?token= with Access = %d, want 401", res.StatusCode)
	}

	// A client that does not ask for an event stream is told to.
	if code, out := adminDo(t, h, "GET", "/api/admin/stream", good, ""); code != 400 || !strings.Contains(fmt.Sprint(out), "Accept: text/event-stream") {
		t.Fatalf("without Accept = %d %v", code, out)
	}
}

// Streams are bounded: one more than the limit is refused with 429 until
// one closes.
func TestAdminStream_Limit(t *testing.T) {
	h, _, good := adminHarness(t)
	var open []*sseStream
	for range 8 {
		s := openStream(t, h, "", "Cf-Access-Jwt-Assertion", good)
		s.expect("snapshot")
		open = append(open, s)
	}
	res, cancel := streamRequest(t, h, "", "Cf-Access-Jwt-Assertion", good)
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	cancel()
	if res.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "admin streams are open") {
		t.Fatalf("a ninth stream = %d %s", res.StatusCode, b)
	}
	open[0].close()
	waitFor(t, "the closed stream's slot is free", func() bool {
		res, cancel := streamRequest(t, h, "", "Cf-Access-Jwt-Assertion", good)
		defer cancel()
		defer res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

// Without Access, the stream takes the gateway token from the query
// (EventSource cannot send headers) for local requests only; the rest of
// the admin still wants the header.
func TestAdminStream_LocalToken(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	h.server.MountAdmin(&api.Admin{Gateway: h.gw, History: &projections.History{Log: h.log}, AccessMissing: []string{"CF_ACCESS_TEAM_DOMAIN", "CF_ACCESS_AUD"}})
	openStream(t, h, "?token="+testToken).expect("snapshot")
	openStream(t, h, "", "Authorization", "Bearer "+testToken).expect("snapshot")
	for name, c := range map[string]struct {
		query   string
		headers []string
		want    int
	}{
		"a wrong token":             {"?token=wrong", nil, http.StatusUnauthorized},
		"no token":                  {"", nil, http.StatusUnauthorized},
		"the token through a proxy": {"?token=" + testToken, []string{"X-Forwarded-For", "203.0.113.5"}, http.StatusServiceUnavailable},
	} {
		res, cancel := streamRequest(t, h, c.query, c.headers...)
		res.Body.Close()
		cancel()
		if res.StatusCode != c.want {
			t.Errorf("%s = %d, want %d", name, res.StatusCode, c.want)
		}
	}
	if code, _ := adminDo(t, h, "GET", "/api/admin/devices?token="+testToken, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("/api/admin/devices?token= = %d: the guard changed", code)
	}
}

func TestAdminStream_EndsWithClientAndServer(t *testing.T) {
	h, _, good := adminHarness(t)
	streams, subscriptions := goroutines(streamFunc), goroutines(subscriptionFunc)
	s := openStream(t, h, "", "Cf-Access-Jwt-Assertion", good)
	s.expect("snapshot")
	waitFor(t, "the stream follows the log", func() bool {
		return goroutines(streamFunc) > streams && goroutines(subscriptionFunc) == subscriptions+1
	})
	s.close()
	waitFor(t, "the stream's goroutines end", func() bool {
		return goroutines(streamFunc) == streams && goroutines(subscriptionFunc) == subscriptions
	})

	// Keep-alives come while nothing happens (the harness ticks every 200 ms).
	s = openStream(t, h, "", "Cf-Access-Jwt-Assertion", good)
	timeout := time.After(10 * time.Second)
	for ping := false; !ping; {
		select {
		case f := <-s.frames:
			ping = f.comment == "ping"
		case <-timeout:
			t.Fatal("no keep-alive")
		}
	}

	// Shutting the server down ends the stream: Shutdown does not wait
	// out its deadline, and the client sees the end of the body.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.server.Close(ctx); err != nil {
		t.Fatalf("shutdown with a stream open: %v", err)
	}
	select {
	case <-s.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end at shutdown")
	}
	waitFor(t, "the stream's goroutines end", func() bool {
		return goroutines(streamFunc) == streams && goroutines(subscriptionFunc) == subscriptions
	})
}

// A client that stops reading is disconnected once its buffer stays full;
// it resumes from the last id it got, and loses nothing.
func TestAdminStream_SlowClient(t *testing.T) {
	h, _, good := adminHarness(t)
	addr := strings.TrimPrefix(h.url, "ws://")
	// A small receive buffer, so that the server's writes block soon.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return err
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/admin/stream", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cf-Access-Jwt-Assertion", good)
	streams := goroutines(streamFunc)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream is open", func() bool { return goroutines(streamFunc) > streams })

	// 1000 requests with 16 KiB names: far more than the socket buffers
	// and the stream's buffer hold.
	for range 10 {
		deviceRequests(t, h, 100, strings.Repeat("n", 16<<10))
	}
	waitFor(t, "the server drops the client", func() bool { return goroutines(streamFunc) == streams })

	// Read what reached the client before it was dropped.
	res, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	s := &sseStream{t: t, res: res, cancel: func() {}, frames: make(chan sseFrame, 4096), ended: make(chan struct{})}
	go s.read()
	var last int64
	for f := range s.frames {
		if f.id != "" {
			last = f.seq(t)
		}
	}
	if last >= h.log.LastSeq() {
		t.Fatalf("the client got every event (%d) although it did not read", last)
	}
	r := openStream(t, h, "", "Cf-Access-Jwt-Assertion", good, "Last-Event-ID", strconv.FormatInt(last, 10))
	r.expect("resume")
	if got, want := r.logIDs(h.log.LastSeq()), consecutive(last+1, h.log.LastSeq()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resumed %d ids from %d, want %d", len(got), last+1, len(want))
	}
}

// BenchmarkAdminStream measures how long a pairing request takes from its
// append to its frame at an admin stream client, and the old page's 1 s
// poll for comparison: a request waits for the next poll, uniformly 0-1 s
// (500 ms on average), plus that poll's round trip, measured here.
func BenchmarkAdminStream(b *testing.B) {
	h := newHarness(b, "", agent.Echo{})
	h.gw.DevMode = true // the requests are appended, not made by devices connecting
	h.server.MountAdmin(&api.Admin{Gateway: h.gw, History: &projections.History{Log: h.log}})
	s := openStream(b, h, "")
	s.expect("snapshot")
	stream, appends := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		deviceID := deviceRequests(b, h, 1, "bench")[0]
		appends = append(appends, time.Since(start))
		f, m := s.expect("device.pair.requested")
		if m["deviceId"] != deviceID {
			b.Fatalf("frame for %v, want %s", m["deviceId"], deviceID)
		}
		stream = append(stream, f.at.Sub(start))
		s.expect("log")
	}
	b.StopTimer()
	fetches := make([]time.Duration, 0, b.N)
	base := strings.Replace(h.url, "ws://", "http://", 1)
	for range b.N {
		start := time.Now()
		res, err := http.Get(base + "/api/admin/devices")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		fetches = append(fetches, time.Since(start))
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(percentile(stream, 50)), "stream-p50-ms")
	b.ReportMetric(ms(percentile(stream, 99)), "stream-p99-ms")
	b.ReportMetric(ms(percentile(appends, 50)), "append-p50-ms")
	b.ReportMetric(ms(500*time.Millisecond+percentile(fetches, 50)), "poll-p50-ms")
	b.ReportMetric(ms(990*time.Millisecond+percentile(fetches, 99)), "poll-p99-ms")
	b.ReportMetric(0, "ns/op")
}

// With a replica, the stream says when its status changes: a sync moves
// replicatedSeq (the page polls nothing for it).
func TestAdminStream_StorageFrames(t *testing.T) {
	h := newHarnessReplica(t, "", agent.Echo{}, ptr(fakes3.New(t).Config("stream")))
	h.server.MountAdmin(&api.Admin{Gateway: h.gw, History: &projections.History{Log: h.log}})
	s := openStream(t, h, "", "Authorization", "Bearer "+testToken)
	_, snap := s.expect("snapshot")
	if storage := snap["storage"].(map[string]any); storage["configured"] != true {
		t.Fatalf("snapshot storage = %v", storage)
	}
	deviceRequests(t, h, 3, "x")
	if err := h.log.SyncNow(t.Context()); err != nil {
		t.Fatal(err)
	}
	last, timeout := float64(h.log.LastSeq()), time.After(10*time.Second)
	for synced := false; !synced; {
		select {
		case f := <-s.frames:
			if f.event != "storage" {
				continue
			}
			st := f.json(t)
			status := st["status"].(map[string]any)
			if f.id != "" || st["configured"] != true || status["replica"] == "" {
				t.Fatalf("storage frame = id %q %v", f.id, st)
			}
			synced = status["replicatedSeq"] == last
		case <-timeout:
			t.Fatalf("no storage frame says seq %v is replicated", last)
		}
	}
}

// A stream asked for once the server is closing is refused: it would
// hold up the shutdown (the network is closed by then, so the router is
// asked directly, as a connection accepted just before would).
func TestAdminStream_RefusedAfterShutdown(t *testing.T) {
	h, _, good := adminHarness(t)
	if err := h.server.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/api/admin/stream", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cf-Access-Jwt-Assertion", good)
	rec := httptest.NewRecorder()
	h.server.Router().ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "shutting down") {
		t.Fatalf("a stream after shutdown = %d %s", rec.Code, rec.Body)
	}
}
