package telegram

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/moltgate/moltgate"
)

// allowedUpdates is what the adapter asks Telegram for: only new messages
// (not edits, reactions, callbacks), so nothing is fetched to be dropped.
var allowedUpdates = []string{models.AllowedUpdateMessage}

// apiError is a Bot API error answer to a call the adapter makes itself
// (getUpdates).
type apiError struct {
	Method      string
	Code        int
	Description string
	RetryAfter  time.Duration
}

func (e *apiError) Error() string {
	if e.Code == http.StatusConflict {
		return fmt.Sprintf("telegram: another instance is polling with this bot token, or a webhook is set (%s %d %s)", e.Method, e.Code, e.Description)
	}
	return fmt.Sprintf("telegram: %s failed: %d %s", e.Method, e.Code, e.Description)
}

// permanentError is a failure that retrying cannot fix.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func isPermanent(err error) bool {
	var p permanentError
	return errors.Is(err, ErrTokenRefused) || errors.As(err, &p)
}

// Run connects to Telegram and hands every message people send to handle
// until ctx ends, then returns nil. It returns an error only when
// retrying cannot help: the token is refused (ErrTokenRefused) or
// Telegram refuses WebhookURL. Run may be called again after it returned,
// but not twice at once.
func (a *Adapter) Run(ctx context.Context, handle moltgate.InboundHandler) error {
	if handle == nil {
		return errors.New("telegram: Run needs a handler")
	}
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("telegram: Run is already running")
	}
	defer a.running.Store(false)
	a.setState(moltgate.ChannelConnecting, "")
	err := a.run(ctx, handle)
	if err != nil {
		a.setState(moltgate.ChannelFailed, err.Error())
		a.log.Error("telegram channel failed", "err", a.redact(err))
		return a.redact(err)
	}
	a.setState(moltgate.ChannelStopped, "")
	return nil
}

func (a *Adapter) run(ctx context.Context, handle moltgate.InboundHandler) error {
	if err := a.connect(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	if a.cfg.WebhookURL != "" {
		return a.receiveWebhooks(ctx, handle)
	}
	return a.poll(ctx, handle)
}

// connect learns who the bot is and sets up the receiving mode, retrying
// transient failures with backoff. It returns nil when ctx ends.
func (a *Adapter) connect(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := a.setup(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if isPermanent(err) {
			return err
		}
		a.retrying(err)
		if !sleep(ctx, a.wait(attempt, err)) {
			return nil
		}
	}
}

// setup calls getMe, then sets the webhook (webhook mode) or deletes one
// left from earlier (polling mode: getUpdates answers 409 while a webhook
// is set).
func (a *Adapter) setup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	me, err := a.bot.GetMe(ctx)
	if err != nil {
		return a.callError("getMe", err)
	}
	a.status.Touch()
	a.mu.Lock()
	a.botID, a.botUser = me.ID, me.Username
	a.mu.Unlock()
	a.status.Identify(strconv.FormatInt(me.ID, 10), me.Username)

	if a.cfg.WebhookURL != "" {
		_, err := a.bot.SetWebhook(ctx, &bot.SetWebhookParams{
			URL:            a.cfg.WebhookURL,
			SecretToken:    a.cfg.WebhookSecret,
			AllowedUpdates: allowedUpdates,
		})
		if errors.Is(err, bot.ErrorBadRequest) {
			return permanentError{fmt.Errorf("telegram: Telegram refused WebhookURL: %w", a.redact(err))}
		}
		if err != nil {
			return a.callError("setWebhook", err)
		}
		a.mu.Lock()
		a.lastHook = time.Time{} // Telegram's last_error is about this webhook now
		a.mu.Unlock()
		return nil
	}
	info, err := a.bot.GetWebhookInfo(ctx)
	if err != nil {
		return a.callError("getWebhookInfo", err)
	}
	if info.URL != "" {
		a.log.Info("deleting the bot's webhook to receive by long polling", "webhook", info.URL)
		if _, err := a.bot.DeleteWebhook(ctx, &bot.DeleteWebhookParams{}); err != nil {
			return a.callError("deleteWebhook", err)
		}
	}
	return nil
}

