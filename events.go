package moltgate

import (
	"encoding/json"
	"fmt"
)

// Event types. Dotted, past tense; the first segment names the area so that
// a type prefix ("device.") selects an area in queries.
const (
	EventGatewayStarted   = "gateway.started"
	EventGatewayRestarted = "gateway.restarted"
	EventConfigApplied    = "config.applied"

	EventDevicePairingRequested = "device.pairing.requested"
	EventDevicePairingApproved  = "device.pairing.approved"
	EventDevicePairingRejected  = "device.pairing.rejected"
	EventDeviceRemoved          = "device.removed"
	EventDeviceTokenRotated     = "device.token.rotated"
	EventDeviceTokenRevoked     = "device.token.revoked"

	EventChannelPairingRequested = "channel.pairing.requested"
	EventChannelPairingApproved  = "channel.pairing.approved"
	EventChannelPairingRejected  = "channel.pairing.rejected"
	EventChannelAllowlistChanged = "channel.allowlist.changed"
	EventChannelDeliverySent     = "channel.delivery.sent"
	EventChannelDeliveryFailed   = "channel.delivery.failed"

	EventWorkspaceFileWritten = "workspace.file.written"
	EventWorkspaceFileDeleted = "workspace.file.deleted"

	EventBrowserSessionOpened = "browser.session.opened"
	EventBrowserSessionClosed = "browser.session.closed"

	EventChatMessageAdded = "chat.message.added"
	EventChatRunStarted   = "chat.run.started"
	EventChatRunFinished  = "chat.run.finished"
	EventSessionReset     = "session.reset"
)

// EventTypes lists every type in the catalogue above.
var EventTypes = []string{
	EventGatewayStarted, EventGatewayRestarted, EventConfigApplied,
	EventDevicePairingRequested, EventDevicePairingApproved, EventDevicePairingRejected,
	EventDeviceRemoved, EventDeviceTokenRotated, EventDeviceTokenRevoked,
	EventChannelPairingRequested, EventChannelPairingApproved, EventChannelPairingRejected,
	EventChannelAllowlistChanged, EventChannelDeliverySent, EventChannelDeliveryFailed,
	EventChatMessageAdded, EventChatRunStarted, EventChatRunFinished, EventSessionReset,
	EventBrowserSessionOpened, EventBrowserSessionClosed,
	EventWorkspaceFileWritten, EventWorkspaceFileDeleted,
}

// Stream names. One stream per aggregate keeps optimistic concurrency local:
// two devices never clash, two writers of the config always do.
const (
	StreamGateway = "gateway"
	StreamConfig  = "config"
)

// DeviceStream is the stream of one device's pairing and token events.
func DeviceStream(deviceID string) string { return "device:" + deviceID }

// ChannelStream is the stream of one chat platform's access events.
func ChannelStream(channel string) string { return "channel:" + channel }

// SessionStream is the stream of one chat session's transcript and runs.
func SessionStream(sessionKey string) string { return "session:" + sessionKey }

// DeliveryStream is where a channel's delivery records go: apart from its
// access stream, so the outbox never conflicts with pairing decisions.
func DeliveryStream(channel string) string { return "delivery:" + channel }

// MainSessionKey is the owner's main session, in OpenClaw's scheme
// (agent:<agentId>:<mainKey>).
const MainSessionKey = "agent:main:main"

// CanonicalSessionKey maps OpenClaw's short alias "main" onto the main
// session's key, so the web chat, the CLI and the channels share it.
func CanonicalSessionKey(key string) string {
	if key == "main" {
		return MainSessionKey
	}
	return key
}

// SessionKeyFromStream is the inverse of SessionStream; ok is false for
// streams that are not sessions.
func SessionKeyFromStream(stream string) (key string, ok bool) {
	const p = "session:"
	if len(stream) > len(p) && stream[:len(p)] == p {
		return stream[len(p):], true
	}
	return "", false
}

// GatewayStartedData is the payload of gateway.started: one per boot, so the
// log tells when the gateway ran, what it restored and how long start took.
type GatewayStartedData struct {
	Version        string `json:"version"`
	RestoredFrom   string `json:"restoredFrom,omitempty"` // replica description, empty when the local file was used
	EventsReplayed int64  `json:"eventsReplayed"`
	StartupMs      int64  `json:"startupMs"`
	Replica        string `json:"replica"` // "none" or a description without credentials
}

// GatewayRestartedData is the payload of gateway.restarted: the agent (and
// channel adapters) restarted in-process from the admin.
type GatewayRestartedData struct {
	RunsAborted int `json:"runsAborted"`
}

// ConfigAppliedData is the payload of config.applied: the whole new document
// (secrets sealed or absent, never plaintext) and its hash. BaseHash is the
// hash the writer started from (optimistic concurrency).
type ConfigAppliedData struct {
	Document json.RawMessage `json:"document"`
	Hash     string          `json:"hash"`
	BaseHash string          `json:"baseHash,omitempty"`
	Note     string          `json:"note,omitempty"` // "revert to seq 12", "patch", …
}

