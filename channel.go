package moltgate

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Channel is one chat platform connection (Telegram, Discord, Slack). An
// adapter speaks the platform's protocol and nothing else: who may talk to
// the assistant (DM policy, pairing), which session a message belongs to and
// the delivery outbox are decided by the router that drives it, so the three
// adapters stay small and alike.
type Channel interface {
	// Name is the platform: "telegram", "discord" or "slack".
	Name() string
	// Run connects and hands every inbound message to handle until ctx
	// ends (then it returns nil). Transient failures (a dropped
	// connection, a 5xx, a 409 from a second poller) are retried inside
	// Run with backoff and jitter and reported through Status; Run returns
	// an error only when retrying cannot help, such as a token the
	// platform refuses.
	//
	// handle is called from one goroutine per adapter, in the platform's
	// order; an adapter that must acknowledge within a deadline (Slack's
	// 3 s) acknowledges before calling it.
	Run(ctx context.Context, handle InboundHandler) error
	// Send delivers a message, split at the platform's length limit at
	// sensible boundaries (paragraphs, lines, sentences, words), and
	// returns the platform ids of the messages it sent. A failure that a
	// retry may fix (429, 5xx, network) is a *DeliveryError with
	// Retryable set (and RetryAfter when the platform said how long).
	Send(ctx context.Context, msg OutboundMessage) (ids []string, err error)
	// Typing shows the typing indicator in a chat, best effort.
	Typing(ctx context.Context, to ChannelAddress) error
	// Status reports the connection's state for the admin, `status` and
	// OpenClaw's channels.status.
	Status() ChannelStatus
}

// InboundHandler receives a message from a chat platform. An error means
// the message was not recorded; adapters log it and go on.
type InboundHandler func(ctx context.Context, msg InboundMessage) error

// ChannelNames are the chat platforms moltgate has adapters for, in the
// order they are shown.
var ChannelNames = []string{"telegram", "discord", "slack"}

// ChannelAddress says where a message came from or goes to.
type ChannelAddress struct {
	Channel   string `json:"channel"`             // telegram, discord, slack
	AccountID string `json:"accountId,omitempty"` // the bot's own id (or Slack team id)
	ChatID    string `json:"chatId"`              // Telegram chat id, Discord channel id, Slack channel id
	ThreadID  string `json:"threadId,omitempty"`  // Telegram message_thread_id, Slack thread_ts
	// Sender is the platform's id of the person who wrote (on an inbound
	// message's origin) or who is being answered. It is not needed to
	// deliver; it lets the log be filtered by person (EventFilter.Sender).
	Sender string `json:"sender,omitempty"`
}

// InboundMessage is one message a person sent to the bot.
type InboundMessage struct {
	ChannelAddress
	// MessageID is the platform's id of the message, unique within the
	// chat; the router derives event ids from it, so an update delivered
	// twice (a restart before the platform saw the acknowledgement) is
	// recorded once.
	MessageID  string `json:"messageId"`
	SenderID   string `json:"senderId"`
	SenderName string `json:"senderName,omitempty"`
	Text       string `json:"text"`
	Direct     bool   `json:"direct"`              // a direct message (DM), not a group or channel
	Mentioned  bool   `json:"mentioned,omitempty"` // the bot was mentioned (or replied to) in a group
	ReplyToID  string `json:"replyToId,omitempty"` // the message it answers, if any
	// Attachments counts the parts that are not text (photos, files,
	// stickers): the router tells the sender they are not read yet.
	Attachments int       `json:"attachments,omitempty"`
	SentAt      time.Time `json:"sentAt,omitzero"`
}

// OutboundMessage is a message the assistant sends to a chat.
type OutboundMessage struct {
	ChannelAddress
	Text      string `json:"text"`
	ReplyToID string `json:"replyToId,omitempty"` // send as a reply to this platform message
	// Skip is how many of the pieces SplitText makes of Text were already
	// delivered by an earlier attempt that failed part way: they are not
	// sent again (SplitText is deterministic).
	Skip int `json:"skip,omitempty"`
}

