package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/fakediscord"
	"github.com/moltgate/moltgate/internal/fakeslack"
	"github.com/moltgate/moltgate/internal/faketelegram"
)

// platform is a chat platform's loopback fake, seen the same way for the
// three: how the gateway is pointed at it, how a person writes to the bot,
// and what the bot sent back.
type platform struct {
	name string
	env  func(owner string) map[string]string
	dm   func(userID, name, text string)
	sent func() []string // the texts the bot sent, in order
	// fail makes the next n sends fail with a 5xx (0: none).
	fail func(n int)
	// ready waits until the bot is connected (a gateway in another
	// process cannot be asked).
	ready func(tb testing.TB)
}

func telegramPlatform(t testing.TB) platform {
	f := faketelegram.New(t)
	return platform{name: "telegram",
		env: func(owner string) map[string]string {
			return map[string]string{"TELEGRAM_BOT_TOKEN": f.Token, "TELEGRAM_API_URL": f.URL, "TELEGRAM_DM_ALLOW_FROM": owner}
		},
		dm: func(id, name, text string) {
			n, _ := strconv.ParseInt(id, 10, 64)
			f.DM(faketelegram.User{ID: n, FirstName: name}, text)
		},
		sent: func() (out []string) {
			for _, m := range f.Sent() {
				out = append(out, m.Text)
			}
			return out
		},
		fail:  func(n int) { f.ClearFailures(); f.FailNext("sendMessage", n, faketelegram.Failure{Status: 502}) },
		ready: func(tb testing.TB) { f.WaitRequests(tb, "getUpdates", 1, 20*time.Second) }, // updates queue until polled
	}
}

func discordPlatform(t testing.TB) platform {
	f := fakediscord.New(t)
	return platform{name: "discord",
		env: func(owner string) map[string]string {
			return map[string]string{"DISCORD_BOT_TOKEN": f.Token, "DISCORD_API_URL": f.URL, "DISCORD_DM_ALLOW_FROM": owner}
		},
		dm: func(id, name, text string) { f.DM(id, name, text) },
		sent: func() (out []string) {
			for _, m := range f.Sent() {
				out = append(out, m.Content)
			}
			return out
		},
		fail: func(n int) {
			f.ClearFailures()
			f.FailNext(fakediscord.RouteCreateMessage, n, fakediscord.Failure{Status: 502})
		},
		ready: func(tb testing.TB) { f.WaitReady(tb, 20*time.Second) },
	}
}

func slackPlatform(t testing.TB) platform {
	f := fakeslack.New(t)
	return platform{name: "slack",
		env: func(owner string) map[string]string {
			return map[string]string{"SLACK_BOT_TOKEN": f.BotToken, "SLACK_APP_TOKEN": f.AppToken, "SLACK_API_URL": f.URL, "SLACK_DM_ALLOW_FROM": owner}
		},
		dm: func(id, name, text string) { f.InjectDM(id, name, text) },
		sent: func() (out []string) {
			for _, m := range f.Sent() {
				out = append(out, m.Text)
			}
			return out
		},
		fail:  func(n int) { f.ClearFailures(); f.FailNext("chat.postMessage", n, fakeslack.Failure{Status: 502}) },
		ready: func(tb testing.TB) { f.WaitSocket(tb, 1, 20*time.Second) },
	}
}

var platforms = []func(testing.TB) platform{telegramPlatform, discordPlatform, slackPlatform}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func count(texts []string, part string) int {
	n := 0
	for _, s := range texts {
		if strings.Contains(s, part) {
			n++
		}
	}
	return n
}

var pairingCode = regexp.MustCompile(`pairing code is ([A-Z2-9]{8})`)

