// Package slack connects moltgate to Slack through Socket Mode: Slack
// pushes events over a WebSocket the app opens itself, so a personal
// gateway needs no public URL, and replies go out through the Web API's
// chat.postMessage. It speaks the protocol through github.com/slack-go/slack
// and its socketmode package, and decides nothing about who may talk to the
// assistant: it reports facts to the router (moltgate.Channel).
package slack

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/moltgate/moltgate"
)

// TextLimit is the length at which Send splits a reply: Slack truncates a
// message's text at 40,000 characters but recommends at most 4,000, beyond
// which it renders poorly.
const TextLimit = 4000

// DefaultAPIURL is Slack's Web API base.
const DefaultAPIURL = "https://slack.com/api/"

// maxBackoff caps the delay between reconnection attempts.
const maxBackoff = 30 * time.Second

// Config configures an Adapter. Tokens come from SLACK_BOT_TOKEN and
// SLACK_APP_TOKEN; errors name those variables and never show a token.
type Config struct {
	// BotToken (xoxb-…) calls the Web API as the bot: auth.test,
	// chat.postMessage and users.info (scopes chat:write, users:read and
	// the history scopes of the message events the app subscribes to).
	BotToken string
	// AppToken (xapp-…) is the app-level token that opens Socket Mode
	// connections (scope connections:write). Socket Mode is the only way
	// this adapter receives events, so it is required.
	AppToken string
	// APIURL is the Web API base, DefaultAPIURL when empty; tests point it
	// at internal/fakeslack. A missing trailing slash is added, because
	// slack-go appends method names to it directly.
	APIURL string
	// BackoffBase is the first delay before reconnecting after a failure
	// (default 1 s); it doubles on each failed attempt up to 30 s, with
	// jitter. Tests make it small.
	BackoffBase time.Duration
	// Logger receives the adapter's logs (default slog.Default()).
	Logger *slog.Logger
}

// Adapter is a Slack moltgate.Channel. Run may be called again after it
// returned, but not twice at once.
type Adapter struct {
	cfg Config
	api *slack.Client
	log *slog.Logger

	status *moltgate.StatusKeeper // every read from the socket, pings included, touches it

	// Touched only by Run's goroutines, one Run at a time.
	seen  recent
	names map[string]string // user id → display name, "" when users.info said no
}

var _ moltgate.Channel = (*Adapter)(nil)

// New checks cfg and builds an Adapter; it does no network I/O.
func New(cfg Config) (*Adapter, error) {
	if err := checkToken("BotToken", "SLACK_BOT_TOKEN", cfg.BotToken, "xoxb-"); err != nil {
		return nil, err
	}
	if err := checkToken("AppToken", "SLACK_APP_TOKEN", cfg.AppToken, "xapp-"); err != nil {
		return nil, err
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	u, err := url.Parse(cfg.APIURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("slack: APIURL %q is not an http(s) URL such as %s", cfg.APIURL, DefaultAPIURL)
	}
	if !strings.HasSuffix(cfg.APIURL, "/") {
		cfg.APIURL += "/"
	}
	if cfg.BackoffBase < 0 {
		return nil, fmt.Errorf("slack: BackoffBase must not be negative (got %s)", cfg.BackoffBase)
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Adapter{
		cfg: cfg,
		api: slack.New(cfg.BotToken,
			slack.OptionAppLevelToken(cfg.AppToken),
			slack.OptionAPIURL(cfg.APIURL)),
		log:    cfg.Logger.With("channel", "slack"),
		status: moltgate.NewStatusKeeper("slack"),
		names:  map[string]string{},
	}
	return a, nil
}

// tokenKinds names Slack's token prefixes, so an error can say which token
// was given in place of which without showing it.
var tokenKinds = map[string]string{
	"xoxb-": "a bot token",
	"xapp-": "an app-level token",
	"xoxp-": "a user token",
	"xoxe-": "a refresh token",
}

// checkToken checks a token's presence and prefix; the error names the
// field and the variable and shows at most the prefix.
func checkToken(field, env, token, prefix string) error {
	want := tokenKinds[prefix]
	switch {
	case token == "":
		return fmt.Errorf("slack: %s is required: set %s to %s (%s…)", field, env, want, prefix)
	case strings.ContainsAny(token, " \t\r\n"):
		return fmt.Errorf("slack: %s contains whitespace: check %s", field, env)
	case strings.HasPrefix(token, prefix):
		return nil
	}
	for p, kind := range tokenKinds {
		if strings.HasPrefix(token, p) {
			return fmt.Errorf("slack: %s is %s (%s…), not %s (%s…): check %s", field, kind, p, want, prefix, env)
		}
	}
	return fmt.Errorf("slack: %s is not %s: it must start with %s (check %s)", field, want, prefix, env)
}

// Name is "slack".
func (a *Adapter) Name() string { return "slack" }

// Status reports the connection's state.
func (a *Adapter) Status() moltgate.ChannelStatus { return a.status.Status() }
