package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	moltgate "github.com/moltgate/moltgate"
)

// countingServer is a loopback page that counts its visitors.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func fetchConfig(f moltgate.WebFetchConfig) func() moltgate.Config {
	return func() moltgate.Config {
		var c moltgate.Config
		c.Tools.Web.Fetch = f
		return c
	}
}

func fetch(t *testing.T, tool *WebFetchTool, url string) (ToolResult, error) {
	t.Helper()
	in, _ := json.Marshal(map[string]string{"url": url})
	return tool.Run(context.Background(), Call{Input: in, Scope: newRunScope()})
}

const page = `<!doctype html><html><head><title>Cats  &amp; dogs</title><style>body{color:red}</style>
<script>alert("hidden")</script></head><body><h1>Cats</h1><p>Cats   are
 <b>great</b>.</p><noscript>enable js</noscript><ul><li>one</li><li>two</li></ul></body></html>`

func TestWebFetch(t *testing.T) {
	srv, hits := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	})

	t.Run("RefusesLoopbackByDefault", func(t *testing.T) {
		_, err := fetch(t, NewWebFetchTool(fetchConfig(moltgate.WebFetchConfig{})), srv.URL)
		if !isRefused(err) || !strings.Contains(err.Error(), "127.0.0.1 is a loopback address") || !strings.Contains(err.Error(), "allowPrivateNetwork") {
			t.Fatalf("err = %v", err)
		}
		if hits.Load() != 0 {
			t.Fatal("the loopback server was reached")
		}
	})
	t.Run("RefusesNamesThatResolveToLoopback", func(t *testing.T) {
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		_, err := fetch(t, NewWebFetchTool(nil), fmt.Sprintf("http://localhost:%d/", port))
		if !isRefused(err) || !strings.Contains(err.Error(), "localhost resolves to") {
			t.Fatalf("localhost: err = %v", err)
		}
		tool := NewWebFetchTool(nil)
		tool.LookupIP = func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil // a rebinding DNS answer
		}
		_, err = fetch(t, tool, fmt.Sprintf("http://rebind.example:%d/", port))
		if !isRefused(err) || !strings.Contains(err.Error(), "rebind.example resolves to 127.0.0.1, a loopback address") {
			t.Fatalf("rebind: err = %v", err)
		}
		if hits.Load() != 0 {
			t.Fatal("the loopback server was reached")
		}
	})
	t.Run("RefusesRedirectsToLoopback", func(t *testing.T) {
		// public.example resolves to a public address; the test's dialer
		// takes that address to a server that redirects to loopback.
		redirector, redirects := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, srv.URL+"/secret", http.StatusFound)
		})
		tool := NewWebFetchTool(nil)
		tool.LookupIP = func(_ context.Context, host string) ([]netip.Addr, error) {
			if host == "public.example" {
				return []netip.Addr{netip.MustParseAddr("203.0.113.10")}, nil
			}
			return nil, fmt.Errorf("no such host %s", host)
		}
		tool.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != "203.0.113.10:80" {
				return nil, fmt.Errorf("the test dialer only knows 203.0.113.10:80, not %s", addr)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, redirector.Listener.Addr().String())
		}
		_, err := fetch(t, tool, "http://public.example/")
		if !isRefused(err) || !strings.Contains(err.Error(), "127.0.0.1 is a loopback address") {
			t.Fatalf("err = %v", err)
		}
		if redirects.Load() != 1 || hits.Load() != 0 {
			t.Fatalf("redirector hit %d times, loopback target %d times", redirects.Load(), hits.Load())
		}
	})
	t.Run("FetchesLoopbackWhenAllowed", func(t *testing.T) {
		res, err := fetch(t, NewWebFetchTool(fetchConfig(moltgate.WebFetchConfig{AllowPrivateNetwork: true})), srv.URL+"/cats")
		if err != nil {
			t.Fatal(err)
		}
		want := "URL: " + srv.URL + "/cats\nTitle: Cats & dogs\n\nCats\nCats are great.\n- one\n- two"
		if res.Text != want {
			t.Fatalf("text %q\nwant %q", res.Text, want)
		}
		if res.Summary != "fetched "+srv.URL+"/cats (32 characters)" {
			t.Fatalf("summary %q", res.Summary)
		}
	})
	t.Run("MaxChars", func(t *testing.T) {
		long, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, strings.Repeat("abcdefghij", 100))
		})
		res, err := fetch(t, NewWebFetchTool(fetchConfig(moltgate.WebFetchConfig{AllowPrivateNetwork: true, MaxChars: 150})), long.URL)
		if err != nil {
			t.Fatal(err)
		}
		body := strings.SplitN(res.Text, "\n\n", 2)[1]
		if !strings.HasPrefix(body, strings.Repeat("abcdefghij", 15)+"\n\n[truncated: the text has 1000 characters; the first 150 are shown]") {
			t.Fatalf("text %q", res.Text)
		}
	})
	t.Run("MaxBytes", func(t *testing.T) {
		big, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, strings.Repeat("z", 5000))
		})
		tool := NewWebFetchTool(fetchConfig(moltgate.WebFetchConfig{AllowPrivateNetwork: true}))
		tool.MaxBytes = 1000
		res, err := fetch(t, tool, big.URL)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(res.Text, "z") != 1000 || !strings.HasSuffix(res.Text, "[truncated: the page is larger than 1000 bytes; the start is shown]") {
			t.Fatalf("text %q", res.Text)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		release := make(chan struct{})
		slow, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		defer close(release)
		_, err := fetch(t, NewWebFetchTool(fetchConfig(moltgate.WebFetchConfig{AllowPrivateNetwork: true, TimeoutSeconds: 1})), slow.URL)
		if err == nil || !strings.Contains(err.Error(), "took longer than 1s (tools.web.fetch.timeoutSeconds)") || isRefused(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("TooManyRedirects", func(t *testing.T) {
		var loop *httptest.Server
		loop, _ = countingServer(t, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, loop.URL+"/again", http.StatusFound) })
		_, err := fetch(t, NewWebFetchTool(fetchConfig(moltgate.WebFetchConfig{AllowPrivateNetwork: true})), loop.URL)
		if err == nil || !strings.Contains(err.Error(), "more than 5 redirects") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("RedirectToAnotherScheme", func(t *testing.T) {
		ftp, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "ftp://example.com/file", http.StatusFound)
		})
		_, err := fetch(t, NewWebFetchTool(fetchConfig(moltgate.WebFetchConfig{AllowPrivateNetwork: true})), ftp.URL)
		if err == nil || !strings.Contains(err.Error(), `a redirect to "ftp", which is not http(s)`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("Charset", func(t *testing.T) {
		latin1, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=iso-8859-1")
			w.Write([]byte("Caf\xe9 cr\xe8me, 5\xa0\xa3"))
		})
		res, err := fetch(t, NewWebFetchTool(fetchConfig(moltgate.WebFetchConfig{AllowPrivateNetwork: true})), latin1.URL)
		if err != nil {
			t.Fatal(err)
		}
		if body := strings.SplitN(res.Text, "\n\n", 2)[1]; body != "Café crème, 5\u00a0£" {
			t.Fatalf("text %q", body)
		}
	})
	t.Run("BadInput", func(t *testing.T) {
		tool := NewWebFetchTool(nil)
		for in, want := range map[string]string{
			`{"url":"file:///etc/passwd"}`: "is not an http(s) URL",
			`{"url":"ftp://example.com/"}`: "is not an http(s) URL",
			`{"url":""}`:                   "is not an http(s) URL",
			`{"url":`:                      "not a valid JSON object",
		} {
			_, err := tool.Run(context.Background(), Call{Input: json.RawMessage(in)})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: err = %v, want %q", in, err, want)
			}
		}
	})
	t.Run("ErrorsHideThePassword", func(t *testing.T) {
		tool := NewWebFetchTool(nil)
		tool.LookupIP = func(_ context.Context, host string) ([]netip.Addr, error) {
			return nil, fmt.Errorf("no such host %s", host)
		}
		for _, u := range []string{"http://bob:s3cret@down.example/", "ftp://bob:s3cret@example.com/", "http://bob:s3cret@[::1/"} {
			_, err := fetch(t, tool, u)
			if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "bob:") {
				t.Errorf("%s: err = %v, want the URL without its password", u, err)
			}
		}
	})
	t.Run("NotText", func(t *testing.T) {
		img, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			w.Write(testPNG(4, 4, 0))
		})
		_, err := fetch(t, NewWebFetchTool(fetchConfig(moltgate.WebFetchConfig{AllowPrivateNetwork: true})), img.URL)
		if err == nil || !strings.Contains(err.Error(), "is image/png, not a page with text") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("HTTPError", func(t *testing.T) {
		missing, _ := countingServer(t, http.NotFound)
		_, err := fetch(t, NewWebFetchTool(fetchConfig(moltgate.WebFetchConfig{AllowPrivateNetwork: true})), missing.URL)
		if err == nil || !strings.Contains(err.Error(), "answered HTTP 404 Not Found") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("Disabled", func(t *testing.T) {
		off := false
		if err := NewWebFetchTool(fetchConfig(moltgate.WebFetchConfig{Enabled: &off})).Offered(RunInfo{}); err == nil {
			t.Fatal("offered while tools.web.fetch.enabled is false")
		}
	})
}

func TestBlockedAddr(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1": "loopback", "127.8.9.10": "loopback", "::1": "loopback", "::ffff:127.0.0.1": "loopback", "64:ff9b::7f00:1": "loopback",
		"10.1.2.3": "private", "172.16.0.1": "private", "192.168.1.1": "private", "fd00::1": "private", "fec0::1": "private",
		"169.254.169.254": "link-local", "fe80::1": "link-local", "100.64.0.1": "carrier-grade NAT", "100.127.255.254": "carrier-grade NAT",
		"0.0.0.0": "unspecified", "0.1.2.3": "unspecified", "::": "unspecified", "224.0.0.251": "link-local", "239.1.1.1": "multicast or broadcast",
		"255.255.255.255": "multicast or broadcast",
		"8.8.8.8":         "", "203.0.113.10": "", "100.128.0.1": "", "2606:4700:4700::1111": "", "172.32.0.1": "",
	} {
		if got := blockedAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
}

func TestBrowserTool_Input(t *testing.T) {
	tool := NewBrowserTool(&fakeBrowser{}, nil)
	for in, want := range map[string]string{
		`{"action":"navigate","url":"javascript:alert(1)"}`:          "is not an http(s) URL",
		`{"action":"navigate","url":"ftp://bob:s3cret@example.com"}`: `"ftp://bob:xxxxx@example.com" is not an http(s) URL`,
		`{"action":"navigate","url":"http://127.0.0.1:8080/_admin"}`: "refused: 127.0.0.1 is a loopback address",
		`{"action":"navigate","url":"http://169.254.169.254/"}`:      "refused: 169.254.169.254 is a link-local address",
		`{"action":"navigate","url":"http://localhost:18789/"}`:      "refused: localhost is this machine",
		`{"action":"click"}`:  "click needs a selector",
		`{"action":"scroll"}`: `unknown action "scroll"`,
	} {
		_, err := tool.Run(context.Background(), Call{Input: json.RawMessage(in), Scope: newRunScope()})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", in, err, want)
		}
	}
	off := false
	cfg := func() moltgate.Config { var c moltgate.Config; c.Browser.Enabled = &off; return c }
	if NewBrowserTool(&fakeBrowser{}, cfg).Offered(RunInfo{}) == nil || NewBrowserTool(nil, nil).Offered(RunInfo{}) == nil {
		t.Fatal("offered without a browser, or with browser.enabled false")
	}
	// type does not repeat what it typed in the summary (a password, say).
	scope := newRunScope()
	res, err := tool.Run(context.Background(), Call{Input: json.RawMessage(`{"action":"type","selector":"#pw","text":"hunter2"}`), Scope: scope})
	if err != nil || strings.Contains(res.Summary, "hunter2") || res.Summary != "typed 7 characters into #pw" {
		t.Fatalf("summary %q err %v", res.Summary, err)
	}
}