// callError turns a failed library call into the error Run reports.
func (a *Adapter) callError(method string, err error) error {
	if errors.Is(err, bot.ErrorUnauthorized) {
		return ErrTokenRefused
	}
	return fmt.Errorf("telegram: %s failed: %w", method, a.redact(err))
}

// wait is how long to wait before retry number attempt: the backoff, or
// longer when Telegram said how long (429 retry_after).
func (a *Adapter) wait(attempt int, err error) time.Duration {
	d := moltgate.Backoff(a.cfg.BackoffBase, maxBackoff, attempt)
	var tooMany *bot.TooManyRequestsError
	var api *apiError
	switch {
	case errors.As(err, &tooMany):
		d = max(d, time.Duration(tooMany.RetryAfter)*time.Second)
	case errors.As(err, &api):
		d = max(d, api.RetryAfter)
	}
	return d
}

// sleep waits d or until ctx ends, reporting whether to go on.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// poll receives by long polling until ctx ends or the token is refused.
// The first call after (re)connecting does not wait, so "running" means
// Telegram answered a getUpdates, and a 409 shows at once.
func (a *Adapter) poll(ctx context.Context, handle moltgate.InboundHandler) error {
	probe := true
	for failures := 0; ; {
		timeout := a.cfg.PollTimeout
		if probe {
			timeout = 0
		}
		batch, err := a.getUpdates(ctx, timeout)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if isPermanent(err) {
				return err
			}
			a.retrying(err)
			if !sleep(ctx, a.wait(failures, err)) {
				return nil
			}
			failures++
			probe = true
			continue
		}
		failures, probe = 0, false
		a.status.Touch()
		a.setState(moltgate.ChannelRunning, "")
		for _, raw := range batch {
			if !a.dispatchRaw(ctx, handle, raw) {
				return nil
			}
		}
	}
}

// getUpdates makes one long poll. The offset it sends confirms every
// update handled so far. The library has no public getUpdates, so this
// one call is made here, in the Bot API's JSON form.
func (a *Adapter) getUpdates(ctx context.Context, timeout time.Duration) ([]json.RawMessage, error) {
	body, err := json.Marshal(map[string]any{
		"offset":          a.offset.Load(),
		"timeout":         int(timeout / time.Second),
		"allowed_updates": allowedUpdates,
	})
	if err != nil {
		return nil, fmt.Errorf("telegram: cannot encode getUpdates: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.APIURL+"/bot"+a.cfg.Token+"/getUpdates", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("telegram: cannot make a getUpdates request: %w", a.redact(err))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("telegram: getUpdates failed: %w", a.redact(err))
	}
	defer resp.Body.Close()
	var answer struct {
		OK          bool              `json:"ok"`
		Result      []json.RawMessage `json:"result"`
		ErrorCode   int               `json:"error_code"`
		Description string            `json:"description"`
		Parameters  struct {
			RetryAfter int `json:"retry_after"`
		} `json:"parameters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return nil, fmt.Errorf("telegram: getUpdates answered HTTP %d without the Bot API's JSON: %w", resp.StatusCode, err)
	}
	if !answer.OK {
		if answer.ErrorCode == http.StatusUnauthorized {
			return nil, ErrTokenRefused
		}
		return nil, &apiError{
			Method:      "getUpdates",
			Code:        answer.ErrorCode,
			Description: a.redactString(answer.Description),
			RetryAfter:  time.Duration(answer.Parameters.RetryAfter) * time.Second,
		}
	}
	return answer.Result, nil
}

// dispatchRaw decodes one update and hands its message to handle, then
// moves the offset past it. A malformed update is logged and skipped. It
// returns false, leaving the update unconfirmed, when ctx ended before
// handle recorded it. Calls are serialized (webhook requests come
// concurrently), so handle sees one message at a time.
func (a *Adapter) dispatchRaw(ctx context.Context, handle moltgate.InboundHandler, raw []byte) bool {
	a.dispatchMu.Lock()
	defer a.dispatchMu.Unlock()
	var head struct {
		ID *int64 `json:"update_id"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.ID == nil {
		a.log.Warn("skipping an update without an update_id", "err", err)
		return true
	}
	var upd models.Update
	if err := json.Unmarshal(raw, &upd); err != nil {
		a.log.Warn("skipping a malformed update", "update_id", *head.ID, "err", err)
	} else if msg, ok := a.inbound(upd.Message); ok {
		if err := handle(ctx, msg); err != nil {
			if ctx.Err() != nil {
				return false
			}
			a.log.Error("the handler did not record a telegram message", "update_id", *head.ID, "chat", msg.ChatID, "message", msg.MessageID, "err", a.redact(err))
		}
	}
	a.offset.Store(max(a.offset.Load(), *head.ID+1))
	return true
}

// receiveWebhooks handles webhook requests (served by WebhookHandler)
// until ctx ends. Every PollTimeout it asks getWebhookInfo, a sign of life
// for the watchdog that also shows when Telegram cannot reach the
// webhook, and sets the webhook again if it was replaced.
func (a *Adapter) receiveWebhooks(ctx context.Context, handle moltgate.InboundHandler) error {
	a.mu.Lock()
	a.handle, a.runCtx, a.accepting = handle, ctx, true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.handle, a.runCtx, a.accepting = nil, nil, false
		a.mu.Unlock()
		a.inflight.Wait()
	}()
	a.setState(moltgate.ChannelRunning, "")
	tick := time.NewTicker(a.cfg.PollTimeout)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		err := a.checkWebhook(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			continue
		}
		if isPermanent(err) {
			return err
		}
		a.retrying(err)
		if err := a.connect(ctx); err != nil || ctx.Err() != nil {
			return err
		}
		a.setState(moltgate.ChannelRunning, "")
	}
}

