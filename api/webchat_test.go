package api_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/agent"
)

// newBrowser starts Debian's headless Chromium for one test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("/usr/bin/chromium"),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser without a deadline
		t.Fatalf("cannot start chromium: %v", err)
	}
	return ctx
}

// within runs fn with a deadline derived from a started browser context.
func within(t *testing.T, ctx context.Context, d time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("MOLTGATE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWebChat(t *testing.T) {
	h := newHarness(t, "", agent.Echo{Delay: 15 * time.Millisecond})
	admin := h.operator()
	ctx := newBrowser(t)
	base := strings.Replace(h.url, "ws://", "http://", 1)

	within(t, ctx, 20*time.Second, "open with token and wait for the approval screen",
		chromedp.Navigate(base+"/?token="+testToken),
		chromedp.WaitVisible(chromedp.ID("pairing")),
		chromedp.Poll[chromedp.Void](`document.getElementById("request-id").textContent.length > 0`),
	)
	requestID := text(t, ctx, "#request-id")
	if url, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`)); strings.Contains(url, "token=") {
		t.Fatalf("the token stayed in the address bar: %s", url)
	}
	screenshot(t, ctx, "webchat-pairing.png")

	admin.ok("device.pair.approve", map[string]any{"requestId": requestID})
	within(t, ctx, 20*time.Second, "connect by itself once approved",
		chromedp.Poll[chromedp.Void](`document.getElementById("state").textContent === "connected"`),
	)
	if notice := text(t, ctx, "#notice"); !strings.Contains(notice, "No model is configured") {
		t.Fatalf("no-model notice = %q", notice)
	}

	// Count renders of the reply while it streams.
	within(t, ctx, 10*time.Second, "send a message",
		chromedp.Evaluate[chromedp.Void](`window.__renders = 0; new MutationObserver(() => window.__renders++).observe(document.getElementById("log"), {childList: true, subtree: true, characterData: true})`),
		chromedp.SendKeys(chromedp.ID("input"), "hello *browser*"),
		chromedp.Click(chromedp.ID("send")),
	)
	within(t, ctx, 20*time.Second, "see the streamed reply",
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll(".msg[data-role=assistant]")].some(e => e.textContent.includes("You said: hello") && e.textContent.includes("No model is configured"))`),
	)
	within(t, ctx, 20*time.Second, "the run ends and Stop goes away",
		chromedp.Poll[chromedp.Void](`document.getElementById("stop").hidden && document.querySelector(".msg[data-role=assistant]").textContent.endsWith("real model.")`),
	)
	if renders, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__renders`)); renders < 5 {
		t.Fatalf("the reply rendered %d times: not streamed", renders)
	}
	screenshot(t, ctx, "webchat-chat.png")

	within(t, ctx, 20*time.Second, "reload and see history without pairing again",
		chromedp.Reload(),
		chromedp.Poll[chromedp.Void](`document.getElementById("state").textContent === "connected"`),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll(".msg").length === 2`),
	)
	if first := text(t, ctx, ".msg.user"); first != "hello *browser*" {
		t.Fatalf("history user message = %q", first)
	}

	// Model output is untrusted: markup in it is shown, never run.
	admin.ok("chat.inject", map[string]any{"sessionKey": "main", "message": `look <img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script> **bold**`})
	within(t, ctx, 10*time.Second, "see the injected reply",
		chromedp.Poll[chromedp.Void](`document.getElementById("log").textContent.includes("onerror")`),
	)
	xss, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__xss !== undefined || document.querySelector("#log img, #log script") !== null`))
	if xss {
		t.Fatal("markup from a model reply was rendered")
	}
	if bold, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("#log strong")].map(e => e.textContent).join()`)); bold != "bold" {
		t.Fatalf("Markdown not rendered: strong = %q", bold)
	}

	// Phone width: the composer stays on screen.
	within(t, ctx, 10*time.Second, "phone width",
		chromedp.EmulateViewport(390, 844),
		chromedp.Poll[chromedp.Void](`document.getElementById("send").getBoundingClientRect().right <= 390`),
	)
	screenshot(t, ctx, "webchat-phone.png")
}

func TestWebChat_NoToken(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	ctx := newBrowser(t)
	base := strings.Replace(h.url, "ws://", "http://", 1)
	within(t, ctx, 20*time.Second, "open without a token",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("notoken")),
	)
	if example := text(t, ctx, "#example"); !strings.Contains(example, "/?token=") {
		t.Fatalf("the page does not say what to add: %q", example)
	}
}

type brokenProvider struct{}

func (brokenProvider) Stream(context.Context, agent.Request, func(string)) (agent.Reply, error) {
	return agent.Reply{}, errors.New("500 Internal Server Error: upstream is down")
}

func TestWebChat_ProviderErrorIsShown(t *testing.T) {
	h := newHarness(t, "", brokenProvider{})
	h.gw.DevMode = true // approve the browser at once
	h.gw.ModelInfo = func() moltgate.ModelInfo {
		return moltgate.ModelInfo{Active: "test/model", Fallbacks: []string{}, Configured: true}
	}
	ctx := newBrowser(t)
	base := strings.Replace(h.url, "ws://", "http://", 1)
	within(t, ctx, 20*time.Second, "connect",
		chromedp.Navigate(base+"/?token="+testToken),
		chromedp.Poll[chromedp.Void](`document.getElementById("state").textContent === "connected"`),
		chromedp.SendKeys(chromedp.ID("input"), "are you there?"),
		chromedp.Click(chromedp.ID("send")),
		chromedp.WaitVisible(chromedp.ID("error")),
	)
	if msg := text(t, ctx, "#error"); !strings.Contains(msg, "upstream is down") {
		t.Fatalf("error shown = %q", msg)
	}
	screenshot(t, ctx, "webchat-error.png")
}
