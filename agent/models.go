package agent

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	moltgate "github.com/moltgate/moltgate"
)

// Default models when only an API key is given.
const (
	DefaultAnthropicModel = "anthropic/claude-sonnet-4-5"
	DefaultOpenAIModel    = "openai/gpt-4o-mini"
)

// Resolution is what Resolve found: the models to try, primary first, and
// why models the config names cannot be used (a key that is not set, a
// secret that cannot be opened), so a chat can say so instead of
// answering with the echo model.
type Resolution struct {
	Choices  []Choice
	Problems []string
}

// Info describes the resolution for clients.
func (r Resolution) Info() moltgate.ModelInfo {
	info := moltgate.ModelInfo{Active: EchoModel, Fallbacks: []string{}, Notice: NoModelNotice}
	if len(r.Choices) > 0 {
		info = moltgate.ModelInfo{Active: r.Choices[0].Name, Fallbacks: []string{}, Configured: true}
		for _, c := range r.Choices[1:] {
			info.Fallbacks = append(info.Fallbacks, c.Name)
		}
	}
	if len(r.Problems) > 0 {
		info.Notice = strings.Join(r.Problems, "; ")
	}
	return info
}

// provider is a provider's settings with its secrets resolved.
type provider struct {
	api, baseURL, apiKey string
	headers              map[string]string
	models               []moltgate.ModelEntry
	problem              string // why it cannot be used
}

// Resolve works out which models to use, in order, from the config and
// the environment. Moltworker's variables configure providers without
// touching the config, as a runtime overlay that is never written back:
// ANTHROPIC_API_KEY (+ ANTHROPIC_BASE_URL), OPENAI_API_KEY (+
// OPENAI_BASE_URL), AI_GATEWAY_API_KEY + AI_GATEWAY_BASE_URL (an
// Anthropic-compatible gateway), and CLOUDFLARE_AI_GATEWAY_API_KEY +
// CF_AI_GATEWAY_ACCOUNT_ID + CF_AI_GATEWAY_GATEWAY_ID + CF_AI_GATEWAY_MODEL
// ("provider/model"). The config's secrets are sealed values or "${NAME}"
// references, opened by secrets.
//
// With nothing configured it returns no choices and no problems: the
// runner falls back to the echo model.
func Resolve(cfg moltgate.Config, getenv func(string) string, secrets moltgate.SecretResolver) Resolution {
	return resolve(cfg, getenv, secrets, nil)
}

// resolve is Resolve with the HTTP client the providers use (nil = the
// SDKs' own), so tests can stand a fake server in for a real host.
func resolve(cfg moltgate.Config, getenv func(string) string, secrets moltgate.SecretResolver, httpClient *http.Client) Resolution {
	providers := map[string]provider{}
	primary := ""
	// The environment first; the config's own providers override it.
	if k := getenv("ANTHROPIC_API_KEY"); k != "" {
		providers["anthropic"] = provider{api: moltgate.APIAnthropicMessages, baseURL: getenv("ANTHROPIC_BASE_URL"), apiKey: k}
		primary = DefaultAnthropicModel
	} else if k := getenv("AI_GATEWAY_API_KEY"); k != "" && getenv("AI_GATEWAY_BASE_URL") != "" {
		providers["anthropic"] = provider{api: moltgate.APIAnthropicMessages, baseURL: getenv("AI_GATEWAY_BASE_URL"), apiKey: k}
		primary = DefaultAnthropicModel
	}
	if k := getenv("OPENAI_API_KEY"); k != "" {
		providers["openai"] = provider{api: moltgate.APIOpenAICompletions, baseURL: getenv("OPENAI_BASE_URL"), apiKey: k}
		if primary == "" {
			primary = DefaultOpenAIModel
		}
	}
	if k, acct, gw, model := getenv("CLOUDFLARE_AI_GATEWAY_API_KEY"), getenv("CF_AI_GATEWAY_ACCOUNT_ID"), getenv("CF_AI_GATEWAY_GATEWAY_ID"), getenv("CF_AI_GATEWAY_MODEL"); k != "" && acct != "" && gw != "" && strings.Contains(model, "/") {
		upstream, _, _ := strings.Cut(model, "/")
		// The upstream in the URL decides the wire API (aiGatewayAPI).
		base := "https://" + moltgate.AIGatewayHost + "/v1/" + acct + "/" + gw
		pc := provider{baseURL: base + "/compat", apiKey: k}
		if upstream == "anthropic" {
			pc.baseURL = base + "/anthropic"
		}
		providers["cloudflare-ai-gateway"] = pc
		primary = "cloudflare-ai-gateway/" + model
	}
	for id, pc := range cfg.Models.Providers {
		providers[id] = configProvider(id, pc, providers[id], secrets)
	}

	var res Resolution
	names := []string{}
	if p := cfg.Agents.Defaults.Model.Primary; p != "" {
		names = append(names, p)
		names = append(names, cfg.Agents.Defaults.Model.Fallbacks...)
	} else if primary != "" {
		names = append(names, primary)
	}
	for _, name := range names {
		if name == EchoModel {
			res.Choices = append(res.Choices, Choice{Name: EchoModel, Model: "echo", Provider: Echo{}})
			continue
		}
		id, model, ok := strings.Cut(name, "/")
		pc, known := providers[id]
		switch {
		case !ok || !known:
			res.Problems = append(res.Problems, fmt.Sprintf("%s: provider %q is not configured", name, id))
			continue
		case pc.problem != "":
			res.Problems = append(res.Problems, name+": "+pc.problem)
			continue
		case pc.apiKey == "":
			res.Problems = append(res.Problems, fmt.Sprintf("%s: provider %q has no apiKey", name, id))
			continue
		}
		api, baseURL := pc.api, pc.baseURL
		if gwAPI, gwBase, ok := aiGatewayAPI(baseURL); ok {
			api, baseURL = gwAPI, gwBase
		}
		// The Cloudflare gateway's models keep their upstream ("openai/gpt-4o")
		// for its compat endpoint; its Anthropic endpoint takes the bare name.
		if id == "cloudflare-ai-gateway" && api == moltgate.APIAnthropicMessages {
			model = strings.TrimPrefix(model, "anthropic/")
		}
		var p Provider
		switch api {
		case moltgate.APIAnthropicMessages:
			p = NewAnthropic(pc.apiKey, baseURL, pc.headers, httpClient)
		case moltgate.APIOpenAICompletions:
			p = NewOpenAI(pc.apiKey, baseURL, pc.headers, httpClient)
		case "":
			res.Problems = append(res.Problems, fmt.Sprintf("%s: provider %q needs an api (%q or %q)", name, id, moltgate.APIAnthropicMessages, moltgate.APIOpenAICompletions))
			continue
		default:
			res.Problems = append(res.Problems, fmt.Sprintf("%s: api %q is not supported", name, api))
			continue
		}
		res.Choices = append(res.Choices, Choice{Name: name, Model: model, Provider: p, Entry: entry(pc.models, model), API: api})
	}
	return res
}

