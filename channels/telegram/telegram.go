// Package telegram connects moltgate to Telegram through the Bot API, by
// long polling (getUpdates) or, when a webhook URL is configured, by a
// webhook that the gateway mounts.
//
// It is built on github.com/go-telegram/bot for the API calls (getMe,
// sendMessage, sendChatAction, setWebhook, deleteWebhook, getWebhookInfo)
// and its models. Receiving is done here, not by the library's Start and
// WebhookHandler, because those cannot give the guarantees the router
// needs: the library's poller decodes a whole batch at once, so one
// malformed update makes it retry the same offset forever; it confirms an
// update (by asking for the next) before the handler has run, so a
// restart can lose it; its backoff is fixed and silent (no status, no
// refused-token detection); and its webhook handler answers 200 to a wrong
// secret and before the update is handled. Here an update is confirmed
// only after the handler returned, a malformed one is logged and skipped,
// and the webhook answers 401/503 so Telegram redelivers what was not
// handled.
package telegram

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-telegram/bot"
	"github.com/moltgate/moltgate"
)

// ChannelName is the channel's name in addresses and status.
const ChannelName = "telegram"

// MaxMessageLength is Telegram's limit for one message's text, in UTF-16
// code units (what moltgate.SplitText counts).
const MaxMessageLength = 4096

// DefaultAPIURL is the public Bot API server.
const DefaultAPIURL = "https://api.telegram.org"

const (
	defaultPollTimeout = 30 * time.Second
	defaultBackoffBase = time.Second
	maxBackoff         = 30 * time.Second
	// callTimeout bounds one API call other than getUpdates, so a hung
	// connection cannot stall Run.
	callTimeout = 30 * time.Second
	// maxWebhookBody bounds a webhook request; Telegram's updates are a
	// few kilobytes.
	maxWebhookBody = 1 << 20
)

// ErrTokenRefused is what Run returns when Telegram refuses the bot token:
// retrying cannot help until the token is changed.
var ErrTokenRefused = errors.New("telegram: the bot token was refused (401 Unauthorized): check TELEGRAM_BOT_TOKEN")

// Config configures an Adapter. Only Token is required.
type Config struct {
	// Token is the bot token from @BotFather, "<bot id>:<secret>". It
	// never appears in errors or logs.
	Token string
	// APIURL is the Bot API server, DefaultAPIURL unless a self-hosted
	// server (or a test fake) is used; requests go to
	// <APIURL>/bot<token>/<method>.
	APIURL string
	// PollTimeout is how long one getUpdates long poll waits for an update
	// (default 30 s, whole seconds, at least 1 s).
	PollTimeout time.Duration
	// WebhookURL switches to webhook mode: Run registers it with
	// setWebhook and the gateway serves WebhookHandler there. Empty means
	// long polling (and Run deletes a webhook left from earlier).
	WebhookURL string
	// WebhookSecret is sent by Telegram in X-Telegram-Bot-Api-Secret-Token
	// with every webhook request; required with WebhookURL, since without
	// it anyone could post fake messages to the webhook. 1-256 characters
	// of A-Z, a-z, 0-9, _ and -.
	WebhookSecret string
	// BackoffBase is the first wait after a failure, doubled (with jitter)
	// up to 30 s on each further failure. Default 1 s.
	BackoffBase time.Duration
	// HTTPClient makes the API calls; its Timeout, if set, must exceed
	// PollTimeout. Default: a client without timeout (every call has its
	// own deadline).
	HTTPClient *http.Client
	// Logger receives the adapter's logs; default slog.Default().
	Logger *slog.Logger
}

var (
	tokenRE  = regexp.MustCompile(`^[0-9]+:[A-Za-z0-9_-]+$`)
	secretRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)
)

// Adapter is a Telegram bot connection implementing moltgate.Channel.
type Adapter struct {
	cfg    Config
	bot    *bot.Bot
	log    *slog.Logger
	secret string // the token's secret part, redacted from every error and log line

	running atomic.Bool
	// offset is the next update id to ask getUpdates for: every update
	// before it was handled. It survives Run restarts, so a restarted Run
	// does not get updates again that the last one handled but had not
	// yet confirmed to Telegram.
	offset atomic.Int64

	dispatchMu sync.Mutex     // one update handled at a time, in order
	inflight   sync.WaitGroup // webhook requests being handled

	status *moltgate.StatusKeeper

	mu      sync.Mutex
	botID   int64
	botUser string
	// While Run is in webhook mode: webhook requests are accepted and
	// handed to handle with Run's context.
	accepting bool
	handle    moltgate.InboundHandler
	runCtx    context.Context
	lastHook  time.Time // when the last webhook request came since setWebhook
}

