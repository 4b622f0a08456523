package agent

import (
	"fmt"
	"strings"
	"testing"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/internal/fakellm"
)

func TestFitWindow(t *testing.T) {
	long := strings.Repeat("x", 396) // 99 tokens + 4 per message = 103
	var msgs []Message
	for i := 0; i < 10; i++ {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		msgs = append(msgs, Message{Role: role, Text: fmt.Sprintf("%d%s", i, long[1:])})
	}
	t.Run("DropsOldestFirst", func(t *testing.T) {
		// room for 3 messages: the newest user message (8) and what follows (9) plus one more,
		// but the kept part must start with a user message, so 7 goes too.
		got := fitWindow(msgs, "", nil, 1000+3*103, 1000)
		if len(got) != 2 || got[0].Text[0] != '8' || got[1].Text[0] != '9' {
			t.Fatalf("kept %d messages starting with %q", len(got), got[0].Text[:1])
		}
		got = fitWindow(msgs, "", nil, 1000+4*103, 1000)
		if len(got) != 4 || got[0].Text[0] != '6' {
			t.Fatalf("kept %d messages starting with %q", len(got), got[0].Text[:1])
		}
	})
	t.Run("SystemAndToolsCount", func(t *testing.T) {
		system := strings.Repeat("s", 4*103)
		tools := []ToolSpec{{Name: "t", Description: strings.Repeat("d", 4*103)}}
		if got := fitWindow(msgs, system, tools, 1650, 1000); len(got) != 4 {
			t.Fatalf("kept %d messages, want the 4 that fit beside the system prompt and the tools", len(got))
		}
	})
	t.Run("NewestAlwaysKept", func(t *testing.T) {
		run := append(append([]Message(nil), msgs[:9]...), // 8 is the newest user message
			Message{Role: "assistant", ToolCalls: []ToolUse{{ID: "c", Name: "t", Input: []byte(`{}`)}}},
			Message{Role: "user", Results: []ToolOutput{{CallID: "c", Text: long}}})
		got := fitWindow(run, strings.Repeat("s", 10000), nil, 100, 50)
		if len(got) != 3 || got[0].Text[0] != '8' || len(got[2].Results) != 1 {
			t.Fatalf("kept %+v", got)
		}
	})
	t.Run("EverythingFits", func(t *testing.T) {
		if got := fitWindow(msgs, "sys", nil, DefaultContextWindow, DefaultMaxTokens); len(got) != 10 {
			t.Fatalf("kept %d of 10", len(got))
		}
	})
}

// A long session is trimmed to the model's context window before it is
// sent: the system prompt and the newest message stay, the oldest
// messages go, and maxTokens comes from the model's entry.
func TestRunner_TrimsToTheContextWindow(t *testing.T) {
	var transcript []moltgate.ChatMessage
	for i := 0; i < 40; i++ {
		role := map[bool]string{true: "user", false: "assistant"}[i%2 == 0]
		transcript = append(transcript, moltgate.ChatMessage{Role: role, Content: fmt.Sprintf("message %d %s", i, strings.Repeat("word ", 200))})
	}
	transcript = append(transcript, moltgate.ChatMessage{Role: "user", Content: "the newest question"})
	for _, pf := range providerFakes {
		t.Run(pf.name, func(t *testing.T) {
			s := pf.server(t)
			entry := moltgate.ModelEntry{ID: "m", ContextWindow: 4000, MaxTokens: 1000}
			r := newRunner(Choice{Name: "fake/m", Model: "m", Provider: pf.make(s.URL), Entry: entry})
			rec := newRecorder(transcript...)
			runOn(t, r, rec, moltgate.QueuedRun{})
			body := s.Requests()[0]
			msgs := body["messages"].([]any)
			if sys := systemOf(body); !strings.HasPrefix(sys, DefaultSystemPrompt) {
				t.Fatalf("system prompt %q", sys)
			}
			last := mustJSON(msgs[len(msgs)-1])
			if !strings.Contains(last, "the newest question") {
				t.Fatalf("last message %s", last)
			}
			all := mustJSON(msgs)
			if strings.Contains(all, "message 0 ") || !strings.Contains(all, "message 39 ") {
				t.Fatal("the oldest messages should go first")
			}
			if est := estimateTokens(all); est > 4000-1000 || len(msgs) < 3 {
				t.Fatalf("%d messages, about %d tokens: more than the window leaves", len(msgs), est)
			}
			maxKey := map[string]string{"Anthropic": "max_tokens", "OpenAI": "max_completion_tokens"}[pf.name]
			if body[maxKey] != float64(1000) {
				t.Fatalf("%s = %v", maxKey, body[maxKey])
			}
		})
	}
}

// Without maxTokens in the entry the default budget is asked for.
func TestRunner_DefaultMaxTokens(t *testing.T) {
	s := fakellm.NewAnthropic(t)
	r := newRunner(Choice{Name: "fake/m", Model: "m", Provider: NewAnthropic("sk-ant-test", s.URL, nil, nil)})
	runOn(t, r, newRecorder(), moltgate.QueuedRun{})
	if got := s.Requests()[0]["max_tokens"]; got != float64(DefaultMaxTokens) {
		t.Fatalf("max_tokens = %v", got)
	}
}
