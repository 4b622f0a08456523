package browser

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	moltgate "github.com/moltgate/moltgate"
)

const formPage = `<!doctype html><title>Form</title>
<h1>Greeter</h1>
<input id="name" autocomplete="off">
<button id="go" onclick="document.getElementById('out').textContent = 'Hello, ' + document.getElementById('name').value + '!'">Greet</button>
<p id="out"></p>
<div id="hidden" style="display:none">secret node</div>
<script>setTimeout(() => { const b = document.createElement('button'); b.id = 'late'; b.textContent = 'late'; b.onclick = () => { document.title = 'late clicked' }; document.body.append(b) }, 300)</script>`

func openTab(t *testing.T, m *Manager) (*Tab, context.Context) {
	t.Helper()
	ctx := testContext(t)
	tab, err := m.OpenTab(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	return tab, ctx
}

func TestTab_Interact(t *testing.T) {
	m := sharedManager(t)
	site := pages(t, map[string]string{"/form": formPage})
	tab, ctx := openTab(t, m)

	p, err := tab.Navigate(ctx, site.URL+"/form")
	if err != nil || p.Title != "Form" || p.Status != 200 || p.URL != site.URL+"/form" {
		t.Fatalf("Navigate = %+v, %v", p, err)
	}
	if err := tab.Type(ctx, "#name", "Ada Lovelace"); err != nil {
		t.Fatal(err)
	}
	if err := tab.Click(ctx, "#go"); err != nil {
		t.Fatal(err)
	}
	text, err := tab.Text(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Greeter") || !strings.Contains(text, "Hello, Ada Lovelace!") || strings.Contains(text, "secret node") {
		t.Errorf("Text = %q", text)
	}
	// Click waits for an element that appears later.
	if err := tab.Click(ctx, "#late"); err != nil {
		t.Fatal(err)
	}
	if p, err := tab.Info(ctx); err != nil || p.Title != "late clicked" {
		t.Errorf("after clicking the late button: %+v, %v", p, err)
	}
	p, err = tab.Navigate(ctx, site.URL+"/missing")
	if err != nil || p.Status != 404 {
		t.Errorf("a 404 page: %+v, %v", p, err)
	}
}

func TestTab_Errors(t *testing.T) {
	m := newManager(t, func(m *Manager) { m.ActionTimeout = 1500 * time.Millisecond; m.MaxTextBytes = 100 })
	site := pages(t, map[string]string{
		"/form": formPage,
		"/long": "<p>" + strings.Repeat("é", 200) + "</p>",
	})
	tab, ctx := openTab(t, m)
	if _, err := tab.Navigate(ctx, site.URL+"/form"); err != nil {
		t.Fatal(err)
	}

	err := tab.Click(ctx, "#missing")
	if moltgate.ErrorCode(err) != moltgate.ENOTFOUND || !strings.Contains(err.Error(), `no visible element matches "#missing" within 1.5s`) {
		t.Errorf("Click on a missing element: %v", err)
	}
	if err := tab.Click(ctx, "#hidden"); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Errorf("Click on a hidden element: %v", err)
	}
	if err := tab.Type(ctx, "#nope", "x"); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Errorf("Type into a missing element: %v", err)
	}
	start := time.Now()
	err = tab.Click(ctx, "div[")
	if moltgate.ErrorCode(err) != moltgate.EINVALID || !strings.Contains(err.Error(), "invalid CSS selector") {
		t.Errorf("Click with a bad selector: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("a bad selector waited for the timeout")
	}
	if err := tab.Click(ctx, ""); moltgate.ErrorCode(err) != moltgate.EINVALID {
		t.Errorf("Click with an empty selector: %v", err)
	}
	if err := tab.Type(ctx, "#name", strings.Repeat("x", MaxTypedRunes+1)); moltgate.ErrorCode(err) != moltgate.EINVALID {
		t.Errorf("Type of too much text: %v", err)
	}

	for _, u := range []string{"file:///etc/passwd", "javascript:alert(1)", "chrome://settings", "http://", "not a url"} {
		if _, err := tab.Navigate(ctx, u); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("Navigate(%q): %v", u, err)
		}
	}
	// A port nobody listens on; the error does not repeat the password.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://bob:s3cret@" + ln.Addr().String() + "/"
	ln.Close()
	_, err = tab.Navigate(ctx, closed)
	if moltgate.ErrorCode(err) != moltgate.EUNAVAILABLE || !strings.Contains(err.Error(), "net::ERR_CONNECTION_REFUSED") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Navigate to a closed port: %v", err)
	}

	if _, err := tab.Navigate(ctx, site.URL+"/long"); err != nil {
		t.Fatal(err)
	}
	text, err := tab.Text(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text, strings.Repeat("é", 50)+"\n[… truncated: the page has 400 bytes of text, shown are the first 100]") {
		t.Errorf("Text of a long page = %q", text)
	}

	// A canceled context stops an action at once, and the tab still works.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := tab.Click(cctx, "#missing"); err != context.Canceled {
		t.Errorf("Click with a canceled context: %v", err)
	}
	if _, err := tab.Info(ctx); err != nil {
		t.Errorf("the tab after a canceled action: %v", err)
	}

	tab.Close()
	if _, err := tab.Text(ctx); moltgate.ErrorCode(err) != moltgate.EINVALID || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Text on a closed tab: %v", err)
	}
	if err := tab.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Tabs do not share cookies: each has a browser context of its own.
func TestTab_Isolated(t *testing.T) {
	m := sharedManager(t)
	site := pages(t, map[string]string{"/": `<title>cookies</title><script>if (!document.cookie) document.cookie = "who=first"</script>`})
	a, ctx := openTab(t, m)
	b, _ := openTab(t, m)
	if _, err := a.Navigate(ctx, site.URL+"/"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Navigate(ctx, site.URL+"/"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(a, ctx, time.Minute, "set a cookie", evalString(`document.cookie = "who=a"; document.cookie`)); err != nil {
		t.Fatal(err)
	}
	got, err := run(b, ctx, time.Minute, "read cookies", evalString(`document.cookie`))
	if err != nil || got != "who=first" {
		t.Errorf("tab b sees cookies %q (%v), want only its own", got, err)
	}
}

// What Navigate refuses is refused before the browser is used, and the
// error shows the URL without its password.
func TestCheckNavigable(t *testing.T) {
	for u, want := range map[string]string{
		"about:blank":                      "",
		"https://bob:s3cret@example.com/a": "",
		"ftp://bob:s3cret@example.com/":    `cannot open "ftp://bob:xxxxx@example.com/": only http:// and https:// URLs`,
		"http://bob:s3cret@[::1/":          `cannot open "http://bob:` + moltgate.RedactedMarker + `@[::1/": missing ']' in host`,
	} {
		shown, err := checkNavigable(u)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("%s: %q, want %q", u, got, want)
		}
		if strings.Contains(shown, "s3cret") {
			t.Errorf("%s: shown as %s", u, shown)
		}
	}
}

func TestTruncateText(t *testing.T) {
	if got := truncateText("short", 10); got != "short" {
		t.Errorf("%q", got)
	}
	got := truncateText("ab€cd", 4) // € is 3 bytes: cutting inside it backs off
	if !strings.HasPrefix(got, "ab\n[… truncated: the page has 7 bytes of text, shown are the first 2]") {
		t.Errorf("%q", got)
	}
}

func evalString(expr string) chromedp.Action[string] { return chromedp.Evaluate[string](expr) }
