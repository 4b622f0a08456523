package moltgate

import (
	"context"
	"encoding/json"
	"sort"
	"time"
)

// The write side, as the adapters (api, channels, agent) see it. The
// commands package implements these interfaces: it validates against the
// read models, appends its events with the stream's expected version (two
// writers never both win: the loser gets ECONFLICT or a re-decided answer)
// and waits until the read models have applied them, so a caller always
// reads its own write.

// DeviceService changes device pairing state.
type DeviceService interface {
	// RequestPairing records a pending request for the device described by
	// req (its identity and what it asks for) and returns the request id
	// and whether it is new. A device that asks again while its request is
	// pending keeps its request.
	RequestPairing(ctx context.Context, req Device, meta Meta) (requestID string, created bool, err error)
	// ApprovePairing approves a pending request. The approver may grant
	// only scopes it holds itself (grantor; OwnerScopes for the owner).
	// Approving a request that is already approved returns the device
	// (idempotent); one that was rejected is a conflict.
	ApprovePairing(ctx context.Context, requestID string, grantor []string, meta Meta) (Device, error)
	RejectPairing(ctx context.Context, requestID, reason string, meta Meta) (Device, error)
	RemoveDevice(ctx context.Context, deviceID, reason string, meta Meta) error
	// IssueToken creates a new device token, records only its hash, and
	// returns the token itself, which the caller hands to the device once.
	IssueToken(ctx context.Context, deviceID string, meta Meta) (token string, err error)
	RevokeToken(ctx context.Context, deviceID string, meta Meta) error
}

// ConfigIssue is one reason a config document was refused, or a warning.
type ConfigIssue struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// SortIssues orders config issues by path, keeping the order of issues
// on one path.
func SortIssues(issues []ConfigIssue) {
	sort.SliceStable(issues, func(i, j int) bool { return issues[i].Path < issues[j].Path })
}

// ConfigResult is the outcome of a config write.
type ConfigResult struct {
	Hash    string `json:"hash"`
	Changed bool   `json:"changed"` // false: the document was already current, no event
	// Warnings do not stop the write: a ${NAME} reference to a variable
	// that is not set, a secret that cannot be opened here.
	Warnings []ConfigIssue `json:"warnings,omitempty"`
}

// ConfigService changes the configuration. Plaintext secrets in a document
// are sealed before it is stored; RedactedMarker at a path keeps the value
// stored there.
type ConfigService interface {
	// ApplyConfig replaces the document. baseHash must be the current hash
	// once a config exists (ECONFLICT otherwise); an invalid document is
	// refused with EINVALID and Details["issues"].
	ApplyConfig(ctx context.Context, doc json.RawMessage, baseHash string, meta Meta) (ConfigResult, error)
	// PatchConfig applies a JSON merge patch (RFC 7386) to the document.
	PatchConfig(ctx context.Context, patch json.RawMessage, baseHash string, meta Meta) (ConfigResult, error)
	// RevertConfig applies the document stored at seq again, as a new version.
	RevertConfig(ctx context.Context, seq int64, baseHash string, meta Meta) (ConfigResult, error)
	// CheckConfig says what applying doc would say, without applying it.
	CheckConfig(ctx context.Context, doc json.RawMessage) (issues, warnings []ConfigIssue)
}

// ChatMessage is one message of a transcript. A tool call made during a
// run is a message with role "tool" and Tool set.
type ChatMessage struct {
	ID        string          `json:"id"`
	Role      string          `json:"role"`
	Content   string          `json:"content"`
	RunID     string          `json:"runId,omitempty"`
	Model     string          `json:"model,omitempty"`
	Usage     *Usage          `json:"usage,omitempty"`
	Origin    *ChannelAddress `json:"origin,omitempty"`
	Tool      *ToolCall       `json:"tool,omitempty"`
	Timestamp time.Time       `json:"timestamp"`
}

// Tool call outcomes for ToolCall.Status.
const (
	ToolOK      = "ok"
	ToolError   = "error"   // the tool ran and failed
	ToolRefused = "refused" // not allowed here (a non-owner session, a private address)
)

// ToolCall is one tool the model called during a run and a summary of
// what came back. It is recorded as an event (chat.message.added, role
// "tool"), so it shows in the transcript, the replay and the web chat.
type ToolCall struct {
	ID    string          `json:"id"`              // the provider's call id
	Name  string          `json:"name"`            // browser, web_fetch, gateway_config, …
	Input json.RawMessage `json:"input,omitempty"` // the arguments, secrets redacted
	// Status is ToolOK, ToolError or ToolRefused.
	Status  string `json:"status"`
	Summary string `json:"summary,omitempty"` // what the tool returned, shortened for people
	Error   string `json:"error,omitempty"`
	Image   *Media `json:"image,omitempty"` // a screenshot the tool took
}

