package moltgate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// MaxConfigBytes bounds a config document.
const MaxConfigBytes = 1 << 20

// Config is the typed view of the configuration document, in OpenClaw's
// shape. The document itself is stored whole (keys moltgate does not know
// pass through untouched, so an OpenClaw config round-trips); Config is
// what moltgate reads from it. Secret fields hold either a sealed value
// (see SealedPrefix) or a "${NAME}" reference to the environment, never
// plaintext: resolve them with a SecretResolver.
type Config struct {
	Models   ModelsConfig   `json:"models"`
	Agents   AgentsConfig   `json:"agents"`
	Channels ChannelsConfig `json:"channels"`
	Gateway  GatewayConfig  `json:"gateway"`
	Session  SessionConfig  `json:"session"`
	Tools    ToolsConfig    `json:"tools"`
	Browser  BrowserConfig  `json:"browser"`
	Skills   SkillsConfig   `json:"skills"`
}

// ModelsConfig is models.*.
type ModelsConfig struct {
	Providers map[string]ProviderConfig `json:"providers"`
}

// Model APIs a provider may speak.
const (
	APIAnthropicMessages = "anthropic-messages"
	APIOpenAICompletions = "openai-completions"
)

// ProviderConfig is models.providers.<id>.
type ProviderConfig struct {
	API     string            `json:"api"`
	BaseURL string            `json:"baseUrl"`
	APIKey  string            `json:"apiKey"`
	Headers map[string]string `json:"headers"`
	Models  []ModelEntry      `json:"models"`
}

// ModelEntry is one model of a provider. OpenClaw writes either an object
// or, in short configs, the bare id.
type ModelEntry struct {
	ID            string   `json:"id"`
	Name          string   `json:"name,omitempty"`
	ContextWindow int      `json:"contextWindow,omitempty"` // tokens the model reads
	MaxTokens     int      `json:"maxTokens,omitempty"`     // tokens it may write
	Input         []string `json:"input,omitempty"`         // "text", "image"
}

// UnmarshalJSON accepts "model-id" as well as {"id": …}.
func (m *ModelEntry) UnmarshalJSON(b []byte) error {
	var id string
	if json.Unmarshal(b, &id) == nil {
		*m = ModelEntry{ID: id}
		return nil
	}
	type plain ModelEntry
	return json.Unmarshal(b, (*plain)(m))
}

// AcceptsImages reports whether the model reads images.
func (m ModelEntry) AcceptsImages() bool {
	for _, in := range m.Input {
		if in == "image" {
			return true
		}
	}
	return false
}

// AgentsConfig is agents.*.
type AgentsConfig struct {
	Defaults AgentDefaults `json:"defaults"`
}

// AgentDefaults is agents.defaults.
type AgentDefaults struct {
	Model ModelSelection `json:"model"`
	// Workspace is where AGENTS.md, SOUL.md, USER.md and skills/ live.
	Workspace string `json:"workspace"`
	// BootstrapMaxChars caps the workspace files fed to the system prompt.
	BootstrapMaxChars int `json:"bootstrapMaxChars"`
}

// ModelSelection is agents.defaults.model: "provider/model" names.
type ModelSelection struct {
	Primary   string   `json:"primary"`
	Fallbacks []string `json:"fallbacks"`
}

// UnmarshalJSON accepts OpenClaw's short form, a bare "provider/model".
func (m *ModelSelection) UnmarshalJSON(b []byte) error {
	var primary string
	if json.Unmarshal(b, &primary) == nil {
		*m = ModelSelection{Primary: primary}
		return nil
	}
	type plain ModelSelection
	return json.Unmarshal(b, (*plain)(m))
}

// ChannelsConfig is channels.*.
type ChannelsConfig struct {
	Telegram TelegramConfig `json:"telegram"`
	Discord  DiscordConfig  `json:"discord"`
	Slack    SlackConfig    `json:"slack"`
}