// adminCall calls the admin API as the local owner (loopback + token).
func adminCall(t *testing.T, g *gateway, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, g.server.URL()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+g.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// The end-to-end cases, for each platform: the owner's DM is
// answered; a stranger gets one pairing code however often they write,
// is approved in the admin, told so, and answered after; a long reply is
// split; allowlist never sends a code.
func TestChannels_EndToEnd(t *testing.T) {
	for _, newPlatform := range platforms {
		p := newPlatform(t)
		t.Run(p.name, func(t *testing.T) {
			_, env := testEnv(t, p.env("1001"))
			g := mustOpenGateway(t, env)
			defer g.close(context.Background())
			waitFor(t, p.name+" running", func() bool { return channelState(g, p.name) == "running" })

			p.dm("1001", "Owner", "hello from the owner")
			waitFor(t, "the owner's reply", func() bool { return count(p.sent(), "You said: hello from the owner") == 1 })

			// A stranger floods the bot: one code, one reply.
			for i := 0; i < 10; i++ {
				p.dm("2002", "Stranger", fmt.Sprint("let me in ", i))
			}
			waitFor(t, "a pairing code", func() bool { return count(p.sent(), "pairing code is") == 1 })
			code := pairingCode.FindStringSubmatch(strings.Join(p.sent(), "\n"))[1]
			if n := count(p.sent(), "let me in"); n != 0 {
				t.Fatal("a stranger's message was answered before approval")
			}
			if status, out := adminCall(t, g, "POST", "/api/admin/channels/"+p.name+"/pairing/"+code+"/approve", `{"notify": true}`); status != 200 {
				t.Fatalf("approve = %d %v", status, out)
			}
			waitFor(t, "the approval notice", func() bool { return count(p.sent(), "You're approved") == 1 })
			p.dm("2002", "Stranger", "now can you hear me")
			waitFor(t, "the stranger's reply", func() bool { return count(p.sent(), "You said: now can you hear me") == 1 })
			time.Sleep(300 * time.Millisecond) // a wrong second code or reply would show here
			if count(p.sent(), "pairing code is") != 1 || count(p.sent(), "let me in") != 0 {
				t.Fatalf("sent: %q", p.sent())
			}
			checkConversationFilter(t, g, p.name, "2002")

			// A long reply is split within the platform's limit, nothing lost.
			long := strings.Repeat("word ", 1000) // the echo model repeats it: > 4,000 characters
			before := len(p.sent())
			p.dm("1001", "Owner", long)
			waitFor(t, "the whole reply", func() bool { return strings.Count(strings.Join(p.sent()[before:], " "), "word") >= 1000 })
			if n := len(p.sent()) - before; n < 2 {
				t.Fatalf("a reply of over 5,000 characters came in %d message", n)
			}
		})
	}
}

func channelState(g *gateway, name string) string {
	for _, st := range g.channels.Statuses() {
		if st.Channel == name {
			return st.State
		}
	}
	return ""
}

// allowlist: strangers are ignored, never given a code; the owner is
// answered. On each platform.
func TestChannels_AllowlistNeverSendsACode(t *testing.T) {
	for _, newPlatform := range platforms {
		p := newPlatform(t)
		t.Run(p.name, func(t *testing.T) {
			vars := p.env("1001")
			vars[strings.ToUpper(p.name)+"_DM_POLICY"] = "allowlist"
			_, env := testEnv(t, vars)
			g := mustOpenGateway(t, env)
			defer g.close(context.Background())
			waitFor(t, p.name+" running", func() bool { return channelState(g, p.name) == "running" })
			for i := 0; i < 5; i++ {
				p.dm("2002", "Stranger", "hello?")
			}
			p.dm("1001", "Owner", "ping")
			waitFor(t, "the owner's reply", func() bool { return count(p.sent(), "You said: ping") == 1 })
			if len(p.sent()) != 1 {
				t.Fatalf("sent %q: a stranger got something under allowlist", p.sent())
			}
			if pending := g.set.Channels.Pending(p.name, time.Now()); len(pending) != 0 {
				t.Fatalf("pending = %v", pending)
			}
		})
	}
}

// An attachment alone gets a note, not a run; a failed delivery (a 502)
// is retried and lands once.
func TestChannels_AttachmentAndRetry(t *testing.T) {
	f := faketelegram.New(t)
	_, env := testEnv(t, map[string]string{"TELEGRAM_BOT_TOKEN": f.Token, "TELEGRAM_API_URL": f.URL, "TELEGRAM_DM_ALLOW_FROM": "1001"})
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())
	owner := faketelegram.User{ID: 1001, FirstName: "Owner"}
	f.Post(faketelegram.Message{From: owner, Attachment: "photo"})
	f.WaitSent(t, 1, 20*time.Second)
	if got := f.Sent()[0].Text; got != "I can only read text for now: attachments are not supported yet. Please write your message as text." {
		t.Fatalf("attachment note = %q", got)
	}
	f.FailNext("sendMessage", 2, faketelegram.Failure{Status: 502})
	f.DM(owner, "retry me")
	f.WaitSent(t, 2, 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	if n := count(sentTexts(f), "You said: retry me"); n != 1 {
		t.Fatalf("delivered %d times", n)
	}
	failed, _ := g.log.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventChannelDeliveryFailed})
	if len(failed) != 2 {
		t.Fatalf("%d failed attempts recorded, want 2", len(failed))
	}
}