// DevicePairingRequestedData is the payload of device.pairing.requested: an
// unknown device asked to connect and waits in the approval queue.
type DevicePairingRequestedData struct {
	RequestID    string   `json:"requestId"`
	DeviceID     string   `json:"deviceId"`
	PublicKey    string   `json:"publicKey"` // base64url raw Ed25519 key: public, not a secret
	DisplayName  string   `json:"displayName,omitempty"`
	Platform     string   `json:"platform,omitempty"`
	DeviceFamily string   `json:"deviceFamily,omitempty"`
	ClientID     string   `json:"clientId,omitempty"`
	ClientMode   string   `json:"clientMode,omitempty"`
	Role         string   `json:"role"`
	Scopes       []string `json:"scopes"`
	RemoteIP     string   `json:"remoteIp,omitempty"`
	ExpiresAtMs  int64    `json:"expiresAtMs"`
}

// DevicePairingApprovedData is the payload of device.pairing.approved.
// TokenHash is the SHA-256 of the device token handed to the device; the
// token itself never enters the log.
type DevicePairingApprovedData struct {
	RequestID string   `json:"requestId"`
	DeviceID  string   `json:"deviceId"`
	Role      string   `json:"role"`
	Scopes    []string `json:"scopes"`
	TokenHash string   `json:"tokenHash,omitempty"`
}

// DevicePairingRejectedData is the payload of device.pairing.rejected.
type DevicePairingRejectedData struct {
	RequestID string `json:"requestId"`
	DeviceID  string `json:"deviceId"`
	Reason    string `json:"reason,omitempty"`
}

// DeviceRemovedData is the payload of device.removed.
type DeviceRemovedData struct {
	DeviceID string `json:"deviceId"`
	Reason   string `json:"reason,omitempty"`
}

// DeviceTokenRotatedData is the payload of device.token.rotated.
type DeviceTokenRotatedData struct {
	DeviceID  string `json:"deviceId"`
	TokenHash string `json:"tokenHash"`
}

// DeviceTokenRevokedData is the payload of device.token.revoked.
type DeviceTokenRevokedData struct {
	DeviceID string `json:"deviceId"`
}

// ChannelPairingRequestedData is the payload of channel.pairing.requested: a
// stranger wrote to the bot on a chat platform and got a pairing code.
type ChannelPairingRequestedData struct {
	Channel     string `json:"channel"` // telegram, discord, slack
	SenderID    string `json:"senderId"`
	SenderName  string `json:"senderName,omitempty"`
	Code        string `json:"code"`
	ExpiresAtMs int64  `json:"expiresAtMs"`
	// Origin is the chat the request came from, so the sender can be told
	// when the owner approves.
	Origin *ChannelAddress `json:"origin,omitempty"`
}

// ChannelPairingResolvedData is the payload of channel.pairing.approved and
// channel.pairing.rejected.
type ChannelPairingResolvedData struct {
	Channel  string `json:"channel"`
	SenderID string `json:"senderId"`
	Code     string `json:"code"`
	// Notify asks the channel to tell the sender they were approved.
	Notify bool `json:"notify,omitempty"`
}

