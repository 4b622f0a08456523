// Package channels connects the chat platforms to the assistant: the
// router decides who may talk to it (DM policy, pairing codes, allowlists)
// and which session a message belongs to; the manager runs one adapter per
// configured platform, restarts it when its config changes or it goes
// silent, and reports its state; the outbox delivers replies, pairing
// codes and approvals, retrying until they are sent. It reaches the rest
// of moltgate only through the root package's interfaces; the adapters
// (channels/telegram, discord, slack) are built by a Factory that
// cmd/moltgate provides.
package channels

import (
	"cmp"
	"slices"
	"strings"

	moltgate "github.com/moltgate/moltgate"
)

// Settings is one channel's effective configuration: the config document
// first, then Moltworker's environment variables for what it leaves
// unset (an overlay, never written back), with secrets resolved.
type Settings struct {
	Channel  string `json:"channel"`
	Enabled  bool   `json:"enabled"`
	Token    string `json:"-"` // telegram botToken, discord token, slack botToken
	AppToken string `json:"-"` // slack appToken
	APIURL   string `json:"apiUrl,omitempty"`
	// GatewayURL is Discord's gateway WebSocket (empty: ask the API).
	GatewayURL string `json:"gatewayUrl,omitempty"`
	// WebhookURL and WebhookSecret switch Telegram to webhook mode.
	WebhookURL    string `json:"webhookUrl,omitempty"`
	WebhookSecret string `json:"-"`
	DMPolicy      string `json:"dmPolicy"`
	// AllowFrom are the owner's ids on the platform (config allowFrom or
	// *_DM_ALLOW_FROM); "*" lets anyone in. Senders approved through
	// pairing are in the allowlist read model, not here.
	AllowFrom      []string `json:"allowFrom,omitempty"`
	RequireMention bool     `json:"requireMention"`
	// Problem says why an enabled channel cannot start (a token that
	// cannot be opened, a ${NAME} that is not set).
	Problem string `json:"problem,omitempty"`
}

// connection is what a channel's adapter is built from (see the Factory
// in cmd/moltgate): the manager restarts a channel only when it changes.
// The rest (DM policy, allowlist, mentions) is read per message, so
// editing it does not drop the platform connection.
type connection struct {
	Enabled                                                                 bool
	Token, AppToken, APIURL, GatewayURL, WebhookURL, WebhookSecret, Problem string
}

func (s Settings) connection() connection {
	return connection{Enabled: s.Enabled, Token: s.Token, AppToken: s.AppToken, APIURL: s.APIURL, GatewayURL: s.GatewayURL,
		WebhookURL: s.WebhookURL, WebhookSecret: s.WebhookSecret, Problem: s.Problem}
}

// Owner reports whether senderID is one of the owner's ids.
func (s Settings) Owner(senderID string) bool { return slices.Contains(s.AllowFrom, senderID) }

// Open reports whether AllowFrom lets anyone in ("*").
func (s Settings) Open() bool { return slices.Contains(s.AllowFrom, "*") }