// configProvider resolves models.providers.<id>: its key, base URL and
// headers may be sealed or reference the environment. A provider whose
// config entry has no key keeps the one the environment gave (env).
func configProvider(id string, pc moltgate.ProviderConfig, env provider, secrets moltgate.SecretResolver) provider {
	path := "models.providers." + id
	out := provider{api: pc.API, models: pc.Models, headers: map[string]string{}}
	var err error
	resolve := func(field, value string) string {
		if err != nil || value == "" {
			return value
		}
		var v string
		v, err = secrets.Resolve(path+"."+field, value)
		return v
	}
	out.apiKey = resolve("apiKey", pc.APIKey)
	out.baseURL = resolve("baseUrl", pc.BaseURL)
	for name, v := range pc.Headers {
		out.headers[name] = resolve("headers."+name, v)
	}
	if err != nil {
		var missing *moltgate.MissingEnvError
		if errors.As(err, &missing) {
			out.problem = "its key is missing: " + missing.Error()
		} else {
			out.problem = "its secrets cannot be used: " + moltgate.ErrorMessage(err)
			if moltgate.ErrorCode(err) == moltgate.EINTERNAL {
				out.problem = "its secrets cannot be opened: " + err.Error()
			}
		}
		return out
	}
	if out.apiKey == "" {
		out.apiKey = env.apiKey
	}
	if out.baseURL == "" && out.api == env.api {
		out.baseURL = env.baseURL
	}
	return out
}

// entry finds a model's entry (context window, max tokens, inputs).
func entry(models []moltgate.ModelEntry, id string) moltgate.ModelEntry {
	for _, m := range models {
		if m.ID == id {
			return m
		}
	}
	return moltgate.ModelEntry{ID: id}
}

// aiGatewayAPI applies the rule for Cloudflare AI Gateway base URLs, whose
// path names the upstream: https://gateway.ai.cloudflare.com/v1/{account}/
// {gateway}/{upstream}[/…]. The upstream decides the wire API, whatever the
// provider's api says (or when it says nothing):
//
//   - "anthropic" speaks Anthropic's Messages API (…/anthropic/v1/messages);
//   - every other upstream (openai, deepseek, openrouter, compat, groq,
//     mistral, workers-ai, …) speaks the OpenAI-compatible chat
//     completions API (…/{upstream}/chat/completions).
//
// Moltworker's guides configure DeepSeek through the gateway with the
// Anthropic API, which posts to …/deepseek/v1/messages and gets a 404.
// Workers AI and Mistral serve chat completions under /v1, so a base URL
// that stops at their name gets it added. ok is false for other URLs.
func aiGatewayAPI(baseURL string) (api, base string, ok bool) {
	u, err := url.Parse(baseURL)
	if err != nil || !moltgate.IsAIGatewayURL(baseURL) {
		return "", "", false
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 4 || parts[0] != "v1" {
		return "", "", false
	}
	base = strings.TrimRight(baseURL, "/")
	switch upstream := parts[3]; {
	case upstream == "anthropic":
		return moltgate.APIAnthropicMessages, base, true
	case (upstream == "workers-ai" || upstream == "mistral") && len(parts) == 4:
		return moltgate.APIOpenAICompletions, base + "/v1", true
	default:
		return moltgate.APIOpenAICompletions, base, true
	}
}
