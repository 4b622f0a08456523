package channels

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// Router turns inbound chat-platform messages into runs: it applies the
// channel's DM policy, gives strangers a pairing code, picks the session,
// and records the message with an idempotency key derived from the
// platform's message id, so an update delivered twice is recorded once.
type Router struct {
	Chat    moltgate.ChatService
	Access  moltgate.ChannelAccessService
	Queries moltgate.ChannelQueries
	// ChannelSettings returns a channel's settings, ok when it is enabled:
	// the Manager's, which it keeps up to date, so a message costs no
	// config resolution.
	ChannelSettings func(name string) (s Settings, ok bool)
	// DMScope returns session.dmScope from the config.
	DMScope func() string
	// Channel returns a running adapter (for typing indicators and the
	// note about attachments).
	Channel func(name string) moltgate.Channel
	// Active returns the runs queued or running in a session: the typing
	// indicator is kept up while the reply's run is among them.
	Active func(sessionKey string) []string
	Logger *slog.Logger
}

// AttachmentsNote answers a message that has only attachments.
const AttachmentsNote = "I can only read text for now: attachments are not supported yet. Please write your message as text."

// typingEvery is how often the typing indicator is renewed while a run is
// going (platforms let it lapse after about five seconds); typingFor
// bounds it.
const (
	typingEvery = 4 * time.Second
	typingFor   = 2 * time.Minute
)

// Handle implements moltgate.InboundHandler.
func (r *Router) Handle(ctx context.Context, msg moltgate.InboundMessage) error {
	s, ok := r.ChannelSettings(msg.Channel)
	if !ok || !s.Enabled {
		return nil
	}
	log := r.logger().With("channel", msg.Channel, "sender", msg.SenderID, "chat", msg.ChatID)
	if strings.TrimSpace(msg.Text) == "" && msg.Attachments == 0 {
		return nil // a mention alone, an empty update: nothing to answer
	}
	if !msg.Direct && s.RequireMention && !msg.Mentioned {
		return nil // group chatter not addressed to the bot
	}
	owner := s.Owner(msg.SenderID)
	allowed := owner || s.Open() || r.Queries.Allowed(msg.Channel, msg.SenderID)
	switch s.DMPolicy {
	case moltgate.DMDisabled:
		if msg.Direct {
			return nil
		}
	case moltgate.DMOpen:
		allowed = true
	}
	if !allowed {
		if msg.Direct && s.DMPolicy == moltgate.DMPairing {
			return r.pair(ctx, msg, log)
		}
		log.Debug("message from a sender who is not allowed, ignored")
		return nil
	}
	if strings.TrimSpace(msg.Text) == "" {
		r.notice(ctx, msg, AttachmentsNote)
		return nil
	}
	key := SessionKey(r.DMScope(), msg, owner)
	addr := msg.ChannelAddress
	addr.Sender = msg.SenderID
	meta := moltgate.Meta{Actor: msg.Channel + ":" + msg.SenderID, Source: moltgate.SourceChannel}
	receipt, err := r.Chat.SendMessage(ctx, moltgate.RunRequest{
		SessionKey: key, Message: msg.Text, Origin: &addr, Owner: owner, ReplyToID: msg.MessageID,
		IdempotencyKey: strings.Join([]string{msg.Channel, msg.AccountID, msg.ChatID, msg.MessageID}, ":"),
	}, meta)
	if err != nil {
		// A run the agent refused is recorded as finished, and the outbox
		// tells the sender; anything else is the adapter's to log.
		return err
	}
	if receipt.Created {
		go r.typing(addr, key, receipt.RunID)
	}
	return nil
}

// pair gives a stranger a pairing code (the outbox sends it, once per
// code: a pending sender writing again gets no new code and no new reply).
func (r *Router) pair(ctx context.Context, msg moltgate.InboundMessage, log *slog.Logger) error {
	addr := msg.ChannelAddress
	addr.Sender = msg.SenderID
	code, created, err := r.Access.RequestChannelPairing(ctx, msg.Channel, msg.SenderID, msg.SenderName, &addr,
		moltgate.Meta{Actor: msg.Channel + ":" + msg.SenderID, Source: moltgate.SourceChannel})
	switch {
	case moltgate.ErrorCode(err) == moltgate.EUNAVAILABLE:
		log.Warn("pairing request refused", "error", err) // too many pending: no reply, so a flood gets none
		return nil
	case err != nil:
		return err
	case created:
		log.Info("pairing code issued", "code", code)
	}
	return nil
}

// notice sends a short note straight to the chat, best effort.
func (r *Router) notice(ctx context.Context, msg moltgate.InboundMessage, text string) {
	ch := r.Channel(msg.Channel)
	if ch == nil {
		return
	}
	if _, err := ch.Send(ctx, moltgate.OutboundMessage{ChannelAddress: msg.ChannelAddress, Text: text, ReplyToID: msg.MessageID}); err != nil {
		r.logger().Warn("cannot send a notice", "channel", msg.Channel, "error", err)
	}
}

// typing keeps the typing indicator up while the run is going.
func (r *Router) typing(to moltgate.ChannelAddress, sessionKey, runID string) {
	deadline := time.Now().Add(typingFor)
	for time.Now().Before(deadline) {
		ch := r.Channel(to.Channel)
		if ch == nil || !slices.Contains(r.Active(sessionKey), runID) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = ch.Typing(ctx, to) // best effort
		cancel()
		time.Sleep(typingEvery)
	}
}

func (r *Router) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.Default()
	}
	return r.Logger
}
