package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moltgate/moltgate/internal/fakellm"
)

var conversation = Request{Model: "m", System: "be brief", MaxTokens: 100, Messages: []Message{
	{Role: "user", Text: "hi"}, {Role: "assistant", Text: "hello"}, {Role: "user", Text: "how are you?"}}}

func TestProviders(t *testing.T) {
	for _, pc := range providerFakes {
		t.Run(pc.name, func(t *testing.T) {
			t.Run("Streams", func(t *testing.T) {
				s := pc.server(t)
				var deltas []string
				reply, err := pc.make(s.URL).Stream(context.Background(), conversation, func(d string) { deltas = append(deltas, d) })
				if err != nil {
					t.Fatal(err)
				}
				if reply.Text != "Hello from the fake model." || strings.Join(deltas, "") != reply.Text || len(deltas) != 5 {
					t.Fatalf("reply %q deltas %q", reply.Text, deltas)
				}
				if reply.Usage.OutputTokens != 5 || reply.Usage.InputTokens == 0 {
					t.Fatalf("usage = %+v", reply.Usage)
				}
				body := s.Requests()[0]
				if body["stream"] != true || !strings.Contains(mustJSON(body), "how are you?") || !strings.Contains(mustJSON(body), "be brief") {
					t.Fatalf("request body = %v", body)
				}
			})
			t.Run("RetriesOn429WithRetryAfter", func(t *testing.T) {
				s := pc.server(t)
				s.Script(fakellm.Step{Status: 429, RetryAfter: "1"}, fakellm.Step{Tokens: fakellm.Tokens("after the wait")})
				start := time.Now()
				reply, err := pc.make(s.URL).Stream(context.Background(), conversation, func(string) {})
				if err != nil || reply.Text != "after the wait" {
					t.Fatalf("reply %q err %v", reply.Text, err)
				}
				if n := len(s.Requests()); n != 2 {
					t.Fatalf("%d requests, want 2", n)
				}
				if waited := time.Since(start); waited < 900*time.Millisecond {
					t.Fatalf("retried after %s, before retry-after's second", waited)
				}
			})
			t.Run("GivesUpOn500", func(t *testing.T) {
				s := pc.server(t)
				s.Script(fakellm.Step{Status: 500, RetryAfter: "0"})
				_, err := pc.make(s.URL).Stream(context.Background(), conversation, func(string) {})
				if err == nil || !strings.Contains(err.Error(), "500") {
					t.Fatalf("err = %v", err)
				}
				if n := len(s.Requests()); n != 4 {
					t.Fatalf("%d requests, want 1 + 3 retries", n)
				}
			})
			t.Run("StreamCutMidway", func(t *testing.T) {
				s := pc.server(t)
				s.Script(fakellm.Step{Tokens: fakellm.Tokens("one two three four"), CutAfter: 2})
				var got string
				_, err := pc.make(s.URL).Stream(context.Background(), conversation, func(d string) { got += d })
				if err == nil {
					t.Fatalf("a cut stream succeeded with %q", got)
				}
			})
			t.Run("SlowFirstToken", func(t *testing.T) {
				s := pc.server(t)
				s.Script(fakellm.Step{Tokens: fakellm.Tokens("late but fine"), FirstDelay: 300 * time.Millisecond})
				reply, err := pc.make(s.URL).Stream(context.Background(), conversation, func(string) {})
				if err != nil || reply.Text != "late but fine" {
					t.Fatalf("%q %v", reply.Text, err)
				}
			})
			t.Run("ToolCalls", func(t *testing.T) {
				s := pc.server(t)
				s.Script(fakellm.Step{Tokens: fakellm.Tokens("Checking."), ToolCalls: []fakellm.ToolCall{
					{ID: "call_a", Name: "web_fetch", Input: `{"url":"https://example.com/"}`},
					{ID: "call_b", Name: "browser", Input: `{"action":"screenshot"}`}}})
				var deltas string
				reply, err := pc.make(s.URL).Stream(context.Background(), conversation, func(d string) { deltas += d })
				if err != nil {
					t.Fatal(err)
				}
				if deltas != "Checking." || reply.Text != "Checking." {
					t.Fatalf("deltas %q text %q", deltas, reply.Text)
				}
				if reply.StopReason != map[string]string{"Anthropic": "tool_use", "OpenAI": "tool_calls"}[pc.name] {
					t.Fatalf("stop reason %q", reply.StopReason)
				}
				if len(reply.ToolCalls) != 2 {
					t.Fatalf("tool calls %+v", reply.ToolCalls)
				}
				for i, want := range []ToolUse{
					{ID: "call_a", Name: "web_fetch", Input: json.RawMessage(`{"url":"https://example.com/"}`)},
					{ID: "call_b", Name: "browser", Input: json.RawMessage(`{"action":"screenshot"}`)}} {
					got := reply.ToolCalls[i]
					if got.ID != want.ID || got.Name != want.Name || string(got.Input) != string(want.Input) {
						t.Fatalf("tool call %d = %+v (input %s), want %+v", i, got, got.Input, want)
					}
				}
			})
			t.Run("Abort", func(t *testing.T) {
				s := pc.server(t)
				s.Script(fakellm.Step{Tokens: fakellm.Tokens(strings.Repeat("word ", 100)), Delay: 20 * time.Millisecond})
				ctx, cancel := context.WithCancel(context.Background())
				n := 0
				_, err := pc.make(s.URL).Stream(ctx, conversation, func(string) {
					if n++; n == 3 {
						cancel()
					}
				})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
			})
		})
	}
}