var _ moltgate.Channel = (*Adapter)(nil)

// New validates cfg and prepares an adapter; it does no network I/O.
func New(cfg Config) (*Adapter, error) {
	cfg.Token = strings.TrimSpace(cfg.Token)
	if cfg.Token == "" {
		return nil, errors.New("telegram: Token is required (TELEGRAM_BOT_TOKEN)")
	}
	if !tokenRE.MatchString(cfg.Token) {
		return nil, errors.New("telegram: Token is not a bot token: it must look like <bot id>:<secret>, as @BotFather gives it")
	}
	a := &Adapter{
		secret: cfg.Token[strings.IndexByte(cfg.Token, ':')+1:],
		status: moltgate.NewStatusKeeper(ChannelName),
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	cfg.APIURL = strings.TrimRight(cfg.APIURL, "/")
	if !isHTTPURL(cfg.APIURL) {
		// Redacted: someone may have pasted a whole request URL.
		return nil, fmt.Errorf("telegram: APIURL %q is not an http(s) URL", a.redactString(cfg.APIURL))
	}
	if cfg.PollTimeout < 0 {
		return nil, fmt.Errorf("telegram: PollTimeout %s is negative", cfg.PollTimeout)
	}
	if cfg.PollTimeout == 0 {
		cfg.PollTimeout = defaultPollTimeout
	}
	// getUpdates takes whole seconds, and 0 would be a busy loop.
	cfg.PollTimeout = max(cfg.PollTimeout.Round(time.Second), time.Second)
	if cfg.WebhookURL != "" {
		if !isHTTPURL(cfg.WebhookURL) {
			return nil, fmt.Errorf("telegram: WebhookURL %q is not an http(s) URL", a.redactString(cfg.WebhookURL))
		}
		if cfg.WebhookSecret == "" {
			return nil, errors.New("telegram: WebhookSecret is required with WebhookURL, so that only Telegram can post to the webhook")
		}
	}
	if cfg.WebhookSecret != "" && !secretRE.MatchString(cfg.WebhookSecret) {
		return nil, errors.New("telegram: WebhookSecret must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
	}
	if cfg.BackoffBase < 0 {
		return nil, fmt.Errorf("telegram: BackoffBase %s is negative", cfg.BackoffBase)
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = defaultBackoffBase
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if t := cfg.HTTPClient.Timeout; t != 0 && t <= cfg.PollTimeout {
		return nil, fmt.Errorf("telegram: HTTPClient.Timeout %s must be longer than PollTimeout %s, or every long poll times out", t, cfg.PollTimeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a.cfg, a.log = cfg, cfg.Logger.With("channel", ChannelName)
	b, err := bot.New(cfg.Token,
		bot.WithServerURL(cfg.APIURL),
		bot.WithSkipGetMe(),
		bot.WithHTTPClient(cfg.PollTimeout, cfg.HTTPClient),
		bot.WithErrorsHandler(func(err error) { a.log.Warn("telegram library error", "err", a.redact(err)) }),
	)
	if err != nil {
		return nil, fmt.Errorf("telegram: cannot create the bot client: %w", a.redact(err))
	}
	a.bot = b
	return a, nil
}

func isHTTPURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// Name returns "telegram".
func (a *Adapter) Name() string { return ChannelName }

// Status reports the connection's state.
func (a *Adapter) Status() moltgate.ChannelStatus { return a.status.Status() }

// setState changes the state; errMsg replaces the error shown ("" clears
// it), without the token: the library's errors carry request URLs.
func (a *Adapter) setState(state, errMsg string) {
	a.status.Set(state, a.redactString(errMsg))
}

// retrying reports a transient failure: connecting, one more reconnect.
func (a *Adapter) retrying(err error) {
	a.status.Reconnecting(a.redactString(err.Error()))
	a.log.Warn("telegram connection failed; retrying", "err", a.redact(err))
}

// redactString removes the token's secret from s: the library's errors
// and net/http's carry request URLs, and Telegram puts the token in the
// URL's path.
func (a *Adapter) redactString(s string) string {
	if a.secret == "" {
		return s
	}
	return strings.ReplaceAll(s, a.secret, "<redacted>")
}

// redact returns err with the token's secret removed from its message;
// errors.Is and errors.As still see the original.
func (a *Adapter) redact(err error) error {
	if err == nil {
		return nil
	}
	// Someone printing the unwrapped *url.Error must not see it either.
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		urlErr.URL = a.redactString(urlErr.URL)
	}
	msg := err.Error()
	if clean := a.redactString(msg); clean != msg {
		return &redactedError{msg: clean, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
