package moltgate

import (
	"context"
	"encoding/json"
	"time"
)

// The write side, as the adapters (api, channels, agent) see it. The
// commands package implements these interfaces: it validates against the
// read models, appends events and waits until the read models have applied
// them, so a caller always reads its own write.

// PairingRequest is what an unknown device told the gateway when it asked
// to connect.
type PairingRequest struct {
	DeviceID     string
	PublicKey    string
	DisplayName  string
	Platform     string
	DeviceFamily string
	ClientID     string
	ClientMode   string
	Role         string
	Scopes       []string
	RemoteIP     string
}

// DeviceService changes device pairing state.
type DeviceService interface {
	// RequestPairing records (or refreshes) a pending request and returns
	// its id and whether it is new.
	RequestPairing(ctx context.Context, req PairingRequest, meta Meta) (requestID string, created bool, err error)
	// ApprovePairing approves a pending request; approving one that was
	// already approved returns the same device (idempotent).
	ApprovePairing(ctx context.Context, requestID string, meta Meta) (deviceID string, err error)
	RejectPairing(ctx context.Context, requestID, reason string, meta Meta) error
	RemoveDevice(ctx context.Context, deviceID, reason string, meta Meta) error
	// IssueToken creates a new device token, records only its hash, and
	// returns the token itself, which the caller hands to the device once.
	IssueToken(ctx context.Context, deviceID string, meta Meta) (token string, err error)
	RevokeToken(ctx context.Context, deviceID string, meta Meta) error
}

// ConfigIssue is one reason a config document was refused.
type ConfigIssue struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// ConfigService changes the configuration.
type ConfigService interface {
	// ApplyConfig replaces the document. baseHash must be the current hash
	// once a config exists (ECONFLICT otherwise); an invalid document is
	// refused with EINVALID and Details["issues"].
	ApplyConfig(ctx context.Context, doc json.RawMessage, baseHash string, meta Meta) (hash string, err error)
	// PatchConfig applies a JSON merge patch (RFC 7386) to the document.
	PatchConfig(ctx context.Context, patch json.RawMessage, baseHash string, meta Meta) (hash string, err error)
}

// ChatMessage is one message of a transcript.
type ChatMessage struct {
	ID        string    `json:"id"`
	Role      string    `json:"role"`
	Content   string    `json:"content"`
	RunID     string    `json:"runId,omitempty"`
	Model     string    `json:"model,omitempty"`
	Usage     *Usage    `json:"usage,omitempty"`
	Timestamp time.Time `json:"timestamp"`
}

// RunRequest asks for a new assistant run in a session.
type RunRequest struct {
	SessionKey     string
	Message        string
	IdempotencyKey string
}

// ChatService records conversations.
type ChatService interface {
	// StartRun records the user's message and a run start. The same
	// idempotency key in the same session returns the first run's id with
	// created false: a retried send never starts a second run.
	StartRun(ctx context.Context, req RunRequest, meta Meta) (runID string, created bool, err error)
	// FinishRun records the assistant's reply (when there is one) and how
	// the run ended.
	FinishRun(ctx context.Context, sessionKey, runID string, reply *ChatMessage, status, errMsg string, meta Meta) error
	// Inject adds a message to a transcript without a run.
	Inject(ctx context.Context, sessionKey string, msg ChatMessage, meta Meta) (ChatMessage, error)
	// ResetSession starts a new session id under the same key.
	ResetSession(ctx context.Context, sessionKey string, meta Meta) (sessionID string, err error)
	// Transcript returns the current session's messages, oldest first, at
	// most limit (0 = all) of the newest.
	Transcript(ctx context.Context, sessionKey string, limit int) ([]ChatMessage, error)
}

// ChannelAccessService decides who may talk to the assistant on the chat
// platforms (Telegram, Discord, Slack).
type ChannelAccessService interface {
	// RequestChannelPairing gives a stranger a pairing code to show the owner.
	RequestChannelPairing(ctx context.Context, channel, senderID, senderName string, meta Meta) (code string, err error)
	ApproveChannelPairing(ctx context.Context, channel, code string, meta Meta) error
	RejectChannelPairing(ctx context.Context, channel, code string, meta Meta) error
	ChangeAllowlist(ctx context.Context, channel string, add, remove []string, meta Meta) error
}