// ChannelAllowlistChangedData is the payload of channel.allowlist.changed.
type ChannelAllowlistChangedData struct {
	Channel string   `json:"channel"`
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// ChannelDeliveryData is the payload of channel.delivery.sent and
// channel.delivery.failed: one attempt of the outbox to deliver a message
// to a chat. DeliveryID is the id of the event that asked for it (a run's
// end, a pairing request, an approval).
type ChannelDeliveryData struct {
	DeliveryID string   `json:"deliveryId"`
	Kind       string   `json:"kind"`
	Channel    string   `json:"channel"`
	ChatID     string   `json:"chatId"`
	ThreadID   string   `json:"threadId,omitempty"`
	Sender     string   `json:"sender,omitempty"` // the person answered, when known
	SessionKey string   `json:"sessionKey,omitempty"`
	RunID      string   `json:"runId,omitempty"`
	MessageIDs []string `json:"messageIds,omitempty"` // the platform's ids of what was sent
	Attempt    int      `json:"attempt"`
	Error      string   `json:"error,omitempty"`
	// Final marks a failure the outbox gives up on (not retryable, or out
	// of attempts): the delivery is no longer pending.
	Final bool `json:"final,omitempty"`
}

// BrowserSessionData is the payload of browser.session.opened and
// .closed: a CDP client (a Puppeteer or Playwright script) drove the
// shared browser. Sessions are recorded, not their frames.
type BrowserSessionData struct {
	SessionID  string `json:"sessionId"`
	TargetType string `json:"targetType"` // browser, page
	TargetID   string `json:"targetId,omitempty"`
	RemoteIP   string `json:"remoteIp,omitempty"`
	// Set on close.
	DurationMs int64  `json:"durationMs,omitempty"`
	FramesIn   int64  `json:"framesIn,omitempty"`
	BytesIn    int64  `json:"bytesIn,omitempty"`
	FramesOut  int64  `json:"framesOut,omitempty"`
	BytesOut   int64  `json:"bytesOut,omitempty"`
	CloseCode  int    `json:"closeCode,omitempty"`
	ClosedBy   string `json:"closedBy,omitempty"`
}

// WorkspaceFileData is the payload of workspace.file.written (with its
// content) and workspace.file.deleted.
type WorkspaceFileData struct {
	Path    string `json:"path"`
	Content string `json:"content,omitempty"`
}

// StreamWorkspace is the stream of the agent's workspace files.
const StreamWorkspace = "workspace"

// BrowserStream is the stream of CDP session events.
const BrowserStream = "browser"

// Usage is the token usage a provider reported for one reply.
type Usage struct {
	InputTokens  int64 `json:"inputTokens"`
	OutputTokens int64 `json:"outputTokens"`
}

// ChatMessageAddedData is the payload of chat.message.added (schema 2).
// Schema 1 called Content "text"; see upcasters.
type ChatMessageAddedData struct {
	SessionKey string `json:"sessionKey"`
	SessionID  string `json:"sessionId,omitempty"`
	MessageID  string `json:"messageId"`
	Role       string `json:"role"`    // user, assistant, tool, system
	Content    string `json:"content"` // empty on a tool message: its text is Tool.Summary
	RunID      string `json:"runId,omitempty"`
	Model      string `json:"model,omitempty"`
	Usage      *Usage `json:"usage,omitempty"`
	// Origin is the chat-platform chat a user message came from, or an
	// assistant message is to be delivered to.
	Origin *ChannelAddress `json:"origin,omitempty"`
	// Tool is set on role "tool": a call the model made and its outcome.
	Tool *ToolCall `json:"tool,omitempty"`
}

// ChatRunStartedData is the payload of chat.run.started.
type ChatRunStartedData struct {
	SessionKey     string `json:"sessionKey"`
	RunID          string `json:"runId"`
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	Model          string `json:"model,omitempty"`
	// Origin is the chat-platform chat the user's message came from: the
	// reply is delivered there.
	Origin *ChannelAddress `json:"origin,omitempty"`
	// Owner: the owner sent the message, so owner-only tools are offered.
	Owner bool `json:"owner,omitempty"`
	// ReplyToID is the platform id of the message the run answers.
	ReplyToID string `json:"replyToId,omitempty"`
}

// Run outcomes for ChatRunFinishedData.Status.
const (
	RunCompleted = "completed"
	RunAborted   = "aborted"
	RunFailed    = "failed"
	// RunInterrupted closes a run the gateway was writing when it died
	// (a crash, kill -9, a lost container): found open at the next start.
	RunInterrupted = "interrupted"
)

// ChatRunFinishedData is the payload of chat.run.finished.
type ChatRunFinishedData struct {
	SessionKey string `json:"sessionKey"`
	RunID      string `json:"runId"`
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
	// ReplyEventID is the id of the event holding the assistant's reply,
	// when there is one: the outbox reads it from there.
	ReplyEventID string `json:"replyEventId,omitempty"`
}

// SessionResetData is the payload of session.reset: the session key keeps
// its stream, later messages belong to a new session id.
type SessionResetData struct {
	SessionKey   string `json:"sessionKey"`
	NewSessionID string `json:"newSessionId"`
}

// currentSchemas lists the payload version that code writes today, for the
// types that have had more than one. Everything else is at schema 1.
var currentSchemas = map[string]int{
	EventChatMessageAdded: 2,
}

// CurrentSchema returns the payload version written today for typ.
func CurrentSchema(typ string) int {
	if v, ok := currentSchemas[typ]; ok {
		return v
	}
	return 1
}

// upcaster turns a payload of schema n into schema n+1.
type upcaster func(json.RawMessage) (json.RawMessage, error)

// upcasters is keyed by type and the schema it upgrades from. A static table
// rather than a registry: the catalogue of payloads lives here and nowhere else.
var upcasters = map[string]map[int]upcaster{
	EventChatMessageAdded: {1: upcastChatMessageV1},
}

// upcastChatMessageV1 renames the schema 1 field "text" to "content".
func upcastChatMessageV1(data json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if t, ok := m["text"]; ok {
		m["content"] = t
		delete(m, "text")
	}
	return json.Marshal(m)
}

// Upcast brings e's payload to the current schema of its type. Events of a
// type no code knows, or already current, are returned unchanged: the log
// never drops what it does not understand.
func Upcast(e Event) (Event, error) {
	steps := upcasters[e.Type]
	for e.Schema < CurrentSchema(e.Type) {
		up, ok := steps[e.Schema]
		if !ok {
			return e, fmt.Errorf("no upcaster for %s schema %d", e.Type, e.Schema)
		}
		data, err := up(e.Data)
		if err != nil {
			return e, fmt.Errorf("cannot upcast %s schema %d at seq %d: %w", e.Type, e.Schema, e.Seq, err)
		}
		e.Data, e.Schema = data, e.Schema+1
	}
	return e, nil
}
