package channels

import (
	"slices"
	"strings"
	"sync"
	"testing"

	moltgate "github.com/moltgate/moltgate"
)

// envResolver resolves secrets as the real resolver does for ${NAME}
// references, from a fixed environment.
type envResolver map[string]string

func (r envResolver) getenv(name string) string { return r[name] }

func (r envResolver) Resolve(_, value string) (string, error) {
	return moltgate.ExpandEnv(value, r.getenv)
}

func (envResolver) OpenText(_, text string) string { return text }

// Many requests resolve the settings of one config at once: none may
// write to the config's slices (the race detector watches), and the
// config keeps its order.
func TestResolveSettings_ConcurrentCallsLeaveTheConfigAlone(t *testing.T) {
	var cfg moltgate.Config
	cfg.Channels.Telegram.BotToken = "1:x"
	cfg.Channels.Telegram.AllowFrom = moltgate.IDList{"9", "3", "7", "1", "5"}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			s := ResolveSettings(cfg, envResolver{}.getenv, envResolver{})
			if got := s["telegram"].AllowFrom; !slices.Equal(got, []string{"1", "3", "5", "7", "9"}) {
				t.Errorf("AllowFrom = %v, want it sorted", got)
			}
		})
	}
	wg.Wait()
	if got := cfg.Channels.Telegram.AllowFrom; !slices.Equal(got, []string{"9", "3", "7", "1", "5"}) {
		t.Fatalf("the config's allowFrom was reordered: %v", got)
	}
}

func TestResolveSettings(t *testing.T) {
	off := false
	env := envResolver{
		"TELEGRAM_BOT_TOKEN": "1:env", "TELEGRAM_DM_POLICY": moltgate.DMOpen, "TELEGRAM_DM_ALLOW_FROM": " 5, 4 ,,",
		"DISCORD_BOT_TOKEN": "discord-env", "SLACK_BOT_TOKEN": "xoxb-env", "SLACK_APP_TOKEN": "xapp-env",
	}
	for _, tc := range []struct {
		name  string
		cfg   func(c *moltgate.ChannelsConfig)
		check func(t *testing.T, s map[string]Settings)
	}{
		{"the environment fills what the config leaves unset", func(*moltgate.ChannelsConfig) {}, func(t *testing.T, s map[string]Settings) {
			tg := s["telegram"]
			if !tg.Enabled || tg.Token != "1:env" || tg.DMPolicy != moltgate.DMOpen || !slices.Equal(tg.AllowFrom, []string{"4", "5"}) || tg.Problem != "" {
				t.Errorf("telegram = %+v", tg)
			}
			if d := s["discord"]; !d.Enabled || d.Token != "discord-env" || d.DMPolicy != moltgate.DMPairing || !d.RequireMention {
				t.Errorf("discord = %+v", d)
			}
		}},
		{"the config overrides the environment", func(c *moltgate.ChannelsConfig) {
			c.Telegram.BotToken, c.Telegram.DMPolicy, c.Telegram.AllowFrom = "2:config", moltgate.DMAllowlist, moltgate.IDList{"7"}
			c.Slack.DM.Policy = moltgate.DMDisabled
		}, func(t *testing.T, s map[string]Settings) {
			if tg := s["telegram"]; tg.Token != "2:config" || tg.DMPolicy != moltgate.DMAllowlist || !slices.Equal(tg.AllowFrom, []string{"7"}) {
				t.Errorf("telegram = %+v", tg)
			}
			if sl := s["slack"]; sl.DMPolicy != moltgate.DMDisabled || sl.Token != "xoxb-env" {
				t.Errorf("slack = %+v", sl)
			}
		}},
		{"enabled: false turns a channel off despite its token", func(c *moltgate.ChannelsConfig) { c.Discord.Enabled = &off }, func(t *testing.T, s map[string]Settings) {
			if s["discord"].Enabled || !s["telegram"].Enabled {
				t.Errorf("discord enabled %v, telegram enabled %v", s["discord"].Enabled, s["telegram"].Enabled)
			}
		}},
		{"an invalid dmPolicy is the channel's problem", func(c *moltgate.ChannelsConfig) { c.Discord.DM.Policy = "everyone" }, func(t *testing.T, s map[string]Settings) {
			if d := s["discord"]; !d.Enabled || !strings.HasPrefix(d.Problem, "dmPolicy ") {
				t.Errorf("discord = %+v", d)
			}
		}},
		{"an unset ${NAME} is the channel's problem, and keeps it enabled", func(c *moltgate.ChannelsConfig) { c.Slack.AppToken = "${NO_SUCH_TOKEN}" }, func(t *testing.T, s map[string]Settings) {
			sl := s["slack"]
			if !sl.Enabled || sl.AppToken != "" || !strings.Contains(sl.Problem, "channels.slack.appToken") || !strings.Contains(sl.Problem, "NO_SUCH_TOKEN") {
				t.Errorf("slack = %+v", sl)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg moltgate.Config
			tc.cfg(&cfg.Channels)
			tc.check(t, ResolveSettings(cfg, env.getenv, env))
		})
	}
	none := ResolveSettings(moltgate.Config{}, envResolver{}.getenv, envResolver{})
	for _, name := range moltgate.ChannelNames {
		if none[name].Enabled {
			t.Errorf("%s enabled without a token", name)
		}
	}
}

func TestSessionKey(t *testing.T) {
	dm := moltgate.InboundMessage{ChannelAddress: moltgate.ChannelAddress{Channel: "slack", AccountID: "T1", ChatID: "D1"}, SenderID: "U1", Direct: true}
	group := moltgate.InboundMessage{ChannelAddress: moltgate.ChannelAddress{Channel: "telegram", ChatID: "-100"}, SenderID: "U1"}
	thread := group
	thread.ThreadID = "42"
	for _, tc := range []struct {
		scope string
		msg   moltgate.InboundMessage
		owner bool
		want  string
	}{
		{"", dm, true, moltgate.MainSessionKey},
		{moltgate.DMScopeMain, dm, true, moltgate.MainSessionKey},
		{moltgate.DMScopeMain, dm, false, "agent:main:slack:dm:U1"}, // a stranger never shares the owner's session
		{moltgate.DMScopePerPeer, dm, true, "agent:main:dm:U1"},
		{moltgate.DMScopePerChannelPeer, dm, true, "agent:main:slack:dm:U1"},
		{moltgate.DMScopePerAccountChannelPeer, dm, false, "agent:main:slack:T1:dm:U1"},
		{moltgate.DMScopeMain, group, true, "agent:main:telegram:group:-100"},
		{moltgate.DMScopePerPeer, thread, false, "agent:main:telegram:group:-100:thread:42"},
	} {
		if got := SessionKey(tc.scope, tc.msg, tc.owner); got != tc.want {
			t.Errorf("SessionKey(%q, direct %v, owner %v) = %q, want %q", tc.scope, tc.msg.Direct, tc.owner, got, tc.want)
		}
	}
}
