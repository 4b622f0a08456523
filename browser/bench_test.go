package browser

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"
)

// reportMedian reports the median of durations, in units of scale.
func reportMedian(b *testing.B, d []time.Duration, scale time.Duration, unit string) float64 {
	b.Helper()
	slices.Sort(d)
	m := float64(d[len(d)/2]) / float64(scale)
	b.ReportMetric(m, unit)
	return m
}

const benchPage = `<!doctype html><title>bench</title><body style="font:16px sans-serif"><h1>moltgate</h1>` +
	`<p>A local page with some text and a box.</p><div style="width:200px;height:100px;background:#3a7"></div>`

// BenchmarkScreenshot is a 1280×800 screenshot of a local page: cold
// includes launching Chromium (not its exit), warm reuses the running
// browser (a new tab, load, capture, close tab), tab captures an open tab.
func BenchmarkScreenshot(b *testing.B) {
	site := pages(b, map[string]string{"/": benchPage})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()

	b.Run("cold", func(b *testing.B) {
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			m := NewManager()
			m.ExecPath, m.Logger = chromiumPath, quiet
			if err := m.Open(); err != nil {
				b.Fatal(err)
			}
			if _, err := Screenshot(ctx, m, site.URL+"/", ScreenshotOptions{}); err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(start))
			b.StopTimer()
			m.Close(ctx) // not measured: a user waits for the picture, not for the exit
			b.StartTimer()
		}
		reportMedian(b, d, time.Millisecond, "ms-p50")
	})

	m := sharedManager(b)
	if _, err := Screenshot(ctx, m, site.URL+"/", ScreenshotOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Run("warm", func(b *testing.B) {
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := Screenshot(ctx, m, site.URL+"/", ScreenshotOptions{}); err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(start))
		}
		reportMedian(b, d, time.Millisecond, "ms-p50")
	})
	b.Run("tab", func(b *testing.B) {
		tab, err := m.OpenTab(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer tab.Close()
		if _, err := tab.Navigate(ctx, site.URL+"/"); err != nil {
			b.Fatal(err)
		}
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := tab.Screenshot(ctx, ScreenshotOptions{}); err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(start))
		}
		reportMedian(b, d, time.Millisecond, "ms-p50")
	})
}

// BenchmarkCDPProxy measures Runtime.evaluate round trips on one page, on
// a direct connection to the browser and through the proxy, alternating so
// that both see the same machine noise. It reports the medians, their
// difference (the proxy's cost per command) and their ratio.
func BenchmarkCDPProxy(b *testing.B) {
	m := sharedManager(b)
	srv := cdpServer(b, m, CDPConfig{Secret: testSecret, MaxSessions: 2})
	ctx := context.Background()
	l, err := m.acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer l.release()
	t, err := newTarget(ctx, l.inst, "about:blank")
	if err != nil {
		b.Fatal(err)
	}
	id := t["id"].(string)
	defer targetCommand(ctx, l.inst, "close", id)

	direct := dialCDP(b, ctx, l.inst.devtoolsURL("/devtools/page/"+id), nil)
	proxied := dialCDP(b, ctx, wsBase(srv)+"/cdp/devtools/page/"+id, http.Header{"Authorization": {"Bearer " + testSecret}})
	roundTrip := func(c *cdpConn) time.Duration {
		start := time.Now()
		v, err := c.evaluate(ctx, "6*7")
		if err != nil || v != float64(42) {
			b.Fatalf("evaluate: %v, %v", v, err)
		}
		return time.Since(start)
	}
	for range 50 { // warm both paths
		roundTrip(direct)
		roundTrip(proxied)
	}
	var dd, pd []time.Duration
	for b.Loop() {
		dd = append(dd, roundTrip(direct))
		pd = append(pd, roundTrip(proxied))
	}
	d := reportMedian(b, dd, time.Microsecond, "µs-direct-p50")
	p := reportMedian(b, pd, time.Microsecond, "µs-proxy-p50")
	b.ReportMetric(p-d, "µs-overhead")
	b.ReportMetric(p/d, "ratio")
}
