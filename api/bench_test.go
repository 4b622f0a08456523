package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/moltgate/moltgate/agent"
	"github.com/moltgate/moltgate/api"
	"github.com/moltgate/moltgate/commands"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/fakellm"
	"github.com/moltgate/moltgate/internal/fakes3"
	"github.com/moltgate/moltgate/projections"
)

func percentile(d []time.Duration, p int) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, len(d)*p/100)]
}

// BenchmarkTimeToFirstToken compares the first token through the whole
// gateway (chat.send over WebSocket → log → runner → provider → chat event)
// with the same fake model called directly through the same provider.
func BenchmarkTimeToFirstToken(b *testing.B) {
	fake := fakellm.NewOpenAI(b)
	fake.Script(fakellm.Step{Tokens: fakellm.Tokens("one two three")})
	provider := agent.NewOpenAI("sk-bench", fake.URL, nil, nil)

	direct := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		start := time.Now()
		first := time.Duration(0)
		if _, err := provider.Stream(context.Background(), req0, func(string) {
			if first == 0 {
				first = time.Since(start)
			}
		}); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, first)
	}

	h := newHarness(b, "", provider)
	c := h.operator()
	gateway := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		runID := c.ok("chat.send", map[string]any{"sessionKey": fmt.Sprint("ttft-", i), "message": "hi", "idempotencyKey": strconv.Itoa(i)})["runId"]
		c.event("chat", func(p map[string]any) bool { return p["runId"] == runID && p["state"] == "delta" })
		gateway = append(gateway, time.Since(start))
		c.event("chat", func(p map[string]any) bool { return p["runId"] == runID && p["state"] == "final" })
	}
	b.StopTimer()
	d50, d99, g50, g99 := percentile(direct, 50), percentile(direct, 99), percentile(gateway, 50), percentile(gateway, 99)
	b.ReportMetric(float64(d50.Microseconds())/1000, "direct-p50-ms")
	b.ReportMetric(float64(g50.Microseconds())/1000, "gateway-p50-ms")
	b.ReportMetric(float64((g50-d50).Microseconds())/1000, "added-p50-ms")
	// p99s side by side: their difference is no one request's cost.
	b.ReportMetric(float64(d99.Microseconds())/1000, "direct-p99-ms")
	b.ReportMetric(float64(g99.Microseconds())/1000, "gateway-p99-ms")
}

// timedProvider streams n deltas at a model's pace (gap between tokens),
// each carrying the time it was emitted, so a client can measure how long
// the gateway took to deliver it.
type timedProvider struct {
	n   int
	gap time.Duration
}

func (p timedProvider) Stream(ctx context.Context, req agent.Request, onDelta func(string)) (agent.Reply, error) {
	var sb strings.Builder
	for i := 0; i < p.n; i++ {
		select {
		case <-ctx.Done():
			return agent.Reply{}, ctx.Err()
		case <-time.After(p.gap):
		}
		tok := strconv.FormatInt(time.Now().UnixNano(), 10) + " "
		sb.WriteString(tok)
		onDelta(tok)
	}
	return agent.Reply{Text: sb.String()}, nil
}

// chatFrame is the part of a `chat` event the load clients read; decoding
// into a struct keeps the clients (which share the machine) cheap.
type chatFrame struct {
	Type    string `json:"type"`
	Event   string `json:"event"`
	ID      string `json:"id"`
	OK      bool   `json:"ok"`
	Payload struct {
		RunID     string `json:"runId"`
		State     string `json:"state"`
		DeltaText string `json:"deltaText"`
	} `json:"payload"`
}

// BenchmarkConcurrentSessions: 1,000 WebSocket clients each send one
// message and stream a 200-token reply from a model that produces 50
// tokens a second. Reports the wall time, the delivery latency of a delta
// (provider emit → client receive), errors, and the heap of the process
// (the gateway and the 1,000 clients, which share the 2 cores).
//
// Two shapes of delta in the same run: "v4" (OpenClaw's, each delta
// repeating the whole reply so far) and "delta-only" (clients that ask for
// api.CapDeltaOnly get only the new text).
func BenchmarkConcurrentSessions(b *testing.B) {
	for _, mode := range []string{"v4", "delta-only"} {
		b.Run(mode, func(b *testing.B) { concurrentSessions(b, mode == "delta-only") })
	}
}