func TestCompactScreenshot(t *testing.T) {
	small := testPNG(200, 100, 0)
	img, err := compactScreenshot(small, MaxImageBytes)
	if err != nil || img.MimeType != "image/png" || string(img.Data) != string(small) || img.Width != 200 {
		t.Fatalf("a small screenshot should stay as it is: %+v %v", img, err)
	}
	big := testPNG(1650, 1100, 1100) // the noise weighs megabytes as PNG, and too much as a first JPEG
	if len(big) <= MaxImageBytes {
		t.Fatalf("the test image is only %d bytes", len(big))
	}
	img, err = compactScreenshot(big, MaxImageBytes)
	if err != nil {
		t.Fatal(err)
	}
	if ratio := float64(img.Width) / float64(img.Height); img.MimeType != "image/jpeg" || len(img.Data) > MaxImageBytes || img.Width >= MaxImageEdge || ratio < 1.49 || ratio > 1.51 {
		t.Fatalf("compacted to %s %d bytes %d×%d", img.MimeType, len(img.Data), img.Width, img.Height)
	}
	if _, err := compactScreenshot([]byte("not a png"), MaxImageBytes); err == nil {
		t.Fatal("accepted a non-PNG")
	}
	// No JPEG is this small: every smaller size is tried, then it gives up.
	if _, err := compactScreenshot(big, 100); err == nil || err.Error() != "cannot compress the screenshot enough" {
		t.Fatalf("compacted under 100 bytes: %v", err)
	}
}

// A PNG that says it is larger than maxImagePixels is refused before it is
// decoded (it would take gigabytes).
func TestCompactScreenshot_Huge(t *testing.T) {
	png := testPNG(1, 1, 0)
	// The IHDR chunk's type and data (width, height, …), then its CRC.
	ihdr := png[12 : 12+4+13]
	binary.BigEndian.PutUint32(ihdr[4:], 50000)
	binary.BigEndian.PutUint32(ihdr[8:], 40000)
	binary.BigEndian.PutUint32(png[12+4+13:], crc32.ChecksumIEEE(ihdr))
	if _, err := compactScreenshot(png, MaxImageBytes); err == nil || err.Error() != "the screenshot is too large (50000×40000)" {
		t.Fatalf("err = %v", err)
	}
}