// DM policies for chat platforms.
const (
	DMPairing   = "pairing"   // strangers get a code the owner approves (default)
	DMAllowlist = "allowlist" // only listed senders; no codes
	DMOpen      = "open"      // anyone
	DMDisabled  = "disabled"  // DMs are ignored
)

// TelegramConfig is channels.telegram.
type TelegramConfig struct {
	Enabled       *bool  `json:"enabled"`
	BotToken      string `json:"botToken"`
	DMPolicy      string `json:"dmPolicy"`
	AllowFrom     IDList `json:"allowFrom"`
	APIRoot       string `json:"apiRoot"`
	WebhookURL    string `json:"webhookUrl"`
	WebhookSecret string `json:"webhookSecret"`
	// RequireMention: in groups, answer only when mentioned (default true).
	RequireMention *bool `json:"requireMention"`
}

// DMConfig is the dm block of Discord and Slack.
type DMConfig struct {
	Policy    string `json:"policy"`
	AllowFrom IDList `json:"allowFrom"`
}

// DiscordConfig is channels.discord.
type DiscordConfig struct {
	Enabled        *bool    `json:"enabled"`
	Token          string   `json:"token"`
	DM             DMConfig `json:"dm"`
	RequireMention *bool    `json:"requireMention"`
}

// SlackConfig is channels.slack.
type SlackConfig struct {
	Enabled        *bool    `json:"enabled"`
	BotToken       string   `json:"botToken"`
	AppToken       string   `json:"appToken"`
	DM             DMConfig `json:"dm"`
	RequireMention *bool    `json:"requireMention"`
}

// IDList is a list of platform ids; OpenClaw configs write Telegram ids as
// numbers, so numbers are accepted and kept as their decimal text.
type IDList []string

// UnmarshalJSON accepts strings and numbers.
func (l *IDList) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(IDList, 0, len(raw))
	for _, r := range raw {
		var s string
		if json.Unmarshal(r, &s) == nil {
			out = append(out, strings.TrimSpace(s))
			continue
		}
		var n json.Number
		if err := json.Unmarshal(r, &n); err != nil {
			return fmt.Errorf("ids must be strings or numbers, not %s", r)
		}
		out = append(out, n.String())
	}
	*l = out
	return nil
}

// GatewayConfig is gateway.*.
type GatewayConfig struct {
	// TrustedProxies are the addresses (IPs or CIDRs) whose
	// CF-Connecting-IP / X-Forwarded-For headers are believed.
	TrustedProxies []string `json:"trustedProxies"`
}

// SessionConfig is session.*.
type SessionConfig struct {
	// DMScope is how chat-platform DMs map onto sessions: "main" (every
	// DM shares the owner's main session), "per-peer",
	// "per-channel-peer" or "per-account-channel-peer".
	DMScope string `json:"dmScope"`
}

// Session scopes for SessionConfig.DMScope.
const (
	DMScopeMain                  = "main"
	DMScopePerPeer               = "per-peer"
	DMScopePerChannelPeer        = "per-channel-peer"
	DMScopePerAccountChannelPeer = "per-account-channel-peer"
)

// ToolsConfig is tools.*.
type ToolsConfig struct {
	Web struct {
		Fetch WebFetchConfig `json:"fetch"`
	} `json:"web"`
}

// WebFetchConfig is tools.web.fetch.
type WebFetchConfig struct {
	Enabled        *bool `json:"enabled"`
	MaxChars       int   `json:"maxChars"`
	TimeoutSeconds int   `json:"timeoutSeconds"`
	// AllowPrivateNetwork lets the tool fetch loopback and private
	// addresses, which it refuses by default (the gateway itself is one).
	AllowPrivateNetwork bool `json:"allowPrivateNetwork"`
}

// BrowserConfig is browser.*.
type BrowserConfig struct {
	Enabled *bool `json:"enabled"`
}

