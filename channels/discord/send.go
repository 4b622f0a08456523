package discord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/rest"
	"github.com/disgoorg/snowflake/v2"
	"github.com/moltgate/moltgate"
)

// messageLimit is Discord's maximum message length in characters.
const messageLimit = 2000

// createMessage is the body of POST /channels/{id}/messages. It is written
// here rather than with discord.MessageCreate, whose omitempty fields
// cannot say fail_if_not_exists: false.
type createMessage struct {
	Content          string            `json:"content"`
	AllowedMentions  allowedMentions   `json:"allowed_mentions"`
	MessageReference *messageReference `json:"message_reference,omitempty"`
}

// allowedMentions with an empty parse list keeps @everyone, @here, role
// and user mentions in model output from pinging anyone; only the person
// replied to is notified.
type allowedMentions struct {
	Parse       []string `json:"parse"`
	RepliedUser bool     `json:"replied_user"`
}

type messageReference struct {
	MessageID string `json:"message_id"`
	// FailIfNotExists false sends the answer as a plain message when the
	// question was deleted meanwhile, instead of failing for good.
	FailIfNotExists bool `json:"fail_if_not_exists"`
}

// Send posts msg in its channel (ThreadID when set: a Discord thread is a
// channel of its own), split at 2,000 characters, the first piece as a
// reply to ReplyToID. It returns the ids of the pieces it sent; on a
// failure, those sent before it and a *moltgate.DeliveryError.
func (a *Adapter) Send(ctx context.Context, msg moltgate.OutboundMessage) ([]string, error) {
	channelID, err := targetChannel(msg.ChannelAddress)
	if err != nil {
		return nil, &moltgate.DeliveryError{Err: err}
	}
	var reply *messageReference
	if msg.ReplyToID != "" {
		if _, err := snowflake.Parse(msg.ReplyToID); err != nil {
			return nil, &moltgate.DeliveryError{Err: fmt.Errorf("discord: cannot reply to %q: not a Discord message id", msg.ReplyToID)}
		}
		reply = &messageReference{MessageID: msg.ReplyToID}
	}
	pieces := moltgate.SplitText(msg.Text, messageLimit)
	if len(pieces) == 0 {
		return nil, &moltgate.DeliveryError{Err: errors.New("discord: cannot send an empty message")}
	}
	ids := make([]string, 0, len(pieces))
	for i := min(max(msg.Skip, 0), len(pieces)); i < len(pieces); i++ { // Skip: pieces delivered by an earlier attempt
		piece := pieces[i]
		body := createMessage{Content: piece, AllowedMentions: allowedMentions{Parse: []string{}, RepliedUser: true}}
		if i == 0 {
			body.MessageReference = reply
		}
		var created discord.Message
		err := a.rest.Do(rest.CreateMessage.Compile(nil, channelID), body, &created, rest.WithCtx(ctx))
		if err != nil {
			return ids, deliveryError(fmt.Sprintf("cannot send message %d of %d to channel %s", i+1, len(pieces), channelID), err)
		}
		ids = append(ids, created.ID.String())
	}
	return ids, nil
}

// Typing shows "bot is typing…" in the channel for ten seconds, or until
// the bot posts.
func (a *Adapter) Typing(ctx context.Context, to moltgate.ChannelAddress) error {
	channelID, err := targetChannel(to)
	if err != nil {
		return &moltgate.DeliveryError{Err: err}
	}
	if err := a.rest.SendTyping(channelID, rest.WithCtx(ctx)); err != nil {
		return deliveryError(fmt.Sprintf("cannot show typing in channel %s", channelID), err)
	}
	return nil
}

func targetChannel(to moltgate.ChannelAddress) (snowflake.ID, error) {
	target := to.ChatID
	if to.ThreadID != "" {
		target = to.ThreadID
	}
	id, err := snowflake.Parse(target)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("discord: %q is not a Discord channel id", target)
	}
	return id, nil
}

// apiError is an error answer from Discord's REST API. disgo's rest.Error
// is not wrapped because it holds the request, Authorization header and
// all.
type apiError struct {
	Status     int
	Code       int // Discord's JSON error code (50013 Missing Permissions…), 0 if none
	Message    string
	RetryAfter time.Duration // 429 only
}

func (e *apiError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Code != 0 {
		return fmt.Sprintf("%s (HTTP %d, Discord code %d)", msg, e.Status, e.Code)
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.Status)
}

// restError replaces a rest.Error in err by an *apiError; other errors
// (network, context) are returned as they are.
func restError(err error) error {
	var re rest.Error
	if !errors.As(err, &re) || re.Response == nil {
		return err
	}
	api := &apiError{Status: re.Response.StatusCode, Code: int(re.Code), Message: re.Message}
	if api.Status == http.StatusTooManyRequests {
		api.RetryAfter = retryAfter(re.RsBody, re.Response.Header)
	}
	return api
}

// retryAfter reads a 429's wait: retry_after in the body (seconds, with
// milliseconds), else the Retry-After header (whole seconds).
func retryAfter(body []byte, h http.Header) time.Duration {
	var rl struct {
		RetryAfter float64 `json:"retry_after"`
	}
	if json.Unmarshal(body, &rl) == nil && rl.RetryAfter > 0 {
		return time.Duration(rl.RetryAfter * float64(time.Second))
	}
	if s, err := strconv.ParseFloat(h.Get("Retry-After"), 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	return 0
}

// deliveryError classifies a failed REST call for the outbox: rate limits,
// 5xx and network failures are worth retrying, other refusals (403 Missing
// Permissions, 404 Unknown Channel, 400) are not.
func deliveryError(what string, err error) *moltgate.DeliveryError {
	err = restError(err)
	wrapped := fmt.Errorf("discord: %s: %w", what, err)
	var api *apiError
	var limited *rateLimitedError
	switch {
	case errors.As(err, &limited):
		return &moltgate.DeliveryError{Err: wrapped, Retryable: true, RetryAfter: limited.wait}
	case errors.As(err, &api) && api.Status == http.StatusTooManyRequests:
		return &moltgate.DeliveryError{Err: wrapped, Retryable: true, RetryAfter: api.RetryAfter}
	case errors.As(err, &api):
		return &moltgate.DeliveryError{Err: wrapped, Retryable: api.Status >= 500}
	default: // the network, a timeout, the caller's context
		return &moltgate.DeliveryError{Err: wrapped, Retryable: true}
	}
}

// rateLimitedError is the pacer refusing to wait that long.
type rateLimitedError struct{ wait time.Duration }

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("rate limited by Discord for another %s", e.wait.Round(time.Millisecond))
}

// maxPacingWait is the longest a request waits for its rate-limit bucket
// to refill: Discord's message buckets refill within 5 s, so the pieces of
// a long answer go out in order instead of failing half-way; a longer
// wait is the outbox's to make.
const maxPacingWait = 5 * time.Second