// checkWebhook reads the webhook's state from Telegram.
func (a *Adapter) checkWebhook(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	info, err := a.bot.GetWebhookInfo(ctx)
	if err != nil {
		return a.callError("getWebhookInfo", err)
	}
	a.status.Touch()
	if info.URL != a.cfg.WebhookURL {
		return fmt.Errorf("telegram: the webhook is no longer WebhookURL but %q: another instance may be using this bot token", info.URL)
	}
	a.mu.Lock()
	lastHook := a.lastHook
	a.mu.Unlock()
	msg := ""
	// An error older than the last delivery is over.
	if info.LastErrorMessage != "" && (lastHook.IsZero() || int64(info.LastErrorDate) > lastHook.Unix()) {
		msg = "telegram: Telegram cannot deliver to the webhook: " + info.LastErrorMessage
	}
	a.setState(moltgate.ChannelRunning, msg)
	return nil
}

// WebhookHandler is the handler to mount at WebhookURL's path. It refuses
// a request without the right X-Telegram-Bot-Api-Secret-Token with 401,
// answers 503 while Run is not receiving (Telegram then delivers the
// update again later), and answers 200 only after the handler returned.
func (a *Adapter) WebhookHandler() http.Handler {
	return http.HandlerFunc(a.serveWebhook)
}

func (a *Adapter) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if a.cfg.WebhookURL == "" {
		http.Error(w, "telegram: webhook mode is off (no WebhookURL)", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "telegram: the webhook takes POST", http.StatusMethodNotAllowed)
		return
	}
	got := r.Header.Get("X-Telegram-Bot-Api-Secret-Token")
	if subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.WebhookSecret)) != 1 {
		a.log.Warn("refused a telegram webhook request without the right secret token", "remote", r.RemoteAddr)
		http.Error(w, "telegram: wrong secret token", http.StatusUnauthorized)
		return
	}
	a.mu.Lock()
	if !a.accepting {
		a.mu.Unlock()
		http.Error(w, "telegram: the channel is not running", http.StatusServiceUnavailable)
		return
	}
	handle, ctx := a.handle, a.runCtx
	a.inflight.Add(1)
	a.mu.Unlock()
	defer a.inflight.Done()

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		http.Error(w, "telegram: cannot read the update", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.lastHook = time.Now()
	a.mu.Unlock()
	a.status.Touch()
	if !a.dispatchRaw(ctx, handle, body) {
		http.Error(w, "telegram: the channel is stopping", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}
