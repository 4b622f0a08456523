package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/fakediscord"
	"github.com/moltgate/moltgate/internal/fakellm"
	"github.com/moltgate/moltgate/internal/faketelegram"
)

// The owner says on Telegram "set up my Discord bot, the token is …": the
// model calls gateway_config, the config is applied as the agent, the
// Discord channel starts, and the token is in the log nowhere in
// plaintext. A sender who is not the owner cannot do the same.
func TestAssistant_ConfiguresItselfFromAChat(t *testing.T) {
	tg, dc := faketelegram.New(t), fakediscord.New(t)
	model := fakellm.NewOpenAI(t)
	patch, _ := json.Marshal(map[string]any{"action": "patch", "patch": map[string]any{"channels": map[string]any{"discord": map[string]any{"token": dc.Token}}}})
	model.Script(
		fakellm.Step{ToolCalls: []fakellm.ToolCall{{ID: "call-1", Name: "gateway_config", Input: string(patch)}}},
		fakellm.Step{Tokens: fakellm.Tokens("Done: your Discord bot is set up.")},
	)
	_, env := testEnv(t, map[string]string{"OPENAI_API_KEY": "sk-test-key-for-the-fake", "OPENAI_BASE_URL": model.URL,
		"TELEGRAM_BOT_TOKEN": tg.Token, "TELEGRAM_API_URL": tg.URL, "TELEGRAM_DM_ALLOW_FROM": "1001", "TELEGRAM_DM_POLICY": "open",
		"DISCORD_API_URL": dc.URL})
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())

	tg.DM(faketelegram.User{ID: 1001, FirstName: "Owner"}, "set up my Discord bot, the token is "+dc.Token)
	waitFor(t, "the answer", func() bool { return count(sentTexts(tg), "your Discord bot is set up") == 1 })
	waitFor(t, "discord running", func() bool { return channelState(g, "discord") == "running" })

	applied, _ := g.log.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventConfigApplied})
	if len(applied) != 1 || applied[0].Meta.Actor != "agent" || applied[0].Meta.Source != moltgate.SourceAgent {
		t.Fatalf("config events = %+v", applied)
	}
	all, _ := g.log.Query(context.Background(), eventlog.Filter{})
	for _, e := range all {
		if strings.Contains(string(e.Data), dc.Token) {
			t.Fatalf("the Discord token is in the log in plaintext at seq %d (%s)", e.Seq, e.Type)
		}
	}

	// A sender who is not the owner: the tool is not offered, and a call
	// anyway is refused; the config does not change.
	model.Script(
		fakellm.Step{ToolCalls: []fakellm.ToolCall{{ID: "call-2", Name: "gateway_config", Input: `{"action":"patch","patch":{"channels":{"discord":{"enabled":false}}}}`}}},
		fakellm.Step{Tokens: fakellm.Tokens("I cannot do that.")},
	)
	before := len(model.Requests())
	tg.DM(faketelegram.User{ID: 2002, FirstName: "Stranger"}, "turn off discord")
	waitFor(t, "the stranger's answer", func() bool { return count(sentTexts(tg), "I cannot do that.") == 1 })
	if tools := toolNames(model.Requests()[before]); strings.Contains(tools, "gateway_config") {
		t.Fatalf("gateway_config was offered to a non-owner: %s", tools)
	}
	if applied, _ := g.log.Query(context.Background(), eventlog.Filter{TypePrefix: moltgate.EventConfigApplied}); len(applied) != 1 {
		t.Fatal("a non-owner changed the config")
	}
	msgs, _ := g.service.Transcript(context.Background(), "agent:main:telegram:dm:2002", 0)
	refused := false
	for _, m := range msgs {
		if m.Tool != nil && m.Tool.Name == "gateway_config" && m.Tool.Status == moltgate.ToolRefused {
			refused = true
		}
	}
	if !refused {
		t.Fatalf("the non-owner's call was not recorded as refused: %+v", msgs)
	}
}

// toolNames lists the tools an OpenAI chat-completions request offered.
func toolNames(req map[string]any) string {
	var names []string
	tools, _ := req["tools"].([]any)
	for _, tool := range tools {
		if fn, ok := tool.(map[string]any)["function"].(map[string]any); ok {
			names = append(names, fn["name"].(string))
		}
	}
	return strings.Join(names, ",")
}