// ResolveSettings computes every channel's settings from the config, the
// environment and the secret resolver.
func ResolveSettings(cfg moltgate.Config, getenv func(string) string, secrets moltgate.SecretResolver) map[string]Settings {
	env := func(name string) string { return strings.TrimSpace(getenv(name)) }
	list := func(ids moltgate.IDList, envName string) []string {
		if len(ids) > 0 {
			return ids
		}
		var out []string
		for _, id := range strings.Split(env(envName), ",") {
			if id = strings.TrimSpace(id); id != "" {
				out = append(out, id)
			}
		}
		return out
	}
	out := map[string]Settings{}

	tg := cfg.Channels.Telegram
	t := Settings{Channel: "telegram", APIURL: cmp.Or(tg.APIRoot, env("TELEGRAM_API_URL")), WebhookURL: tg.WebhookURL,
		DMPolicy: cmp.Or(tg.DMPolicy, env("TELEGRAM_DM_POLICY")), AllowFrom: list(tg.AllowFrom, "TELEGRAM_DM_ALLOW_FROM"),
		RequireMention: moltgate.IsEnabled(tg.RequireMention, true)}
	t.Token = resolve(&t, secrets, "channels.telegram.botToken", tg.BotToken, env("TELEGRAM_BOT_TOKEN"))
	t.WebhookSecret = resolve(&t, secrets, "channels.telegram.webhookSecret", tg.WebhookSecret, env("TELEGRAM_WEBHOOK_SECRET"))
	t.Enabled = moltgate.IsEnabled(tg.Enabled, true) && (t.Token != "" || t.Problem != "")
	out["telegram"] = t

	dc := cfg.Channels.Discord
	d := Settings{Channel: "discord", APIURL: env("DISCORD_API_URL"), GatewayURL: env("DISCORD_GATEWAY_URL"),
		DMPolicy: cmp.Or(dc.DM.Policy, env("DISCORD_DM_POLICY")), AllowFrom: list(dc.DM.AllowFrom, "DISCORD_DM_ALLOW_FROM"),
		RequireMention: moltgate.IsEnabled(dc.RequireMention, true)}
	d.Token = resolve(&d, secrets, "channels.discord.token", dc.Token, env("DISCORD_BOT_TOKEN"))
	d.Enabled = moltgate.IsEnabled(dc.Enabled, true) && (d.Token != "" || d.Problem != "")
	out["discord"] = d

	sc := cfg.Channels.Slack
	s := Settings{Channel: "slack", APIURL: env("SLACK_API_URL"),
		DMPolicy: cmp.Or(sc.DM.Policy, env("SLACK_DM_POLICY")), AllowFrom: list(sc.DM.AllowFrom, "SLACK_DM_ALLOW_FROM"),
		RequireMention: moltgate.IsEnabled(sc.RequireMention, true)}
	s.Token = resolve(&s, secrets, "channels.slack.botToken", sc.BotToken, env("SLACK_BOT_TOKEN"))
	s.AppToken = resolve(&s, secrets, "channels.slack.appToken", sc.AppToken, env("SLACK_APP_TOKEN"))
	s.Enabled = moltgate.IsEnabled(sc.Enabled, true) && (s.Token != "" || s.AppToken != "" || s.Problem != "")
	out["slack"] = s

	for name, st := range out {
		if st.DMPolicy == "" {
			st.DMPolicy = moltgate.DMPairing
		}
		if err := moltgate.ValidDMPolicy(st.DMPolicy); err != nil && st.Problem == "" {
			st.Problem = "dmPolicy " + err.Error()
		}
		// A sorted copy: AllowFrom may be the config's own slice, which
		// every caller (many goroutines) shares.
		st.AllowFrom = slices.Sorted(slices.Values(st.AllowFrom))
		out[name] = st
	}
	return out
}

// resolve opens a secret from the config (sealed or ${NAME}), or takes
// the environment's value when the config has none; a failure becomes the
// channel's Problem.
func resolve(s *Settings, secrets moltgate.SecretResolver, path, configured, fromEnv string) string {
	if configured == "" {
		return fromEnv
	}
	v, err := secrets.Resolve(path, configured)
	if err != nil {
		s.Problem = path + ": " + err.Error()
		return ""
	}
	return v
}

// SessionKey is the session an inbound message belongs to, in OpenClaw's
// scheme: the owner's DMs share the main session (agent:main:main) unless
// session.dmScope isolates them; groups and threads have their own.
//
// Unlike OpenClaw's dmScope "main", a sender who is not the owner (a
// stranger approved through pairing) never shares the owner's main
// session: they get a per-channel-peer session, so one person's
// conversation never leaks into another's.
func SessionKey(scope string, msg moltgate.InboundMessage, owner bool) string {
	ch := msg.Channel
	if !msg.Direct {
		key := "agent:main:" + ch + ":group:" + msg.ChatID
		if msg.ThreadID != "" {
			key += ":thread:" + msg.ThreadID
		}
		return key
	}
	switch {
	case (scope == "" || scope == moltgate.DMScopeMain) && owner:
		return moltgate.MainSessionKey
	case scope == moltgate.DMScopePerPeer:
		return "agent:main:dm:" + msg.SenderID
	case scope == moltgate.DMScopePerAccountChannelPeer:
		return "agent:main:" + ch + ":" + msg.AccountID + ":dm:" + msg.SenderID
	}
	return "agent:main:" + ch + ":dm:" + msg.SenderID
}