// A refused token leaves that channel failed, visibly, while the others
// run; fixing it in the config restarts that channel alone.
func TestChannels_BadTokenAndLiveConfig(t *testing.T) {
	tg, dc := faketelegram.New(t), fakediscord.New(t)
	tg.RefuseToken(true)
	vars := map[string]string{"TELEGRAM_BOT_TOKEN": tg.Token, "TELEGRAM_API_URL": tg.URL,
		"DISCORD_BOT_TOKEN": dc.Token, "DISCORD_API_URL": dc.URL, "DISCORD_DM_ALLOW_FROM": "1001"}
	_, env := testEnv(t, vars)
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())
	waitFor(t, "telegram failed", func() bool { return channelState(g, "telegram") == "failed" })
	waitFor(t, "discord running", func() bool { return channelState(g, "discord") == "running" })
	var tgErr string
	for _, st := range g.channels.Statuses() {
		if st.Channel == "telegram" {
			tgErr = st.Error
		}
	}
	if !strings.Contains(tgErr, "TELEGRAM_BOT_TOKEN") || strings.Contains(tgErr, tg.Token) {
		t.Fatalf("telegram error = %q", tgErr)
	}
	// OpenClaw's channels.status shows it too (through the admin here).
	_, out := adminCall(t, g, "GET", "/api/admin/channels", "")
	if !strings.Contains(fmt.Sprint(out["status"]), "failed") {
		t.Fatalf("admin channels = %v", out)
	}

	// The owner fixes the token in the config: telegram restarts, discord does not.
	identifies := dc.Identifies()
	tg.RefuseToken(false)
	doc := `{"channels":{"telegram":{"botToken":"` + tg.Token + `","dmPolicy":"open"}}}`
	if status, out := adminCall(t, g, "PUT", "/api/admin/config", `{"config":`+doc+`}`); status != 200 {
		t.Fatalf("apply = %d %v", status, out)
	}
	waitFor(t, "telegram running", func() bool { return channelState(g, "telegram") == "running" })
	if dc.Identifies() != identifies {
		t.Fatal("a telegram change restarted discord")
	}
	// The token given in the config is sealed in the log.
	events, _ := g.log.Query(context.Background(), eventlog.Filter{})
	for _, e := range events {
		if strings.Contains(string(e.Data), tg.Token) {
			t.Fatalf("the bot token is in the log in plaintext at seq %d", e.Seq)
		}
	}
}

// checkConversationFilter replays the stranger's conversation as the
// admin and the CLI filter it (channel and sender): their pairing, their
// messages, the answers and their deliveries, and nobody else's events.
func checkConversationFilter(t *testing.T, g *gateway, channel, sender string) {
	t.Helper()
	status, out := adminCall(t, g, "GET", "/api/admin/events?limit=1000&channel="+channel+"&sender="+sender, "")
	if status != 200 {
		t.Fatalf("events = %d %v", status, out)
	}
	types := map[string]int{}
	roles := map[string]int{}
	for _, raw := range out["events"].([]any) {
		e := raw.(map[string]any)
		if e["channel"] != channel || e["sender"] != sender {
			t.Errorf("the filter let through %v", e)
		}
		types[e["type"].(string)]++
		if e["type"] == moltgate.EventChatMessageAdded { // the list carries no payloads: the event's own page does
			status, one := adminCall(t, g, "GET", fmt.Sprintf("/api/admin/events/%v", e["seq"]), "")
			if status != 200 {
				t.Fatalf("event %v = %d %v", e["seq"], status, one)
			}
			role, _ := one["data"].(map[string]any)["role"].(string)
			roles[role]++
		}
	}
	for _, typ := range []string{moltgate.EventChannelPairingRequested, moltgate.EventChannelPairingApproved,
		moltgate.EventChatRunStarted, moltgate.EventChannelDeliverySent} {
		if types[typ] == 0 {
			t.Errorf("no %s in %s sender %s's events: %v", typ, channel, sender, types)
		}
	}
	if roles["user"] != 1 || roles["assistant"] != 1 {
		t.Errorf("the conversation has %v messages, want the one message after approval and its answer", roles)
	}

	want := len(out["events"].([]any))
	cli := runCLI(t, g.env, "events", "list", "--json", "--limit", "0", "--channel", channel, "--sender", sender)
	if n := strings.Count(cli, "\n"); n != want {
		t.Errorf("the CLI lists %d events, the admin %d:\n%s", n, want, cli)
	}
	req, _ := http.NewRequest("GET", g.server.URL()+"/api/admin/events/export?channel="+channel+"&sender="+sender, nil)
	req.Header.Set("Authorization", "Bearer "+g.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	export, _ := io.ReadAll(res.Body)
	if n := bytes.Count(export, []byte("\n")); res.StatusCode != 200 || n != want {
		t.Errorf("the export = %d with %d events, the list %d", res.StatusCode, n, want)
	}
}
