package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/agent"
	"github.com/moltgate/moltgate/api"
	"github.com/moltgate/moltgate/commands"
)

// newBrowser starts Debian's headless Chromium for one test, with a
// fresh profile and any extra flags.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
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
	opts = append(opts, extra...)
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
	// 127.0.0.1 is a secure context: the key is WebCrypto's, not extractable.
	if kind := eval[string](t, ctx, storedKeyKind, chromedp.EvalAwaitPromise); kind != "webcrypto, not extractable" {
		t.Fatalf("device key on 127.0.0.1: %s", kind)
	}
	if !eval[bool](t, ctx, `document.getElementById("insecure").hidden`) {
		t.Fatal("the plain-HTTP note shows in a secure context")
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
	admin.ok("chat.inject", map[string]any{"sessionKey": moltgate.MainSessionKey, "message": `look <img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script> **bold**`})
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

// storedKeyKind says how the page keeps its device key in IndexedDB.
const storedKeyKind = `(async () => {
	const k = await idbGet(await idb(), "device");
	if (k && k.secretKey instanceof Uint8Array) return "raw, " + k.secretKey.length + " bytes";
	if (k && k.privateKey instanceof CryptoKey) return "webcrypto, " + (k.privateKey.extractable ? "extractable" : "not extractable");
	return "none";
})()`

// openChat opens the chat with the token and waits until it is connected
// (the harness approves devices at once in DEV_MODE).
func openChat(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	within(t, ctx, 20*time.Second, "open the chat and connect",
		chromedp.Navigate(base+"/?token="+testToken),
		chromedp.Poll[chromedp.Void](`document.getElementById("state").textContent === "connected"`),
	)
}

// eval runs js in the page and returns its value.
func eval[T any](t *testing.T, ctx context.Context, js string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, opts...))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// inject adds a message to a session's transcript, as chat.inject does.
func inject(t *testing.T, h *harness, key, role, text string) {
	t.Helper()
	if _, err := h.svc.Inject(context.Background(), key, moltgate.ChatMessage{Role: role, Content: text}, moltgate.Meta{Actor: "test", Source: moltgate.SourceWS}); err != nil {
		t.Fatal(err)
	}
}

// gatedProvider streams its first words, then finishes once release is
// closed, so a test can see a run going.
type gatedProvider struct{ release chan struct{} }

func (p gatedProvider) Stream(ctx context.Context, _ agent.Request, onDelta func(string)) (agent.Reply, error) {
	onDelta("Working on it… ")
	select {
	case <-p.release:
	case <-ctx.Done():
		return agent.Reply{}, ctx.Err()
	}
	onDelta("done.")
	return agent.Reply{Text: "Working on it… done."}, nil
}

