package telegram

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"github.com/moltgate/moltgate"
)

// Send sends msg.Text as plain text (no parse_mode, so model output cannot
// fail on Markdown entities), split at Telegram's 4,096 limit; the first
// piece answers msg.ReplyToID, every piece goes to msg.ThreadID. It
// returns the ids of the messages sent, also those sent before a failure.
func (a *Adapter) Send(ctx context.Context, msg moltgate.OutboundMessage) ([]string, error) {
	chat, thread, err := address(msg.ChannelAddress)
	if err != nil {
		return nil, err
	}
	replyTo, err := optionalID("ReplyToID", msg.ReplyToID)
	if err != nil {
		return nil, err
	}
	pieces := moltgate.SplitText(msg.Text, MaxMessageLength)
	if len(pieces) == 0 {
		return nil, &moltgate.DeliveryError{Err: errors.New("telegram: nothing to send: the text is empty")}
	}
	ids := make([]string, 0, len(pieces))
	for i := min(max(msg.Skip, 0), len(pieces)); i < len(pieces); i++ { // Skip: pieces delivered by an earlier attempt
		text := pieces[i]
		params := &bot.SendMessageParams{ChatID: chat, MessageThreadID: thread, Text: text}
		if i == 0 && replyTo != 0 {
			// Still deliver the answer if the question was deleted.
			params.ReplyParameters = &models.ReplyParameters{MessageID: replyTo, AllowSendingWithoutReply: true}
		}
		sent, err := call(a, ctx, func(ctx context.Context) (*models.Message, error) { return a.bot.SendMessage(ctx, params) })
		if err != nil {
			return ids, deliveryError(fmt.Errorf("telegram: cannot send message %d of %d to chat %s: %w", i+1, len(pieces), chat, a.redact(err)))
		}
		ids = append(ids, strconv.Itoa(sent.ID))
	}
	return ids, nil
}

// Typing shows "typing…" in the chat (and topic) for a few seconds.
func (a *Adapter) Typing(ctx context.Context, to moltgate.ChannelAddress) error {
	chat, thread, err := address(to)
	if err != nil {
		return err
	}
	params := &bot.SendChatActionParams{ChatID: chat, MessageThreadID: thread, Action: models.ChatActionTyping}
	if _, err := call(a, ctx, func(ctx context.Context) (bool, error) { return a.bot.SendChatAction(ctx, params) }); err != nil {
		return deliveryError(fmt.Errorf("telegram: cannot show typing in chat %s: %w", chat, a.redact(err)))
	}
	return nil
}

// call makes one library call with a deadline, recording a sign of life
// when Telegram answered.
func call[T any](a *Adapter, ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	v, err := f(ctx)
	if err == nil {
		a.status.Touch()
	}
	return v, err
}

// address checks an outbound address: a chat id ("-100…" or
// "@channelname") and an optional topic id.
func address(to moltgate.ChannelAddress) (chat string, thread int, err error) {
	chat = strings.TrimSpace(to.ChatID)
	if chat == "" {
		return "", 0, &moltgate.DeliveryError{Err: errors.New("telegram: the address has no ChatID")}
	}
	thread, err = optionalID("ThreadID", to.ThreadID)
	return chat, thread, err
}

// optionalID parses a Telegram message or topic id given as a string; ""
// is 0 (none).
func optionalID(field, s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	id, err := strconv.Atoi(s)
	if err != nil || id <= 0 {
		return 0, &moltgate.DeliveryError{Err: fmt.Errorf("telegram: %s %q is not a Telegram message id", field, s)}
	}
	return id, nil
}

// deliveryError classifies a failed call for the outbox: 429 is retried
// after Telegram's retry_after; a refusal (400 such as "chat not found",
// 401, 403 "bot was blocked by the user", 404, a group migrated to a
// supergroup) is final; anything else (5xx, network, an answer that is
// not the Bot API's JSON) may pass on a retry. The library maps every
// 4xx Telegram uses to a typed error, so the rest is safe to retry.
func deliveryError(err error) *moltgate.DeliveryError {
	var tooMany *bot.TooManyRequestsError
	var migrated *bot.MigrateError
	switch {
	case errors.As(err, &tooMany):
		return &moltgate.DeliveryError{Err: err, Retryable: true, RetryAfter: time.Duration(tooMany.RetryAfter) * time.Second}
	case errors.As(err, &migrated),
		errors.Is(err, bot.ErrorBadRequest),
		errors.Is(err, bot.ErrorUnauthorized),
		errors.Is(err, bot.ErrorForbidden),
		errors.Is(err, bot.ErrorNotFound),
		errors.Is(err, bot.ErrorConflict):
		return &moltgate.DeliveryError{Err: err}
	default:
		return &moltgate.DeliveryError{Err: err, Retryable: true}
	}
}
