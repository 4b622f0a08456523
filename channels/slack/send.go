package slack

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/slack-go/slack"

	"github.com/moltgate/moltgate"
)

// retryableCodes are the Slack errors, sent as {"ok":false,"error":…},
// that a later attempt may not get.
var retryableCodes = map[string]bool{
	"ratelimited": true, "rate_limited": true, "internal_error": true, "fatal_error": true,
	"service_unavailable": true, "request_timeout": true,
}

// Send posts msg.Text to msg.ChatID with chat.postMessage, split at
// TextLimit, and returns the ts of each message posted. Slack replies
// only by threading, so the messages go into msg.ThreadID, or, when that
// is empty and ReplyToID is set, into a thread under ReplyToID.
//
// The text is escaped (&, <, >) as Slack asks, so a model's output cannot
// ping @channel or forge a mention or a link. When a piece fails, Send
// returns the ids posted before it with the error.
func (a *Adapter) Send(ctx context.Context, msg moltgate.OutboundMessage) ([]string, error) {
	if msg.ChatID == "" {
		return nil, &moltgate.DeliveryError{Err: errors.New("slack: cannot send: no channel id")}
	}
	pieces := moltgate.SplitText(msg.Text, TextLimit)
	if len(pieces) == 0 {
		return nil, &moltgate.DeliveryError{Err: fmt.Errorf("slack: cannot send an empty message to %s", msg.ChatID)}
	}
	thread := msg.ThreadID
	if thread == "" {
		thread = msg.ReplyToID
	}
	var ids []string
	for _, piece := range pieces[min(max(msg.Skip, 0), len(pieces)):] { // Skip: pieces delivered by an earlier attempt
		opts := []slack.MsgOption{slack.MsgOptionText(piece, true)}
		if thread != "" {
			opts = append(opts, slack.MsgOptionTS(thread))
		}
		_, ts, err := a.api.PostMessageContext(ctx, msg.ChatID, opts...)
		if err != nil {
			return ids, deliveryError(msg.ChatID, err)
		}
		ids = append(ids, ts)
	}
	return ids, nil
}

// deliveryError classifies a failed Web API call for the outbox: rate
// limits, 5xx, Slack's transient errors, network failures and a cancelled
// context may pass on a later attempt; other refusals (channel_not_found,
// not_in_channel, is_archived, invalid_auth…) and other 4xx will not.
func deliveryError(channel string, err error) *moltgate.DeliveryError {
	d := &moltgate.DeliveryError{Err: fmt.Errorf("slack: cannot send to %s: %w", channel, err)}
	var limited *slack.RateLimitedError
	var status slack.StatusCodeError
	var refusal slack.SlackErrorResponse
	switch {
	case errors.As(err, &limited):
		// DeliveryError says how long to wait; slack-go's text says it too.
		d.Err = fmt.Errorf("slack: cannot send to %s: rate limited (HTTP 429)", channel)
		d.Retryable, d.RetryAfter = true, limited.RetryAfter
	case errors.As(err, &status):
		d.Retryable = status.Code >= 500 || status.Code == http.StatusTooManyRequests || status.Code == http.StatusRequestTimeout
	case errors.As(err, &refusal):
		d.Retryable = retryableCodes[refusal.Err]
	default:
		d.Retryable = true
	}
	return d
}

// Typing does nothing and returns nil. Slack has no typing indicator a bot
// token can set: the "typing" message exists only on the RTM API, which
// Socket Mode apps do not use, and assistant.threads.setStatus works only
// in the AI-assistant side panel (scope assistant:write), not in the DMs
// and channels this adapter serves.
func (a *Adapter) Typing(ctx context.Context, to moltgate.ChannelAddress) error { return nil }