func TestWebChat_Sessions(t *testing.T) {
	gate := gatedProvider{release: make(chan struct{})}
	h := newHarness(t, "", gate)
	h.gw.DevMode = true
	inject(t, h, moltgate.MainSessionKey, "user", "What should I plant in the garden?")
	inject(t, h, moltgate.MainSessionKey, "assistant", "Tomatoes and basil.")
	garden, _ := h.models.Session(moltgate.MainSessionKey)
	for !time.Now().After(garden.LastActivity.Add(time.Millisecond)) {
		runtime.Gosched() // "work" must be the more recent by the clock, not only by seq
	}
	inject(t, h, "work", "user", "Draft the quarterly report")
	ctx := newBrowser(t)
	base := strings.Replace(h.url, "ws://", "http://", 1)
	openChat(t, ctx, base)

	const listed = `[...document.querySelectorAll("#session-list .session")].map(b => b.dataset.key).join()`
	within(t, ctx, 10*time.Second, "list both sessions, most recent first",
		chromedp.Poll[chromedp.Void](listed+` === "work,agent:main:main"`),
	)
	if meta := text(t, ctx, `.session[data-key="agent:main:main"] .s-meta`); !strings.HasPrefix(meta, "2 messages") {
		t.Fatalf("main's entry says %q", meta)
	}
	if log := text(t, ctx, "#log"); !strings.Contains(log, "Tomatoes") || strings.Contains(log, "quarterly") {
		t.Fatalf("first visit: want main (the default), transcript %q", log)
	}

	within(t, ctx, 10*time.Second, "pick the other session",
		chromedp.Click(chromedp.CSS(`.session[data-key="work"]`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("log").textContent.includes("quarterly report") && !document.getElementById("log").textContent.includes("Tomatoes")`),
	)
	if title, current := text(t, ctx, "#session-title"), eval[string](t, ctx, `document.querySelector(".session[aria-current=true]").dataset.key`); title != "work" || current != "work" {
		t.Fatalf("after picking work: title %q, highlighted %q", title, current)
	}
	within(t, ctx, 20*time.Second, "the choice is kept across a reload",
		chromedp.Reload(),
		chromedp.Poll[chromedp.Void](`document.getElementById("state").textContent === "connected" && document.getElementById("log").textContent.includes("quarterly report")`),
	)

	// A run going shows in the list until it ends.
	within(t, ctx, 20*time.Second, "send and see the session running",
		chromedp.SendKeys(chromedp.ID("input"), "Summarize it"),
		chromedp.Click(chromedp.ID("send")),
		chromedp.Poll[chromedp.Void](`document.querySelector('.session[data-key="work"] .s-run') !== null && !document.getElementById("stop").hidden`),
	)
	if dots := eval[int](t, ctx, `document.querySelectorAll(".s-run").length`); dots != 1 {
		t.Fatalf("%d sessions shown running, want 1", dots)
	}
	screenshot(t, ctx, "webchat-sessions-running.png")
	close(gate.release)
	within(t, ctx, 20*time.Second, "the run ends: no indicator, the count grows",
		chromedp.Poll[chromedp.Void](`document.querySelector(".s-run") === null && document.getElementById("log").textContent.includes("Working on it… done.")`),
		chromedp.Poll[chromedp.Void](`document.querySelector('.session[data-key="work"] .s-meta').textContent.startsWith("3 messages")`),
	)

	// New chat: a new key, empty, kept once something is sent.
	within(t, ctx, 10*time.Second, "start a new chat",
		chromedp.Click(chromedp.ID("new-chat")),
		chromedp.Poll[chromedp.Void](`/^web-[0-9a-f]{8}$/.test(document.getElementById("session-title").textContent) && document.querySelector("#log .empty") !== null`),
	)
	fresh := text(t, ctx, "#session-title")
	if first := eval[string](t, ctx, listed); !strings.HasPrefix(first, fresh+",") {
		t.Fatalf("the new chat is not listed first: %s", first)
	}
	within(t, ctx, 20*time.Second, "chat in the new session",
		chromedp.SendKeys(chromedp.ID("input"), "hello new chat"),
		chromedp.Click(chromedp.ID("send")),
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll(".msg[data-role=assistant]")].some(e => e.textContent.includes("done."))`),
		chromedp.Poll[chromedp.Void](`document.querySelector('.session[data-key="`+fresh+`"] .s-meta').textContent.startsWith("2 messages")`),
	)
	if s, ok := h.models.Session(fresh); !ok || s.MessageCount != 2 {
		t.Fatalf("gateway's %s: %+v %v", fresh, s, ok)
	}
	if log := text(t, ctx, "#log"); strings.Contains(log, "quarterly") || strings.Contains(log, "Tomatoes") {
		t.Fatalf("the new chat shows another session's messages: %q", log)
	}

	// Reset asks first; cancelling changes nothing.
	work, _ := h.models.Session("work")
	within(t, ctx, 10*time.Second, "pick work, ask to reset, cancel",
		chromedp.Click(chromedp.CSS(`.session[data-key="work"]`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("log").textContent.includes("quarterly report")`),
		chromedp.Click(chromedp.ID("reset")),
		chromedp.WaitVisible(chromedp.ID("reset-dialog")),
	)
	if msg := text(t, ctx, "#reset-text"); !strings.Contains(msg, "work") {
		t.Fatalf("the confirmation does not name the session: %q", msg)
	}
	screenshot(t, ctx, "webchat-reset.png")
	within(t, ctx, 10*time.Second, "cancel",
		chromedp.Click(chromedp.ID("reset-cancel")),
		chromedp.WaitNotVisible(chromedp.ID("reset-dialog")),
	)
	if s, _ := h.models.Session("work"); s.ID != work.ID || !strings.Contains(text(t, ctx, "#log"), "quarterly") {
		t.Fatal("cancelling the reset reset the session")
	}
	within(t, ctx, 10*time.Second, "reset for real",
		chromedp.Click(chromedp.ID("reset")),
		chromedp.WaitVisible(chromedp.ID("reset-dialog")),
		chromedp.Click(chromedp.ID("reset-confirm")),
		chromedp.Poll[chromedp.Void](`document.querySelector("#log .empty") !== null && document.querySelectorAll("#log .msg").length === 0`),
		chromedp.Poll[chromedp.Void](`document.querySelector('.session[data-key="work"] .s-meta').textContent.startsWith("0 messages")`),
	)
	if s, _ := h.models.Session("work"); s.ID == work.ID || s.MessageCount != 0 {
		t.Fatalf("work after reset: %+v (was %s)", s, work.ID)
	}
	if msgs, _ := h.svc.Transcript(context.Background(), moltgate.MainSessionKey, 0); len(msgs) != 2 {
		t.Fatalf("resetting work changed main: %d messages", len(msgs))
	}

	// Phone width: the list is a drawer behind a menu button.
	const sidebarLeft = `document.getElementById("sidebar").getBoundingClientRect()`
	within(t, ctx, 10*time.Second, "phone width hides the list",
		chromedp.EmulateViewport(390, 844),
		chromedp.Poll[chromedp.Void](sidebarLeft+`.right <= 0 && document.getElementById("send").getBoundingClientRect().right <= 390`),
		chromedp.Click(chromedp.ID("menu")),
		chromedp.Poll[chromedp.Void](sidebarLeft+`.left === 0`),
	)
	screenshot(t, ctx, "webchat-phone-sessions.png")
	within(t, ctx, 10*time.Second, "pick a session in the drawer",
		chromedp.Click(chromedp.CSS(`.session[data-key="agent:main:main"]`)),
		chromedp.Poll[chromedp.Void](`!document.body.classList.contains("drawer-open") && document.getElementById("log").textContent.includes("Tomatoes")`),
	)
}

// solidPNG is a w×h PNG of one colour.
func solidPNG(t *testing.T, w, h int, c color.RGBA) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pixel reads the colour at the middle of the image as the page decoded it.
const pixel = `(img => {
	const c = document.createElement("canvas");
	c.width = img.naturalWidth; c.height = img.naturalHeight;
	const g = c.getContext("2d");
	g.drawImage(img, 0, 0);
	return [...g.getImageData(img.naturalWidth >> 1, img.naturalHeight >> 1, 1, 1).data].join();
})`

func TestWebChat_ToolCalls(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	h.gw.DevMode = true
	ctx0 := context.Background()
	meta := moltgate.Meta{Actor: "agent", Source: moltgate.SourceAgent}
	inject(t, h, moltgate.MainSessionKey, "user", "Open example.org and show me")
	shot := solidPNG(t, 40, 30, color.RGBA{R: 255, G: 0, B: 128, A: 255})
	calls := []moltgate.ToolCall{
		{ID: "call-1", Name: "browser", Input: json.RawMessage(`{"action":"screenshot","url":"https://example.org"}`), Status: moltgate.ToolOK,
			Summary: "Took a screenshot of https://example.org\ntitle: Example Domain", Image: &moltgate.Media{MimeType: "image/png", Data: shot, Width: 40, Height: 30}},
		{ID: "call-2", Name: "web_fetch", Input: json.RawMessage(`{"url":"http://10.0.0.1/"}`), Status: moltgate.ToolRefused,
			Error: `<b onmouseover="window.__xss=1">private addresses are not allowed</b>`},
		{ID: "call-3", Name: "browser", Status: moltgate.ToolError, Error: "navigation timed out",
			Image: &moltgate.Media{MimeType: "image/svg+xml", Data: []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>window.__xss=2</script></svg>`)}},
	}
	for _, c := range calls {
		if err := h.svc.RecordToolCall(ctx0, moltgate.MainSessionKey, "run-1", c, meta); err != nil {
			t.Fatal(err)
		}
	}
	inject(t, h, moltgate.MainSessionKey, "assistant", "Here is **example.org**.")
	ctx := newBrowser(t)
	base := strings.Replace(h.url, "ws://", "http://", 1)
	openChat(t, ctx, base)

	within(t, ctx, 10*time.Second, "see the tool calls and the screenshot",
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#log .tool").length === 3`),
		chromedp.Poll[chromedp.Void](`(img => img && img.complete && img.naturalWidth > 0)(document.querySelector(".tool img.t-shot"))`),
	)
	got := eval[string](t, ctx, `[...document.querySelectorAll("#log .tool")].map(e => e.querySelector(".t-name").textContent + ":" + e.dataset.status + ":" + e.querySelector(".t-line").textContent).join("\n")`)
	want := "browser:ok:Took a screenshot of https://example.org\n" +
		`web_fetch:refused:<b onmouseover="window.__xss=1">private addresses are not allowed</b>` + "\n" +
		"browser:error:navigation timed out"
	if got != want {
		t.Fatalf("tool blocks:\n%s\nwant:\n%s", got, want)
	}
	if size := eval[string](t, ctx, `(i => i.naturalWidth + "x" + i.naturalHeight)(document.querySelector(".tool img.t-shot"))`); size != "40x30" {
		t.Fatalf("screenshot decoded as %s", size)
	}
	if rgba := eval[string](t, ctx, pixel+`(document.querySelector(".tool img.t-shot"))`); rgba != "255,0,128,255" {
		t.Fatalf("screenshot pixel = %s, want 255,0,128,255", rgba)
	}
	// The blocks sit between the question and the answer, in order.
	if order := eval[string](t, ctx, `[...document.getElementById("log").children].map(e => e.classList.contains("tool") ? "tool" : e.dataset.role).join()`); order != "user,tool,tool,tool,assistant" {
		t.Fatalf("transcript order: %s", order)
	}
	// Tool output is text: markup in it is shown, never run; an image that
	// is not a raster image is not shown at all.
	if bad := eval[bool](t, ctx, `window.__xss !== undefined || document.querySelector("#log b, #log svg, #log script") !== null || document.querySelectorAll("#log img").length !== 1`); bad {
		t.Fatal("markup from a tool call was rendered")
	}
	if why := eval[string](t, ctx, `document.querySelectorAll("#log .tool")[2].querySelector(".t-noshot").textContent`); !strings.Contains(why, "image/svg+xml") {
		t.Fatalf("the refused image says %q", why)
	}

	// Details open on demand: the arguments and the full result.
	within(t, ctx, 10*time.Second, "expand the screenshot call",
		chromedp.Click(chromedp.CSS(".tool summary")),
		chromedp.Poll[chromedp.Void](`document.querySelector(".tool details").open`),
	)
	if body := text(t, ctx, ".tool .t-body"); !strings.Contains(body, `"url": "https://example.org"`) || !strings.Contains(body, "title: Example Domain") {
		t.Fatalf("expanded call shows %q", body)
	}
	screenshot(t, ctx, "webchat-tools.png")

	// Live: the gateway's agent events (stream "tool") show a running
	// block, filled in by the result. Fed through the page's frame handler
	// as the gateway sends them.
	liveShot := base64.StdEncoding.EncodeToString(solidPNG(t, 20, 10, color.RGBA{G: 200, B: 80, A: 255}))
	agentEvent := func(sessionKey string, data map[string]any) string {
		f, _ := json.Marshal(map[string]any{"type": "event", "event": "agent", "seq": 9, "payload": map[string]any{
			"runId": "run-2", "sessionKey": sessionKey, "seq": 1, "stream": "tool", "ts": time.Now().UnixMilli(), "data": data}})
		return "void onFrame(" + string(f) + ")"
	}
	eval[chromedp.Void](t, ctx, agentEvent("elsewhere", map[string]any{"phase": "start", "toolCallId": "live-0", "name": "browser", "args": map[string]any{}}))
	eval[chromedp.Void](t, ctx, agentEvent(moltgate.MainSessionKey, map[string]any{"phase": "start", "toolCallId": "live-1", "name": "browser", "args": map[string]any{"action": "screenshot", "url": "https://example.com"}}))
	if got := eval[string](t, ctx, `(e => e.dataset.status + ":" + e.querySelector(".t-status").textContent)([...document.querySelectorAll("#log .tool")].at(-1))`); got != "running:running…" {
		t.Fatalf("live tool start shows %q", got)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#log .tool").length`); n != 4 {
		t.Fatalf("%d tool blocks after a start in this session and one in another, want 4", n)
	}
	screenshot(t, ctx, "webchat-tool-running.png")
	eval[chromedp.Void](t, ctx, agentEvent(moltgate.MainSessionKey, map[string]any{"phase": "result", "toolCallId": "live-1", "name": "browser", "status": "ok",
		"summary": "Took a screenshot of https://example.com", "image": map[string]any{"mimeType": "image/png", "data": liveShot}}))
	within(t, ctx, 10*time.Second, "the live block is filled in",
		chromedp.Poll[chromedp.Void](`(e => e.dataset.status === "ok" && (i => i && i.complete && i.naturalWidth === 20)(e.querySelector("img.t-shot")))([...document.querySelectorAll("#log .tool")].at(-1))`),
	)
	if got := eval[string](t, ctx, `[...document.querySelectorAll("#log .tool")].at(-1).querySelector(".t-body").textContent`); !strings.Contains(got, `"url": "https://example.com"`) || !strings.Contains(got, "Took a screenshot of https://example.com") {
		t.Fatalf("the live result lost the call's arguments or result: %q", got)
	}
	if rgba := eval[string](t, ctx, pixel+`([...document.querySelectorAll("#log .tool")].at(-1).querySelector("img.t-shot"))`); rgba != "0,200,80,255" {
		t.Fatalf("live screenshot pixel = %s", rgba)
	}

	within(t, ctx, 10*time.Second, "phone width",
		chromedp.EmulateViewport(390, 844),
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll("#log .tool")].every(e => e.getBoundingClientRect().right <= 390)`),
	)
	screenshot(t, ctx, "webchat-tools-phone.png")
}

// stallingProvider streams its first words, then waits until the run is
// stopped: a reply in progress when the gateway went away.
type stallingProvider struct{}

func (stallingProvider) Stream(ctx context.Context, _ agent.Request, onDelta func(string)) (agent.Reply, error) {
	onDelta("Let me check")
	<-ctx.Done()
	return agent.Reply{}, ctx.Err()
}

func TestWebChat_InterruptedRun(t *testing.T) {
	h := newHarness(t, "", stallingProvider{})
	h.gw.DevMode = true
	ctx := newBrowser(t)
	base := strings.Replace(h.url, "ws://", "http://", 1)
	openChat(t, ctx, base)
	within(t, ctx, 20*time.Second, "send and see the reply start",
		chromedp.SendKeys(chromedp.ID("input"), "what is the weather?"),
		chromedp.Click(chromedp.ID("send")),
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll(".msg[data-role=assistant]")].some(e => e.textContent.includes("Let me check"))`),
	)
	// What a restarted gateway does with a run it finds open.
	if n, err := h.svc.RecoverRuns(context.Background()); err != nil || n != 1 {
		t.Fatalf("RecoverRuns = %d, %v", n, err)
	}
	within(t, ctx, 10*time.Second, "the live error shows in the transcript",
		chromedp.Poll[chromedp.Void](`(n => n !== null && n.textContent.includes(`+jsString(commands.InterruptedMessage)+`))(document.querySelector("#log .note"))`),
		chromedp.Poll[chromedp.Void](`document.getElementById("stop").hidden`),
	)
	if reply := text(t, ctx, ".msg.failed"); !strings.Contains(reply, "Let me check") {
		t.Fatalf("the failed reply lost what was streamed: %q", reply)
	}
	screenshot(t, ctx, "webchat-interrupted.png")

	h.agent.Abort(moltgate.MainSessionKey, "") // the old process is gone: end its run
	deadline := time.Now().Add(10 * time.Second)
	for len(h.agent.Active(moltgate.MainSessionKey)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled run never ended")
		}
		runtime.Gosched()
	}
	within(t, ctx, 20*time.Second, "after a reload the history says so too",
		chromedp.Reload(),
		chromedp.Poll[chromedp.Void](`document.getElementById("state").textContent === "connected" && document.querySelector(".msg.user") !== null`),
		chromedp.Poll[chromedp.Void](`(n => n !== null && n.textContent.includes(`+jsString(commands.InterruptedMessage)+`))(document.querySelector("#log .note"))`),
	)
	screenshot(t, ctx, "webchat-interrupted-history.png")
	if s, _ := h.models.Session(moltgate.MainSessionKey); s.LastRunState != moltgate.RunInterrupted {
		t.Fatalf("last run state %q", s.LastRunState)
	}
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestWebChat_PlainHTTPAddress(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	admin := h.operator()
	// Chromium treats localhost and 127.0.0.1 as secure contexts; a LAN
	// name over plain HTTP is not one. moltgate.test resolves to the
	// harness's loopback listener.
	ctx := newBrowser(t, chromedp.Flag("host-resolver-rules", "MAP moltgate.test 127.0.0.1"))
	port := h.url[strings.LastIndex(h.url, ":")+1:]
	base := "http://moltgate.test:" + port

	within(t, ctx, 20*time.Second, "open over plain HTTP and wait for approval",
		chromedp.Navigate(base+"/?token="+testToken),
		chromedp.WaitVisible(chromedp.ID("pairing")),
		chromedp.Poll[chromedp.Void](`document.getElementById("request-id").textContent.length > 0`),
	)
	if ctxInfo := eval[string](t, ctx, `location.host + " secure=" + window.isSecureContext + " subtle=" + typeof crypto.subtle + " randomUUID=" + typeof crypto.randomUUID`); ctxInfo != "moltgate.test:"+port+" secure=false subtle=undefined randomUUID=undefined" {
		t.Fatalf("not the insecure context this test is about: %s", ctxInfo)
	}
	if kind := eval[string](t, ctx, storedKeyKind, chromedp.EvalAwaitPromise); kind != "raw, 32 bytes" {
		t.Fatalf("device key without WebCrypto: %s", kind)
	}
	if note := text(t, ctx, "#insecure"); !strings.Contains(note, "plain HTTP") || !eval[bool](t, ctx, `!document.getElementById("insecure").hidden`) {
		t.Fatalf("the plain-HTTP note is missing: %q", note)
	}
	requestID := text(t, ctx, "#request-id")
	pending := admin.ok("device.pair.list", map[string]any{})["pending"].([]any)
	if len(pending) != 1 || pending[0].(map[string]any)["requestId"] != requestID {
		t.Fatalf("pending requests: %v", pending)
	}
	admin.ok("device.pair.approve", map[string]any{"requestId": requestID})
	within(t, ctx, 20*time.Second, "connect once approved and chat",
		chromedp.Poll[chromedp.Void](`document.getElementById("state").textContent === "connected"`),
		chromedp.SendKeys(chromedp.ID("input"), "hello from the LAN"),
		chromedp.Click(chromedp.ID("send")),
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll(".msg[data-role=assistant]")].some(e => e.textContent.includes("You said: hello from the LAN"))`),
	)
	screenshot(t, ctx, "webchat-plain-http.png")
	within(t, ctx, 20*time.Second, "the stored key signs again after a reload, without pairing",
		chromedp.Reload(),
		chromedp.Poll[chromedp.Void](`document.getElementById("state").textContent === "connected" && document.querySelectorAll(".msg").length === 2`),
	)
	if paired := admin.ok("device.pair.list", map[string]any{})["paired"].([]any); len(paired) != 1 {
		t.Fatalf("%d paired devices, want 1 (the same key each time)", len(paired))
	}
}

// TestWebChat_CSP checks the page's policy: its own inline scripts run by
// hash (the tests above prove they do), nothing else, never 'unsafe-inline',
// and the Ed25519 fallback is inlined with its licence.
func TestWebChat_CSP(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	body := checkHashedPage(t, strings.Replace(h.url, "ws://", "http://", 1)+"/", 2)
	for _, s := range []string{"@noble/ed25519 3.2.0", "@noble/hashes 2.4.0", "The MIT License", "Copyright (c) 2019 Paul Miller", "globalThis.moltgateEd25519"} {
		if !bytes.Contains(body, []byte(s)) {
			t.Fatalf("the page lacks %q", s)
		}
	}
}

// The admin page has the chat's policy: its script and style by hash.
func TestAdmin_CSP(t *testing.T) {
	h := adminWith(t, &api.Trust{Loopback: true}, nil)
	checkHashedPage(t, strings.Replace(h.url, "ws://", "http://", 1)+"/_admin/", 1)
}

// checkHashedPage gets a page and checks that its CSP allows exactly its
// inline scripts and styles, by hash, and returns the page.
func checkHashedPage(t *testing.T, url string, scripts int) []byte {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	csp := res.Header.Get("Content-Security-Policy")
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	if res.StatusCode != 200 || strings.Contains(csp, "unsafe") || directives["default-src"] != "'none'" || directives["img-src"] != "'self' data:" || directives["connect-src"] != "'self'" {
		t.Fatalf("%s: %d, CSP = %s", url, res.StatusCode, csp)
	}
	for tag, want := range map[string]int{"script": scripts, "style": 1} {
		blocks := regexp.MustCompile(`(?s)<`+tag+`>(.*?)</`+tag+`>`).FindAllSubmatch(body, -1)
		var hashes []string
		for _, s := range blocks {
			sum := sha256.Sum256(s[1])
			hashes = append(hashes, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		}
		if len(blocks) != want || directives[tag+"-src"] != strings.Join(hashes, " ") {
			t.Fatalf("%s: %s-src = %s, want the hashes of the %d inline %ss: %s", url, tag, directives[tag+"-src"], len(blocks), tag, strings.Join(hashes, " "))
		}
		if n := bytes.Count(body, []byte("<"+tag)); n != len(blocks) {
			t.Fatalf("%s: %d %s tags, %d plain inline ones: the page loads one from elsewhere", url, n, tag, len(blocks))
		}
	}
	if bytes.Contains(body, []byte(" style=")) {
		t.Fatalf("%s has a style attribute, which its CSP blocks", url)
	}
	return body
}