// SkillsConfig is skills.*.
type SkillsConfig struct {
	Entries map[string]SkillEntry `json:"entries"`
}

// SkillEntry is skills.entries.<name>.
type SkillEntry struct {
	Enabled *bool             `json:"enabled"`
	APIKey  string            `json:"apiKey"`
	Env     map[string]string `json:"env"`
}

// IsEnabled reads an optional switch with its default.
func IsEnabled(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// BuiltinProviders need no models.providers entry: they are configured
// from the environment (ANTHROPIC_API_KEY, OPENAI_API_KEY, …) or built in.
var BuiltinProviders = []string{"anthropic", "openai", "echo", "cloudflare-ai-gateway"}

// ParseConfig reads a document into a Config and checks it. Every problem
// is reported with the path it concerns, not just the first. An empty
// document is an empty config.
func ParseConfig(doc json.RawMessage) (Config, []ConfigIssue) {
	var c Config
	if len(bytes.TrimSpace(doc)) == 0 {
		return c, nil
	}
	if len(doc) > MaxConfigBytes {
		return c, []ConfigIssue{{Path: "$", Message: fmt.Sprintf("config is %d bytes, more than the %d allowed", len(doc), MaxConfigBytes)}}
	}
	var root any
	if err := json.Unmarshal(doc, &root); err != nil {
		return c, []ConfigIssue{{Path: "$", Message: "not valid JSON: " + err.Error()}}
	}
	if _, ok := root.(map[string]any); !ok {
		return c, []ConfigIssue{{Path: "$", Message: "config must be a JSON object"}}
	}
	if err := json.Unmarshal(doc, &c); err != nil {
		return c, []ConfigIssue{typeIssue(err)}
	}
	return c, c.Validate()
}

// typeIssue turns a decoding error into an issue at the field it concerns.
func typeIssue(err error) ConfigIssue {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return ConfigIssue{Path: te.Field, Message: fmt.Sprintf("must be %s, not %s", jsonKind(te.Type.Kind().String()), te.Value)}
	}
	return ConfigIssue{Path: "$", Message: err.Error()}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice":
		return "a list"
	case "bool", "ptr":
		return "true or false"
	}
	return "a number"
}

