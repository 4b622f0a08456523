package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/agent"
	"github.com/moltgate/moltgate/api"
)

// finalFor waits for the run's final/aborted/error chat event, checking
// that deltas arrive in order and add up to the final text.
func finalFor(t *testing.T, c *client, runID string) (state, text string, deltas int) {
	t.Helper()
	var sb strings.Builder
	lastSeq := 0.0
	for {
		ev := c.event("chat", func(p map[string]any) bool { return p["runId"] == runID })
		seq := ev["seq"].(float64)
		if seq <= lastSeq {
			t.Fatalf("chat seq went from %v to %v", lastSeq, seq)
		}
		lastSeq = seq
		state = ev["state"].(string)
		if state == "delta" {
			sb.WriteString(ev["deltaText"].(string))
			deltas++
			if got := messageText(ev["message"]); got != sb.String() {
				t.Fatalf("cumulative message %q != deltas %q", got, sb.String())
			}
			continue
		}
		if m, ok := ev["message"]; ok {
			text = messageText(m)
		}
		if state == "final" && text != sb.String() {
			t.Fatalf("final %q != streamed %q", text, sb.String())
		}
		if e, ok := ev["errorMessage"].(string); ok {
			text = e
		}
		return state, text, deltas
	}
}

func messageText(m any) string {
	msg, _ := m.(map[string]any)
	parts, _ := msg["content"].([]any)
	var sb strings.Builder
	for _, p := range parts {
		sb.WriteString(p.(map[string]any)["text"].(string))
	}
	return sb.String()
}

func TestGateway_Chat(t *testing.T) {
	path := t.TempDir() + "/moltgate.db"
	h := newHarness(t, path, agent.Echo{})
	c := h.operator()

	ack := c.ok("chat.send", map[string]any{"sessionKey": "main", "message": "hello there", "idempotencyKey": "k1"})
	runID := ack["runId"].(string)
	if ack["status"] != "started" || runID == "" {
		t.Fatalf("ack = %v", ack)
	}
	state, text, deltas := finalFor(t, c, runID)
	if state != "final" || !strings.HasPrefix(text, "You said: hello there") || deltas < 3 {
		t.Fatalf("run ended %s with %q after %d deltas", state, text, deltas)
	}

	t.Run("IdempotentSend", func(t *testing.T) {
		again := c.ok("chat.send", map[string]any{"sessionKey": "main", "message": "hello there", "idempotencyKey": "k1"})
		if again["runId"] != runID {
			t.Fatalf("same idempotencyKey gave run %v, want %s", again["runId"], runID)
		}
		hist := c.ok("chat.history", map[string]any{"sessionKey": "main"})
		if n := len(hist["messages"].([]any)); n != 2 {
			t.Fatalf("history has %d messages after a retried send, want 2", n)
		}
	})

	t.Run("History", func(t *testing.T) {
		hist := c.ok("chat.history", map[string]any{"sessionKey": "main", "limit": 10})
		msgs := hist["messages"].([]any)
		if messageText(msgs[0]) != "hello there" || msgs[0].(map[string]any)["role"] != "user" || msgs[1].(map[string]any)["model"] != "test/model" {
			t.Fatalf("history = %v", msgs)
		}
		if last := c.ok("chat.history", map[string]any{"sessionKey": "main", "limit": 1})["messages"].([]any); len(last) != 1 || last[0].(map[string]any)["role"] != "assistant" {
			t.Fatalf("limit 1 = %v (newest last)", last)
		}
	})

	t.Run("Inject", func(t *testing.T) {
		c.ok("chat.inject", map[string]any{"sessionKey": "main", "message": "a note from the operator"})
		ev := c.event("chat", func(p map[string]any) bool { return messageText(p["message"]) == "a note from the operator" })
		if ev["state"] != "final" {
			t.Fatalf("inject event = %v", ev)
		}
	})

	t.Run("SessionsListAndReset", func(t *testing.T) {
		list := c.ok("sessions.list", nil)["sessions"].([]any)
		if len(list) != 1 || list[0].(map[string]any)["key"] != moltgate.MainSessionKey || list[0].(map[string]any)["messageCount"] != float64(3) {
			t.Fatalf("sessions = %v", list)
		}
		old := list[0].(map[string]any)["sessionId"]
		reset := c.ok("sessions.reset", map[string]any{"key": "main"})
		if reset["sessionId"] == old {
			t.Fatal("reset kept the session id")
		}
		if msgs := c.ok("chat.history", map[string]any{"sessionKey": "main"})["messages"].([]any); len(msgs) != 0 {
			t.Fatalf("history after reset = %v", msgs)
		}
	})

	t.Run("HistoryAfterRestart", func(t *testing.T) {
		c.ok("chat.send", map[string]any{"sessionKey": "kept", "message": "remember me", "idempotencyKey": "k2"})
		finalFor(t, c, c.ok("chat.send", map[string]any{"sessionKey": "kept", "message": "remember me", "idempotencyKey": "k2"})["runId"].(string))
		h.close()
		h2 := newHarness(t, path, agent.Echo{})
		c2 := h2.operator()
		msgs := c2.ok("chat.history", map[string]any{"sessionKey": "kept"})["messages"].([]any)
		if len(msgs) != 2 || messageText(msgs[0]) != "remember me" {
			t.Fatalf("history after restart = %v", msgs)
		}
	})
}

