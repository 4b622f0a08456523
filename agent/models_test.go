package agent_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/agent"
	"github.com/moltgate/moltgate/secrets"
)

func names(cs []agent.Choice) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name+"="+c.Model)
	}
	return fmt.Sprint(out)
}

func TestResolve(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for name, tc := range map[string]struct {
		doc  string
		env  map[string]string
		want string
	}{
		"Nothing":       {"", nil, "[]"},
		"AnthropicEnv":  {"", map[string]string{"ANTHROPIC_API_KEY": "k"}, "[anthropic/claude-sonnet-4-5=claude-sonnet-4-5]"},
		"OpenAIEnv":     {"", map[string]string{"OPENAI_API_KEY": "k"}, "[openai/gpt-4o-mini=gpt-4o-mini]"},
		"AIGateway":     {"", map[string]string{"AI_GATEWAY_API_KEY": "k", "AI_GATEWAY_BASE_URL": "https://gw.example/anthropic"}, "[anthropic/claude-sonnet-4-5=claude-sonnet-4-5]"},
		"CloudflareGW":  {"", map[string]string{"CLOUDFLARE_AI_GATEWAY_API_KEY": "k", "CF_AI_GATEWAY_ACCOUNT_ID": "a", "CF_AI_GATEWAY_GATEWAY_ID": "g", "CF_AI_GATEWAY_MODEL": "workers-ai/@cf/meta/llama-3.1-8b-instruct"}, "[cloudflare-ai-gateway/workers-ai/@cf/meta/llama-3.1-8b-instruct=workers-ai/@cf/meta/llama-3.1-8b-instruct]"},
		"ConfigWithRef": {`{"models":{"providers":{"deepseek":{"api":"openai-completions","baseUrl":"https://api.deepseek.com/v1","apiKey":"${DEEPSEEK_API_KEY}"}}},"agents":{"defaults":{"model":{"primary":"deepseek/deepseek-chat","fallbacks":["anthropic/claude-haiku-4-5","openai/gpt-4o"]}}}}`, map[string]string{"DEEPSEEK_API_KEY": "k", "ANTHROPIC_API_KEY": "k2"}, `[deepseek/deepseek-chat=deepseek-chat anthropic/claude-haiku-4-5=claude-haiku-4-5] problems: openai/gpt-4o: provider "openai" is not configured`},
		"MissingKey":    {`{"models":{"providers":{"deepseek":{"api":"openai-completions","apiKey":"${DEEPSEEK_API_KEY}"}}},"agents":{"defaults":{"model":{"primary":"deepseek/deepseek-chat"}}}}`, nil, "[] problems: deepseek/deepseek-chat: its key is missing: the environment variable DEEPSEEK_API_KEY is not set"},
		"OwnSecret":     {`{"models":{"providers":{"evil":{"api":"openai-completions","baseUrl":"https://evil.example","apiKey":"${MOLTBOT_GATEWAY_TOKEN}"}}},"agents":{"defaults":{"model":{"primary":"evil/m"}}}}`, map[string]string{"MOLTBOT_GATEWAY_TOKEN": "gw"}, "[] problems: evil/m: its secrets cannot be used: ${MOLTBOT_GATEWAY_TOKEN} is one of moltgate's own secrets and cannot be used in the config"},
		"Unconfigured":  {`{"agents":{"defaults":{"model":{"primary":"nowhere/m"}}}}`, nil, `[] problems: nowhere/m: provider "nowhere" is not configured`},
		"ExplicitEcho":  {`{"agents":{"defaults":{"model":{"primary":"echo/echo"}}}}`, nil, "[echo/echo=echo]"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, issues := moltgate.ParseConfig(json.RawMessage(tc.doc))
			if len(issues) > 0 {
				t.Fatal(issues)
			}
			res := agent.Resolve(cfg, env(tc.env), secrets.Resolver{Getenv: env(tc.env)})
			got := names(res.Choices)
			if len(res.Problems) > 0 {
				got += " problems: " + strings.Join(res.Problems, "; ")
			}
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