// Validate checks the parts of the config moltgate uses.
func (c Config) Validate() []ConfigIssue {
	var issues []ConfigIssue
	add := func(path, format string, args ...any) {
		issues = append(issues, ConfigIssue{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	for _, id := range sortedKeys(c.Models.Providers) {
		p := c.Models.Providers[id]
		path := "models.providers." + id
		switch p.API {
		case APIAnthropicMessages, APIOpenAICompletions:
		case "":
			// Behind Cloudflare AI Gateway the URL names the API (the agent
			// picks it); elsewhere it must be said.
			if !IsAIGatewayURL(p.BaseURL) {
				add(path+".api", `is required: %q or %q`, APIAnthropicMessages, APIOpenAICompletions)
			}
		default:
			add(path+".api", `%q is not supported: use %q or %q`, p.API, APIAnthropicMessages, APIOpenAICompletions)
		}
		if msg := httpURLIssue(p.BaseURL); msg != "" {
			add(path+".baseUrl", "%s", msg)
		}
		for i, m := range p.Models {
			mp := fmt.Sprintf("%s.models[%d]", path, i)
			if m.ID == "" {
				add(mp, "needs an id")
			}
			if m.ContextWindow < 0 || m.MaxTokens < 0 {
				add(mp, "contextWindow and maxTokens cannot be negative")
			}
			if m.ContextWindow > 0 && m.MaxTokens >= m.ContextWindow {
				add(mp+".maxTokens", "%d does not fit in the context window of %d", m.MaxTokens, m.ContextWindow)
			}
		}
	}
	checkModel := func(path, ref string) {
		provider, name, found := strings.Cut(ref, "/")
		switch {
		case !found || provider == "" || name == "":
			add(path, `%q is not of the form "provider/model"`, ref)
		case len(c.Models.Providers) > 0 && !c.hasProvider(provider):
			add(path, "provider %q is not configured in models.providers", provider)
		}
	}
	if p := c.Agents.Defaults.Model.Primary; p != "" {
		checkModel("agents.defaults.model.primary", p)
	}
	for i, f := range c.Agents.Defaults.Model.Fallbacks {
		checkModel(fmt.Sprintf("agents.defaults.model.fallbacks[%d]", i), f)
	}
	for name, policy := range map[string]string{
		"channels.telegram.dmPolicy": c.Channels.Telegram.DMPolicy,
		"channels.discord.dm.policy": c.Channels.Discord.DM.Policy,
		"channels.slack.dm.policy":   c.Channels.Slack.DM.Policy,
	} {
		if err := ValidDMPolicy(policy); err != nil {
			add(name, "%v", err)
		}
	}
	if msg := httpURLIssue(c.Channels.Telegram.APIRoot); msg != "" {
		add("channels.telegram.apiRoot", "%s", msg)
	}
	switch c.Session.DMScope {
	case "", DMScopeMain, DMScopePerPeer, DMScopePerChannelPeer, DMScopePerAccountChannelPeer:
	default:
		add("session.dmScope", "%q is not one of main, per-peer, per-channel-peer, per-account-channel-peer", c.Session.DMScope)
	}
	for i, p := range c.Gateway.TrustedProxies {
		if _, err := ParseProxy(p); err != nil {
			add(fmt.Sprintf("gateway.trustedProxies[%d]", i), "%v", err)
		}
	}
	SortIssues(issues)
	return issues
}

// httpURLIssue says what is wrong with a value that should be an http(s)
// URL, or "" when nothing is. What cannot be checked here passes: an
// empty value, a sealed one (a URL with a password is sealed whole), the
// marker a client sends back in its place, and ${NAME} references. The
// message never repeats the value as written, since a URL may carry a
// password: it shows the URL with the password hidden, or nothing of a
// value that does not parse.
func httpURLIssue(value string) string {
	if value == "" || value == RedactedMarker || IsSealed(value) || len(EnvRefs(value)) > 0 {
		return ""
	}
	u, err := url.Parse(value)
	switch {
	case err != nil:
		return "the value is not an http(s) URL"
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return strconv.Quote(RedactCredentials(u.Redacted())) + " is not an http(s) URL"
	}
	return ""
}

// AIGatewayHost is Cloudflare AI Gateway's host: behind it the URL names
// the upstream, and with it the wire API (the agent's rule).
const AIGatewayHost = "gateway.ai.cloudflare.com"

// IsAIGatewayURL reports whether a provider's base URL is on Cloudflare
// AI Gateway.
func IsAIGatewayURL(baseURL string) bool {
	u, err := url.Parse(baseURL)
	return err == nil && strings.EqualFold(u.Hostname(), AIGatewayHost)
}

// ValidDMPolicy checks a DM policy ("" is the default, pairing).
func ValidDMPolicy(p string) error {
	switch p {
	case "", DMPairing, DMAllowlist, DMOpen, DMDisabled:
		return nil
	}
	return fmt.Errorf("%q is not a DM policy: use pairing, allowlist, open or disabled", p)
}

func (c Config) hasProvider(id string) bool {
	if _, ok := c.Models.Providers[id]; ok {
		return true
	}
	for _, b := range BuiltinProviders {
		if b == id {
			return true
		}
	}
	return false
}

// ParseProxy reads a trusted proxy: an IP address or a CIDR.
func ParseProxy(s string) (*net.IPNet, error) {
	s = strings.TrimSpace(s)
	if _, n, err := net.ParseCIDR(s); err == nil {
		return n, nil
	}
	ip := net.ParseIP(s)
	if ip == nil {
		return nil, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	bits := 128
	if ip.To4() != nil {
		ip, bits = ip.To4(), 32
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
