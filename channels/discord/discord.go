// Package discord connects moltgate to Discord as a bot: it receives
// direct messages and guild messages over the gateway WebSocket and answers
// through the REST API.
//
// REST calls and the wire types come from github.com/disgoorg/disgo. The
// gateway connection (HELLO, heartbeats, IDENTIFY/RESUME, reconnects) is
// driven here, on disgo's payload types, because disgo's own gateway client
// reconnects on goroutines it never stops and races under the race
// detector; owning the loop also gives Run the lifecycle moltgate.Channel
// promises (Status, backoff with jitter, a prompt return when ctx ends).
package discord

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/disgoorg/disgo/rest"
	"github.com/moltgate/moltgate"
)

// Config configures an Adapter.
type Config struct {
	// Token is the bot token from the developer portal (DISCORD_BOT_TOKEN).
	// Required; it has three dot-separated parts, the first the base64 of
	// the application id.
	Token string
	// APIURL is the REST base: requests go to APIURL + "/api/v10/...".
	// Default https://discord.com; tests point it at a fake.
	APIURL string
	// GatewayURL is the gateway WebSocket. Empty: ask GET
	// /api/v10/gateway/bot, as Discord wants clients to.
	GatewayURL string
	// BackoffBase is the delay before the first reconnect; it doubles per
	// failed attempt, up to 30 s, with jitter. Default 1 s.
	BackoffBase time.Duration
	// Logger receives the adapter's logs (never the token). Default
	// slog.Default().
	Logger *slog.Logger
}

const (
	// DefaultAPIURL is Discord's REST host.
	DefaultAPIURL      = "https://discord.com"
	defaultBackoffBase = time.Second
	maxBackoff         = 30 * time.Second
	channelName        = "discord"
)

// Adapter is a Discord bot connection; it implements moltgate.Channel.
type Adapter struct {
	cfg     Config
	log     *slog.Logger
	rest    rest.Rest
	running atomic.Bool // Run is active: a second concurrent Run is refused

	status *moltgate.StatusKeeper
}

var _ moltgate.Channel = (*Adapter)(nil)

// New validates cfg and builds an Adapter; it does no network I/O.
func New(cfg Config) (*Adapter, error) {
	cfg.Token = strings.TrimSpace(cfg.Token)
	if err := checkToken(cfg.Token); err != nil {
		return nil, err
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	cfg.APIURL = strings.TrimRight(cfg.APIURL, "/")
	if err := checkURL("APIURL", cfg.APIURL, "http", "https"); err != nil {
		return nil, err
	}
	if cfg.GatewayURL != "" {
		if err := checkURL("GatewayURL", cfg.GatewayURL, "ws", "wss"); err != nil {
			return nil, err
		}
	}
	if cfg.BackoffBase < 0 {
		return nil, fmt.Errorf("discord: BackoffBase must not be negative (got %s)", cfg.BackoffBase)
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = defaultBackoffBase
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("channel", channelName)
	client := rest.NewClient(cfg.Token,
		rest.WithURL(cfg.APIURL+"/api/v10"),
		rest.WithUserAgent("DiscordBot (https://github.com/moltgate/moltgate, 1)"),
		rest.WithHTTPClient(&http.Client{Timeout: 30 * time.Second}),
		rest.WithLogger(log),
		rest.WithRateLimiter(newPacer()),
	)
	return &Adapter{
		cfg:    cfg,
		log:    log,
		rest:   rest.New(client),
		status: moltgate.NewStatusKeeper(channelName),
	}, nil
}

// checkToken refuses what cannot be a bot token, without ever quoting it:
// Discord tokens are base64(application id) "." timestamp "." signature.
func checkToken(token string) error {
	if token == "" {
		return errors.New("discord: Token is required (DISCORD_BOT_TOKEN)")
	}
	if strings.HasPrefix(token, "Bot ") {
		return errors.New(`discord: Token must be the bare bot token, without the "Bot " prefix`)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" || strings.ContainsAny(token, " \t\r\n") {
		return errors.New("discord: Token is not a bot token: expected three dot-separated parts (copy it from the developer portal, Bot → Reset Token)")
	}
	id, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(parts[0], "="))
	if err == nil {
		_, err = strconv.ParseUint(string(id), 10, 64)
	}
	if err != nil {
		return errors.New("discord: Token is not a bot token: its first part is not the base64 of an application id")
	}
	return nil
}

func checkURL(field, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("discord: %s %q is not an absolute URL", field, raw)
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return nil
		}
	}
	return fmt.Errorf("discord: %s %q must use %s", field, raw, strings.Join(schemes, " or "))
}

// Name returns "discord".
func (a *Adapter) Name() string { return channelName }

// Status reports the gateway connection's state.
func (a *Adapter) Status() moltgate.ChannelStatus { return a.status.Status() }

// ready records the bot's identity once the gateway accepted it.
func (a *Adapter) ready(accountID, botName string) {
	a.status.Identify(accountID, botName)
	a.status.Set(moltgate.ChannelRunning, "")
}

// Run connects to the gateway and hands every message to handle until ctx
// ends. Dropped connections are resumed (or re-identified) with backoff;
// Run returns an error only when Discord refuses the token or the intents.
func (a *Adapter) Run(ctx context.Context, handle moltgate.InboundHandler) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("discord: Run is already running")
	}
	defer a.running.Store(false)
	a.status.Set(moltgate.ChannelConnecting, "")
	if err := a.run(ctx, handle); err != nil {
		a.log.Error("discord channel failed", "err", err)
		a.status.Set(moltgate.ChannelFailed, err.Error())
		return err
	}
	a.status.Set(moltgate.ChannelStopped, "")
	return nil
}