// slowProvider streams a word every 20 ms until cancelled.
type slowProvider struct{}

func (slowProvider) Stream(ctx context.Context, req agent.Request, onDelta func(string)) (agent.Reply, error) {
	var sb strings.Builder
	for i := 0; i < 500; i++ {
		select {
		case <-ctx.Done():
			return agent.Reply{Text: sb.String()}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		sb.WriteString("word ")
		onDelta("word ")
	}
	return agent.Reply{Text: sb.String()}, nil
}

func TestGateway_ChatAbortAndQueue(t *testing.T) {
	h := newHarness(t, "", slowProvider{})
	c := h.operator()
	first := c.ok("chat.send", map[string]any{"sessionKey": "s", "message": "one", "idempotencyKey": "a"})["runId"].(string)
	second := c.ok("chat.send", map[string]any{"sessionKey": "s", "message": "two", "idempotencyKey": "b"})["runId"].(string)
	c.event("chat", func(p map[string]any) bool { return p["runId"] == first && p["state"] == "delta" })

	// One run at a time per session: the second waits.
	list := c.ok("sessions.list", nil)["sessions"].([]any)
	if ids := list[0].(map[string]any)["activeRunIds"].([]any); len(ids) != 2 {
		t.Fatalf("activeRunIds = %v", ids)
	}
	if res := c.ok("chat.abort", map[string]any{"sessionKey": "s", "runId": first}); res["aborted"] != true {
		t.Fatalf("abort = %v", res)
	}
	if state, _, _ := finalFor(t, c, first); state != "aborted" {
		t.Fatalf("first run ended %s", state)
	}
	// The queued run starts after the aborted one, then is aborted by session.
	c.event("chat", func(p map[string]any) bool { return p["runId"] == second && p["state"] == "delta" })
	c.ok("chat.abort", map[string]any{"sessionKey": "s"})
	if state, _, _ := finalFor(t, c, second); state != "aborted" {
		t.Fatalf("second run ended %s", state)
	}
	// What streamed before the abort is kept in the transcript.
	msgs := c.ok("chat.history", map[string]any{"sessionKey": "s"})["messages"].([]any)
	if len(msgs) != 4 || !strings.HasPrefix(messageText(msgs[2]), "word") {
		t.Fatalf("history = %v", msgs)
	}
}

// A client that asks for chat.delta-only gets deltas without the
// cumulative message (O(1) bytes each); a v4 client keeps OpenClaw's shape.
func TestGateway_DeltaOnlyCapability(t *testing.T) {
	h := newHarness(t, "", agent.Echo{})
	lean := dial(t, h.url)
	if res := lean.connect(connectOpts{token: testToken, tamper: func(p map[string]any) { p["caps"] = []string{api.CapDeltaOnly} }}); res["ok"] != true {
		t.Fatal(res)
	}
	if caps := fmt.Sprint(lean.hello["features"].(map[string]any)["caps"]); !strings.Contains(caps, api.CapDeltaOnly) {
		t.Fatalf("hello-ok features.caps = %s", caps)
	}
	full := h.operator()
	full.ok("chat.history", map[string]any{"sessionKey": "both"}) // follow the session
	runID := lean.ok("chat.send", map[string]any{"sessionKey": "both", "message": "one two three four", "idempotencyKey": "d1"})["runId"]
	var leanText, fullText string
	for _, c := range []*client{lean, full} {
		for {
			p := c.event("chat", func(p map[string]any) bool { return p["runId"] == runID })
			if p["state"] != "delta" {
				break
			}
			if c == lean {
				if _, has := p["message"]; has {
					t.Fatal("a delta-only client got the cumulative message")
				}
				leanText += p["deltaText"].(string)
			} else {
				fullText = p["message"].(map[string]any)["content"].([]any)[0].(map[string]any)["text"].(string)
			}
		}
	}
	if leanText == "" || leanText != fullText {
		t.Fatalf("appended deltas %q, cumulative %q", leanText, fullText)
	}
}