func concurrentSessions(b *testing.B, deltaOnly bool) {
	const sessions, tokens = 1000, 200
	caps := []string{}
	if deltaOnly {
		caps = []string{api.CapDeltaOnly}
	}
	for i := 0; i < b.N; i++ {
		h := newHarness(b, "", timedProvider{n: tokens, gap: 20 * time.Millisecond})
		h.gw.Policy.TickInterval = time.Minute
		h.agent.DeltaInterval = agent.DefaultDeltaInterval
		clients := make([]*client, sessions)
		for j := range clients {
			c := dial(b, h.url)
			if res := c.connect(connectOpts{token: testToken, raw: true, tamper: func(p map[string]any) { p["caps"] = caps }}); res["ok"] != true {
				b.Fatal(res)
			}
			clients[j] = c
		}
		var mu sync.Mutex
		var lat []time.Duration
		errors := 0
		var wg sync.WaitGroup
		start := time.Now()
		for j, c := range clients {
			wg.Add(1)
			go func(j int, c *client) {
				defer wg.Done()
				key := fmt.Sprint("load-", j)
				local := make([]time.Duration, 0, tokens)
				ok := func() bool {
					data, _ := json.Marshal(map[string]any{"type": "req", "id": "send", "method": "chat.send",
						"params": map[string]any{"sessionKey": key, "message": "go", "idempotencyKey": key}})
					if c.ws.Write(context.Background(), websocket.MessageText, data) != nil {
						return false
					}
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					defer cancel()
					for {
						_, data, err := c.ws.Read(ctx)
						if err != nil {
							return false
						}
						var f chatFrame
						if json.Unmarshal(data, &f) != nil {
							return false
						}
						switch {
						case f.Type == "res" && !f.OK:
							return false
						case f.Event != "chat":
						case f.Payload.State == "delta":
							// A coalesced delta carries several tokens: each one's latency counts.
							for _, field := range strings.Fields(f.Payload.DeltaText) {
								sent, _ := strconv.ParseInt(field, 10, 64)
								local = append(local, time.Since(time.Unix(0, sent)))
							}
						default:
							return f.Payload.State == "final"
						}
					}
				}()
				mu.Lock()
				defer mu.Unlock()
				if !ok || len(local) != tokens {
					errors++
				}
				lat = append(lat, local...)
			}(j, c)
		}
		wg.Wait()
		elapsed := time.Since(start)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(elapsed.Seconds(), "s-total")
		b.ReportMetric(float64(percentile(lat, 50).Microseconds())/1000, "delta-p50-ms")
		b.ReportMetric(float64(percentile(lat, 99).Microseconds())/1000, "delta-p99-ms")
		b.ReportMetric(float64(errors), "errors")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
		b.ReportMetric(float64(len(lat)), "deltas")
		h.close()
	}
}

// BenchmarkPairApprove measures the approval round trip: an unknown device
// is refused with NOT_PAIRED, an operator approves it, the device connects.
func BenchmarkPairApprove(b *testing.B) {
	h := newHarness(b, "", agent.Echo{})
	admin := h.operator()
	rounds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dev := newDevice()
		res := dial(b, h.url).connect(connectOpts{token: testToken, device: dev, scopes: []string{"operator.read"}})
		requestID := errDetail(res, "requestId")
		start := time.Now()
		admin.ok("device.pair.approve", map[string]any{"requestId": requestID})
		c := dial(b, h.url)
		if res := c.connect(connectOpts{token: testToken, device: dev, scopes: []string{"operator.read"}}); res["ok"] != true {
			b.Fatal(res)
		}
		rounds = append(rounds, time.Since(start))
		c.ws.CloseNow()
	}
	b.ReportMetric(float64(percentile(rounds, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(rounds, 99).Microseconds())/1000, "p99-ms")
}

var req0 = agent.Request{Model: "m", MaxTokens: 100, Messages: []agent.Message{{Role: "user", Text: "hi"}}}

// BenchmarkApproveAll approves a full queue (commands.MaxPendingDevices)
// with one admin call: one command per device, each its own transaction
// with its fsync, without a replica and with one (gofakes3 on loopback:
// each approval then also waits until the replica holds it). Moltworker
// runs one CLI process per device, 10–15 s each.
func BenchmarkApproveAll(b *testing.B) {
	s3 := fakes3.New(b)
	for _, tc := range []struct {
		name    string
		replica func(i int) *eventlog.ReplicaConfig // a fresh prefix each time
	}{{"no-replica", func(int) *eventlog.ReplicaConfig { return nil }}, {"replica", func(i int) *eventlog.ReplicaConfig { return ptr(s3.Config(fmt.Sprint("approve-all-", i))) }}} {
		b.Run(tc.name, func(b *testing.B) {
			var took []time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				h := newHarnessReplica(b, "", agent.Echo{}, tc.replica(i))
				h.server.MountAdmin(&api.Admin{Gateway: h.gw, History: &projections.History{Log: h.log}})
				for j := 0; j < commands.MaxPendingDevices; j++ { // a full queue
					dial(b, h.url).connect(connectOpts{token: testToken, device: newDevice()})
				}
				base := strings.Replace(h.url, "ws://", "http://", 1)
				b.StartTimer()
				start := time.Now()
				req, _ := http.NewRequest("POST", base+"/api/admin/devices/approve-all", nil)
				req.Header.Set("Authorization", "Bearer "+testToken)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				var out struct{ Approved, Failed []any }
				json.NewDecoder(res.Body).Decode(&out)
				res.Body.Close()
				took = append(took, time.Since(start))
				if len(out.Approved) != commands.MaxPendingDevices || len(out.Failed) != 0 {
					b.Fatalf("approved %d failed %d", len(out.Approved), len(out.Failed))
				}
				b.StopTimer()
				h.close()
			}
			b.ReportMetric(float64(percentile(took, 50).Microseconds())/1000, "ms-for-all-p50")
			b.ReportMetric(float64(percentile(took, 50).Microseconds())/1000/float64(commands.MaxPendingDevices), "ms-per-device")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func ptr[T any](v T) *T { return &v }
