package agent

import (
	"encoding/json"
	"regexp"
	"strings"
)

// Default models when only an API key is given.
const (
	DefaultAnthropicModel = "anthropic/claude-sonnet-4-5"
	DefaultOpenAIModel    = "openai/gpt-4o-mini"
)

// providerConfig is models.providers.<id> of the config.
type providerConfig struct {
	API     string `json:"api"`
	BaseURL string `json:"baseUrl"`
	APIKey  string `json:"apiKey"`
}

type modelConfig struct {
	Models struct {
		Providers map[string]providerConfig `json:"providers"`
	} `json:"models"`
	Agents struct {
		Defaults struct {
			Model struct {
				Primary   string   `json:"primary"`
				Fallbacks []string `json:"fallbacks"`
			} `json:"model"`
		} `json:"defaults"`
	} `json:"agents"`
}

var envRef = regexp.MustCompile(`^\$\{([A-Z][A-Z0-9_]*)\}$`)

// Resolve works out which models to use, in order, from the stored config
// and the environment. Moltworker's variables configure providers without
// touching the config, as a runtime overlay that is never written back:
// ANTHROPIC_API_KEY (+ ANTHROPIC_BASE_URL), OPENAI_API_KEY (+
// OPENAI_BASE_URL), AI_GATEWAY_API_KEY + AI_GATEWAY_BASE_URL (an
// Anthropic-compatible gateway), and CLOUDFLARE_AI_GATEWAY_API_KEY +
// CF_AI_GATEWAY_ACCOUNT_ID + CF_AI_GATEWAY_GATEWAY_ID + CF_AI_GATEWAY_MODEL
// ("provider/model"). Secrets in the config are "${ENV}" references,
// resolved here from getenv.
//
// With nothing configured it returns no choices: the runner falls back to
// the echo model.
func Resolve(doc json.RawMessage, getenv func(string) string) []Choice {
	var cfg modelConfig
	if len(doc) > 0 {
		_ = json.Unmarshal(doc, &cfg) // the config was validated when applied
	}
	providers := map[string]providerConfig{}
	primary := ""
	// The environment first; the config's own providers override it.
	if k := getenv("ANTHROPIC_API_KEY"); k != "" {
		providers["anthropic"] = providerConfig{API: "anthropic-messages", BaseURL: getenv("ANTHROPIC_BASE_URL"), APIKey: k}
		primary = DefaultAnthropicModel
	} else if k := getenv("AI_GATEWAY_API_KEY"); k != "" && getenv("AI_GATEWAY_BASE_URL") != "" {
		providers["anthropic"] = providerConfig{API: "anthropic-messages", BaseURL: getenv("AI_GATEWAY_BASE_URL"), APIKey: k}
		primary = DefaultAnthropicModel
	}
	if k := getenv("OPENAI_API_KEY"); k != "" {
		providers["openai"] = providerConfig{API: "openai-completions", BaseURL: getenv("OPENAI_BASE_URL"), APIKey: k}
		if primary == "" {
			primary = DefaultOpenAIModel
		}
	}
	if k, acct, gw, model := getenv("CLOUDFLARE_AI_GATEWAY_API_KEY"), getenv("CF_AI_GATEWAY_ACCOUNT_ID"), getenv("CF_AI_GATEWAY_GATEWAY_ID"), getenv("CF_AI_GATEWAY_MODEL"); k != "" && acct != "" && gw != "" && strings.Contains(model, "/") {
		upstream, _, _ := strings.Cut(model, "/")
		base := "https://gateway.ai.cloudflare.com/v1/" + acct + "/" + gw
		pc := providerConfig{API: "openai-completions", BaseURL: base + "/compat", APIKey: k}
		if upstream == "anthropic" {
			pc = providerConfig{API: "anthropic-messages", BaseURL: base + "/anthropic", APIKey: k}
		}
		providers["cloudflare-ai-gateway"] = pc
		primary = "cloudflare-ai-gateway/" + model
	}
	for id, pc := range cfg.Models.Providers {
		if m := envRef.FindStringSubmatch(pc.APIKey); m != nil {
			pc.APIKey = getenv(m[1])
		}
		if pc.APIKey == "" {
			if old, ok := providers[id]; ok {
				pc.APIKey = old.APIKey // a config entry for a provider whose key is in the environment
			}
		}
		providers[id] = pc
	}
	names := []string{}
	if p := cfg.Agents.Defaults.Model.Primary; p != "" {
		names = append(names, p)
		names = append(names, cfg.Agents.Defaults.Model.Fallbacks...)
	} else if primary != "" {
		names = append(names, primary)
	}
	var out []Choice
	for _, name := range names {
		if name == EchoModel {
			out = append(out, Choice{Name: EchoModel, Model: "echo", Provider: Echo{}})
			continue
		}
		id, model, ok := strings.Cut(name, "/")
		pc, known := providers[id]
		if !ok || !known || pc.APIKey == "" {
			continue // named but not usable: no provider or no key
		}
		// For the Cloudflare gateway the model keeps its upstream provider.
		if id == "cloudflare-ai-gateway" && pc.API == "openai-completions" {
			model = strings.TrimPrefix(name, id+"/")
		} else if id == "cloudflare-ai-gateway" {
			model = strings.TrimPrefix(strings.TrimPrefix(name, id+"/"), "anthropic/")
		}
		var p Provider
		switch pc.API {
		case "anthropic-messages":
			p = NewAnthropic(pc.APIKey, pc.BaseURL, nil)
		case "openai-completions":
			p = NewOpenAI(pc.APIKey, pc.BaseURL, nil)
		default:
			continue
		}
		out = append(out, Choice{Name: name, Model: model, Provider: p})
	}
	return out
}