// Media is an image a tool produced.
type Media struct {
	MimeType string `json:"mimeType"` // image/png, image/jpeg
	Data     []byte `json:"data"`     // base64 in JSON
	Width    int    `json:"width,omitempty"`
	Height   int    `json:"height,omitempty"`
}

// RunRequest asks for a new assistant run in a session.
type RunRequest struct {
	SessionKey     string
	Message        string
	IdempotencyKey string
	// Origin is the chat a message from a chat platform came from; the
	// reply is delivered back there.
	Origin *ChannelAddress
	// Owner says the owner sent it (see QueuedRun.Owner).
	Owner bool
	// ReplyToID is the platform id of the message, answered as a reply.
	ReplyToID string
}

// RunReceipt says what became of a RunRequest.
type RunReceipt struct {
	RunID string `json:"runId"`
	// Created is false when the idempotency key named a run that already
	// existed: the answer is about that run.
	Created bool `json:"created"`
	// State is "queued" (accepted and waiting or running) or how the run
	// ended (completed, aborted, failed, interrupted).
	State string `json:"state"`
}

// ChatService records conversations.
type ChatService interface {
	// SendMessage records the user's message and starts a run for it, in
	// one operation: the run is queued for the agent, or recorded as not
	// started when the agent refuses it. The same idempotency key in the
	// same session answers with the first run (queued again if it never
	// started), so a retried send never starts a second run and never
	// strands one.
	SendMessage(ctx context.Context, req RunRequest, meta Meta) (RunReceipt, error)
	// FinishRun records the assistant's reply (when there is one) and how
	// the run ended. A run that is not open (finished already) is left as
	// it is.
	FinishRun(ctx context.Context, sessionKey, runID string, reply *ChatMessage, status, errMsg string, meta Meta) error
	// RecordToolCall adds a tool call the model made during a run, and
	// what it returned, to the transcript. Recording the same call (run
	// and call id) twice changes nothing.
	RecordToolCall(ctx context.Context, sessionKey, runID string, call ToolCall, meta Meta) error
	// Inject adds a message to a transcript without a run.
	Inject(ctx context.Context, sessionKey string, msg ChatMessage, meta Meta) (ChatMessage, error)
	// ResetSession starts a new session id under the same key.
	ResetSession(ctx context.Context, sessionKey string, meta Meta) (sessionID string, err error)
	// Transcript returns the current session's messages, oldest first, at
	// most limit (0 = all) of the newest. Credentials in the messages are
	// sealed (for the session's stream as path): show them with
	// RedactText, or open them with a SecretResolver for a model.
	Transcript(ctx context.Context, sessionKey string, limit int) ([]ChatMessage, error)
}

// QueuedRun is a recorded run handed to the agent.
type QueuedRun struct {
	SessionKey string
	RunID      string
	// Owner is true when the owner sent the message (a paired device, a
	// local client, or a chat-platform sender the config lists in
	// allowFrom), so owner-only tools such as gateway_config are offered.
	Owner bool
	// Origin is the chat-platform chat the message came from, if any.
	Origin *ChannelAddress
}

// RunQueue is the agent's queue of runs, as the write side sees it.
type RunQueue interface {
	// Enqueue schedules a recorded run; enqueueing a run that is already
	// queued or running is a no-op. It fails (EUNAVAILABLE) while the
	// agent is stopping.
	Enqueue(run QueuedRun) error
	// Active returns the ids of the runs queued or running in a session.
	Active(sessionKey string) []string
}

// ChannelAccessService decides who may talk to the assistant on the chat
// platforms (Telegram, Discord, Slack).
type ChannelAccessService interface {
	// RequestChannelPairing gives a stranger a pairing code to show the
	// owner. A sender with a live code gets the same code back (created
	// false); a channel with too many pending codes refuses new ones.
	RequestChannelPairing(ctx context.Context, channel, senderID, senderName string, origin *ChannelAddress, meta Meta) (code string, created bool, err error)
	// ApproveChannelPairing adds the sender to the allowlist and, with
	// notify, has the bot tell them; approving an approved code again is
	// not an error.
	ApproveChannelPairing(ctx context.Context, channel, code string, notify bool, meta Meta) (PendingSender, error)
	RejectChannelPairing(ctx context.Context, channel, code string, meta Meta) (PendingSender, error)
	ChangeAllowlist(ctx context.Context, channel string, add, remove []string, meta Meta) error
}
