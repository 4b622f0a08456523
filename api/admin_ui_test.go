package api_test

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/agent"
	"github.com/moltgate/moltgate/api"
	"github.com/moltgate/moltgate/projections"
)

// TestAdminUI drives the admin as an owner on this machine without
// Access does: opened with the gateway token.
func TestAdminUI(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	restarted := make(chan struct{}, 1)
	h.server.MountAdmin(&api.Admin{Gateway: h.gw, Channels: h.svc, History: &projections.History{Log: h.log}, Restart: func(context.Context, moltgate.Meta) error {
		restarted <- struct{}{}
		return nil
	}})
	ctx := newBrowser(t)
	base := strings.Replace(h.url, "ws://", "http://", 1)

	// Count what the page asks the server for.
	var mu sync.Mutex
	requests := map[string]int{}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			if u, err := url.Parse(e.Request.URL); err == nil {
				mu.Lock()
				requests[u.Path]++
				mu.Unlock()
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	count := func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		return requests[path]
	}

	within(t, ctx, 20*time.Second, "open the admin",
		chromedp.Navigate(base+"/_admin/?token="+testToken),
		chromedp.Poll[chromedp.Void](`document.getElementById("who").textContent === "local-admin"`),
		chromedp.Poll[chromedp.Void](`document.getElementById("stream").textContent === "● live"`),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true; window.alert = (m) => { window.__alert = m }`),
	)
	// The page's style applies under its CSP (by hash, without style attributes).
	if !eval[bool](t, ctx, `getComputedStyle(document.getElementById("fatal")).paddingLeft === "16px" && getComputedStyle(document.querySelector("h2.next")).marginTop === "16px"`) {
		t.Fatal("the admin page's style does not apply")
	}
	live := time.Now()
	within(t, ctx, 10*time.Second, "restart with confirmation", chromedp.Click(chromedp.ID("restart")))
	select {
	case <-restarted:
	case <-time.After(5 * time.Second):
		t.Fatal("the restart button did not restart")
	}

	// A device connecting elsewhere shows up without a reload.
	res := dial(t, h.url).connect(connectOpts{token: testToken, device: newDevice()})
	requestID := errDetail(res, "requestId").(string)
	within(t, ctx, 10*time.Second, "see the request in the queue",
		chromedp.Poll[chromedp.Void](`document.querySelector('#pending tr[data-request-id="`+requestID+`"]') !== null`),
	)
	screenshot(t, ctx, "admin-queue.png")
	within(t, ctx, 10*time.Second, "approve it and see it paired",
		chromedp.Click(chromedp.CSS(`#pending tr[data-request-id="`+requestID+`"] button`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#pending tr").length === 0 && document.querySelectorAll("#paired tr").length === 1`),
		chromedp.Poll[chromedp.Void](`(document.querySelector('#outcomes li[data-key="device/`+requestID+`"]') || {}).textContent?.startsWith("approved device")`),
	)

	// A Telegram stranger waits too; approving lets them in.
	code, _, err := h.svc.RequestChannelPairing(t.Context(), "telegram", "4242", "Ada", nil, moltgate.Meta{Source: moltgate.SourceChannel})
	if err != nil {
		t.Fatal(err)
	}
	row := `#senders tr[data-channel="telegram"][data-code="` + code + `"]`
	within(t, ctx, 10*time.Second, "see the chat sender in the queue",
		chromedp.Poll[chromedp.Void](`document.querySelector('`+row+`') !== null`),
	)
	if got := text(t, ctx, row); !strings.Contains(got, "telegram") || !strings.Contains(got, "Ada (4242)") {
		t.Fatalf("sender row = %q", got)
	}
	screenshot(t, ctx, "admin-senders.png")
	within(t, ctx, 10*time.Second, "approve the chat sender",
		chromedp.Click(chromedp.CSS(row+` button`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#senders tr").length === 0`),
		chromedp.Poll[chromedp.Void](`(document.querySelector('#outcomes li[data-key="telegram/`+code+`"]') || {}).textContent?.startsWith("approved telegram sender Ada (4242) by local-admin")`),
	)
	if !h.models.Channels.Allowed("telegram", "4242") {
		t.Fatal("the sender approved in the UI is not allowed")
	}

	// Nothing of the above was polled: the old page fetched the queues
	// every second and the events every three. Absence takes a window to
	// show; give it two and a half old poll periods since the stream went
	// live, then count.
	if wait := 2500*time.Millisecond - time.Since(live); wait > 0 {
		time.Sleep(wait)
	}
	for path, want := range map[string]int{"/_admin/": 1, "/api/admin/stream": 1, "/api/admin/devices": 0, "/api/admin/channels": 0, "/api/admin/events": 0} {
		if got := count(path); got != want {
			t.Errorf("%s was requested %d times, want %d", path, got, want)
		}
	}

	// The events filter by channel and sender: the stranger's pairing is
	// listed, another's is not, and their conversation arrives live.
	within(t, ctx, 10*time.Second, "filter the events by channel and sender",
		chromedp.SetValue(chromedp.ID("channel-filter"), "telegram"),
		chromedp.SetValue(chromedp.ID("sender-filter"), "4242"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("sender-filter").dispatchEvent(new Event("input"))`),
		chromedp.Poll[chromedp.Void](`document.getElementById("events").textContent.includes("channel.pairing.approved") && !document.getElementById("events").textContent.includes("device.")`),
	)
	if _, _, err := h.svc.RequestChannelPairing(t.Context(), "telegram", "5555", "Bob", nil, moltgate.Meta{Source: moltgate.SourceChannel}); err != nil {
		t.Fatal(err)
	}
	origin := &moltgate.ChannelAddress{Channel: "telegram", ChatID: "4242", Sender: "4242"}
	if _, err := h.svc.SendMessage(t.Context(), moltgate.RunRequest{SessionKey: "agent:main:main", Message: "hi from Ada", Origin: origin}, moltgate.Meta{Actor: "telegram:4242"}); err != nil {
		t.Fatal(err)
	}
	within(t, ctx, 10*time.Second, "see the conversation arrive",
		chromedp.Poll[chromedp.Void](`document.getElementById("events").textContent.includes("chat.run.started")`, chromedp.WithPollingTimeout(3*time.Second)),
	)
	if got := text(t, ctx, "#events"); strings.Contains(got, "5555") || !strings.Contains(got, "[telegram 4242]") || strings.Contains(got, "device.") {
		t.Fatalf("filtered events:\n%s", got)
	}
	within(t, ctx, 10*time.Second, "clear the filters",
		chromedp.Evaluate[chromedp.Void](`for (const id of ["channel-filter", "sender-filter"]) document.getElementById(id).value = "";
			document.getElementById("sender-filter").dispatchEvent(new Event("input"))`),
		chromedp.Poll[chromedp.Void](`document.getElementById("events").textContent.includes("device.")`),
	)

	// The config editor shows syntax errors before anything is sent, and
	// the server's issues after.
	within(t, ctx, 10*time.Second, "type broken JSON",
		chromedp.SetValue(chromedp.ID("config-text"), `{"agents": {`),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("config-text").dispatchEvent(new Event("input"))`),
		chromedp.Poll[chromedp.Void](`document.getElementById("config-error").textContent.includes("JSON syntax error")`),
		chromedp.SetValue(chromedp.ID("config-text"), `{"models":{"providers":{"x":{"api":"soap"}}}}`),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("config-text").dispatchEvent(new Event("input"))`),
		chromedp.Click(chromedp.ID("apply")),
		chromedp.Poll[chromedp.Void](`document.getElementById("config-error").textContent.includes("models.providers.x.api")`),
	)
	screenshot(t, ctx, "admin-config-error.png")
	within(t, ctx, 10*time.Second, "fix it and apply",
		chromedp.SetValue(chromedp.ID("config-text"), `{"agents":{"defaults":{"model":{"primary":"anthropic/claude-sonnet-4-5"}}}}`),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("config-text").dispatchEvent(new Event("input"))`),
		chromedp.Click(chromedp.ID("apply")),
		chromedp.Poll[chromedp.Void](`document.getElementById("config-ok").textContent.startsWith("Applied")`),
	)
	if _, hash := h.models.Config.Current(); hash == "" || !strings.Contains(text(t, ctx, "#config-hash"), hash) {
		t.Fatalf("config hash shown %q, stored %q", text(t, ctx, "#config-hash"), hash)
	}

	// Move the replay slider back to the first event: one device waiting,
	// none paired, no config — against the current state.
	within(t, ctx, 10*time.Second, "replay to seq 1",
		chromedp.Poll[chromedp.Void](`Number(document.getElementById("replay").max) >= 3`),
		chromedp.Evaluate[chromedp.Void](`const r = document.getElementById("replay"); r.value = 1; r.dispatchEvent(new Event("input"))`),
		chromedp.Poll[chromedp.Void](`document.getElementById("replay-seq").textContent === "1" && document.getElementById("replay-then").textContent.includes('"pendingDevices": 1')`),
	)
	then, now := text(t, ctx, "#replay-then"), text(t, ctx, "#replay-now")
	if !strings.Contains(then, `"pairedDevices": 0`) || !strings.Contains(now, `"pairedDevices": 1`) || !strings.Contains(then, `"configHash": ""`) {
		t.Fatalf("replay then %s now %s", then, now)
	}
	screenshot(t, ctx, "admin-replay.png")
	within(t, ctx, 10*time.Second, "phone width",
		chromedp.EmulateViewport(390, 844),
		chromedp.Poll[chromedp.Void](`document.getElementById("apply").getBoundingClientRect().right <= 390`),
	)
	screenshot(t, ctx, "admin-phone.png")
}

// In DEV_MODE the page needs no token, and says that it is open.
func TestAdminUI_DevMode(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	h.gw.DevMode = true
	h.server.MountAdmin(&api.Admin{Gateway: h.gw, Channels: h.svc, History: &projections.History{Log: h.log}})
	ctx := newBrowser(t)
	within(t, ctx, 20*time.Second, "open the admin in DEV_MODE",
		chromedp.Navigate(strings.Replace(h.url, "ws://", "http://", 1)+"/_admin/"),
		chromedp.Poll[chromedp.Void](`document.getElementById("who").textContent === "dev-mode"`),
		chromedp.WaitVisible(chromedp.ID("devbanner")),
		chromedp.Poll[chromedp.Void](`document.getElementById("stream").textContent === "● live"`),
	)
}

// Without Access, the page opened with ?token= authenticates its stream
// with the token too (EventSource cannot send the header its fetches send).
func TestAdminUI_LocalToken(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	h.server.MountAdmin(&api.Admin{Gateway: h.gw, Channels: h.svc, History: &projections.History{Log: h.log}})
	ctx := newBrowser(t)
	within(t, ctx, 20*time.Second, "open the admin with the token",
		chromedp.Navigate(strings.Replace(h.url, "ws://", "http://", 1)+"/_admin/?token="+testToken),
		chromedp.Poll[chromedp.Void](`document.getElementById("who").textContent === "local-admin"`),
		chromedp.Poll[chromedp.Void](`document.getElementById("stream").textContent === "● live"`),
	)
	requestID := errDetail(dial(t, h.url).connect(connectOpts{token: testToken, device: newDevice()}), "requestId").(string)
	within(t, ctx, 10*time.Second, "see the request",
		chromedp.Poll[chromedp.Void](`document.querySelector('#pending tr[data-request-id="`+requestID+`"]') !== null`),
	)
}