// Delivery kinds.
const (
	DeliveryReply       = "reply"        // the assistant's answer (or why there is none)
	DeliveryPairingCode = "pairing-code" // a stranger's pairing code
	DeliveryApproved    = "approved"     // the owner approved a stranger
)

// Delivery is a message the outbox owes a chat: asked for by an event (a
// run's end, a pairing request, an approval), pending until it is sent or
// given up on. Pending deliveries survive restarts (they are read models
// of the log), so nothing asked for is lost.
type Delivery struct {
	ID        string         `json:"id"` // the event that asked for it
	Kind      string         `json:"kind"`
	To        ChannelAddress `json:"to"`
	ReplyToID string         `json:"replyToId,omitempty"`
	// For DeliveryReply: the session, run, how it ended, and the event
	// holding the reply (empty when the run produced none).
	SessionKey   string `json:"sessionKey,omitempty"`
	RunID        string `json:"runId,omitempty"`
	RunStatus    string `json:"runStatus,omitempty"`
	RunError     string `json:"runError,omitempty"`
	ReplyEventID string `json:"replyEventId,omitempty"`
	// For DeliveryPairingCode and DeliveryApproved.
	Code string `json:"code,omitempty"`
	// Sent counts the pieces already delivered (see OutboundMessage.Skip).
	Sent        int       `json:"sent,omitempty"`
	Attempts    int       `json:"attempts,omitempty"`
	RequestedAt time.Time `json:"requestedAt"`
}

// OutboxQueries reads what the outbox still owes.
type OutboxQueries interface {
	// PendingDeliveries returns the deliveries not yet sent or given up
	// on, oldest first.
	PendingDeliveries() []Delivery
}

// DeliveryService records the outcome of a delivery attempt.
type DeliveryService interface {
	// RecordDelivery records an attempt: sent (err nil), or failed, final
	// when the outbox gives up. messageIDs are the platform ids of what
	// was sent, also on a partial failure.
	RecordDelivery(ctx context.Context, d Delivery, messageIDs []string, err error, final bool) error
}

// Channel states for ChannelStatus.State.
const (
	ChannelStopped    = "stopped"    // not configured, or stopped on purpose
	ChannelConnecting = "connecting" // starting, or reconnecting after a failure
	ChannelRunning    = "running"    // connected and receiving
	ChannelFailed     = "failed"     // gave up: the error says why (a refused token)
)

// ChannelStatus is a channel's state as people see it.
type ChannelStatus struct {
	Channel   string    `json:"channel"`
	State     string    `json:"state"`
	Error     string    `json:"error,omitempty"`     // the last failure, never a token
	AccountID string    `json:"accountId,omitempty"` // the bot's id on the platform
	BotName   string    `json:"botName,omitempty"`   // the bot's user name on the platform
	Since     time.Time `json:"since,omitzero"`      // when State last changed
	// LastActivity is the last sign of life from the platform (a poll
	// answered, a heartbeat acknowledged, a message): the router's
	// watchdog restarts a channel that has been silent too long.
	LastActivity time.Time `json:"lastActivity,omitzero"`
	Reconnects   int       `json:"reconnects"`
	// DMPolicy is the channel's policy for direct messages (set by the
	// router's manager, not the adapter).
	DMPolicy string `json:"dmPolicy,omitempty"`
}

// DeliveryError is a failed Send. Retryable failures are retried by the
// outbox, after RetryAfter when the platform gave one.
type DeliveryError struct {
	Err        error
	Retryable  bool
	RetryAfter time.Duration
}

func (e *DeliveryError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("%v (retry after %s)", e.Err, e.RetryAfter)
	}
	return e.Err.Error()
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// AsDeliveryError returns err as a *DeliveryError; other errors are
// reported as not retryable.
func AsDeliveryError(err error) *DeliveryError {
	var d *DeliveryError
	if errors.As(err, &d) {
		return d
	}
	return &DeliveryError{Err: err}
}
