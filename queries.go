package moltgate

import (
	"context"
	"encoding/json"
	"strconv"
	"time"
)

// The read side, as the adapters (api, channels, agent) see it: records of
// the read models and the interfaces that serve them. The projections
// package implements the model queries, the eventlog package the event and
// storage ones; cmd/moltgate wires them in.

// Device states.
const (
	DevicePending  = "pending"
	DevicePaired   = "paired"
	DeviceRejected = "rejected"
	DeviceRemoved  = "removed"
)

// Device is one device as the read models know it: waiting for approval,
// paired, or rejected/removed. It is also what a device tells the gateway
// when it asks to pair.
type Device struct {
	DeviceID     string   `json:"deviceId"`
	RequestID    string   `json:"requestId,omitempty"` // the pairing request (the approved one, once paired)
	PublicKey    string   `json:"publicKey"`           // base64url raw Ed25519 key: public, not a secret
	DisplayName  string   `json:"displayName,omitempty"`
	Platform     string   `json:"platform,omitempty"`
	DeviceFamily string   `json:"deviceFamily,omitempty"`
	ClientID     string   `json:"clientId,omitempty"`
	ClientMode   string   `json:"clientMode,omitempty"`
	Role         string   `json:"role"`
	Scopes       []string `json:"scopes"`
	RemoteIP     string   `json:"remoteIp,omitempty"`

	State       string    `json:"state"`            // DevicePending, DevicePaired, …
	Reason      string    `json:"reason,omitempty"` // why it was rejected or removed
	RequestedAt time.Time `json:"requestedAt,omitzero"`
	ExpiresAt   time.Time `json:"expiresAt,omitzero"` // of a pending request
	ApprovedAt  time.Time `json:"approvedAt,omitzero"`
	ResolvedAt  time.Time `json:"resolvedAt,omitzero"` // rejected or removed
	HasToken    bool      `json:"hasToken"`
	// TokenHash is the SHA-256 of the device token, never the token. It is
	// left out of JSON: only the handshake compares it.
	TokenHash string `json:"-"`
	// Version is the device stream's version as of this record: a command
	// that decides on it appends at Version+1.
	Version int64 `json:"version"`
}

// Session is one entry of the session index. The transcript is not kept
// here: it is read from the log by the session's stream.
type Session struct {
	Key          string    `json:"key"`
	ID           string    `json:"id"` // changes on reset
	LastActivity time.Time `json:"lastActivity"`
	LastSeq      int64     `json:"lastSeq"`      // orders sessions whose events share a millisecond
	MessageCount int64     `json:"messageCount"` // messages since the last reset
	TotalCount   int64     `json:"totalCount"`   // messages ever
	LastRunID    string    `json:"lastRunId,omitempty"`
	LastRunState string    `json:"lastRunState,omitempty"` // running, completed, aborted, failed, interrupted
	LastRunError string    `json:"lastRunError,omitempty"`
	ResetSeq     int64     `json:"resetSeq,omitempty"` // the transcript starts after this seq
	// OpenRuns are runs started and not finished, oldest first.
	OpenRuns []OpenRun `json:"openRuns,omitempty"`
	// Origin is the chat a session started from a chat platform answers
	// to (the last inbound message's address).
	Origin *ChannelAddress `json:"origin,omitempty"`
	// Version is the session stream's version as of this record.
	Version int64 `json:"version"`
}

// OpenRun is a run that was started and has not finished.
type OpenRun struct {
	RunID          string    `json:"runId"`
	IdempotencyKey string    `json:"idempotencyKey,omitempty"`
	StartedAt      time.Time `json:"startedAt"`
}

// PendingSender is a chat-platform user who wrote to the bot and waits for
// the owner to approve their pairing code.
type PendingSender struct {
	Channel     string    `json:"channel"`
	SenderID    string    `json:"senderId"`
	SenderName  string    `json:"senderName,omitempty"`
	Code        string    `json:"code"`
	RequestedAt time.Time `json:"requestedAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
	// Origin is where the request came from, so an approval can be told.
	Origin *ChannelAddress `json:"origin,omitempty"`
}

// ConfigVersion is one entry of the config history: who applied which
// document when. The document itself stays in the log (read it by Seq).
type ConfigVersion struct {
	Seq    int64     `json:"seq"`
	Hash   string    `json:"hash"`
	Actor  string    `json:"actor,omitempty"`
	Source string    `json:"source,omitempty"`
	Note   string    `json:"note,omitempty"`
	At     time.Time `json:"at"`
}

// DeviceQueries reads the device read model.
type DeviceQueries interface {
	// PendingDevices returns the requests that have not expired at now,
	// oldest first.
	PendingDevices(now time.Time) []Device
	// PairedDevices returns the paired devices, oldest approval first.
	PairedDevices() []Device
	// Device returns a paired device.
	Device(deviceID string) (Device, bool)
	// PairingRequest returns a pending request, expired or not.
	PairingRequest(requestID string) (Device, bool)
}

// ConfigQueries reads the config read model. Documents are as stored:
// secrets sealed; show them to people through RedactSealed.
type ConfigQueries interface {
	// CurrentConfig returns the document (nil when none was applied) and its hash.
	CurrentConfig() (json.RawMessage, string)
	ConfigHistory() []ConfigVersion
}

// ChannelQueries reads who may talk to the assistant on chat platforms.
type ChannelQueries interface {
	// PendingSenders returns the unexpired pairing requests of channel
	// ("" = every channel), oldest first.
	PendingSenders(channel string, now time.Time) []PendingSender
	Allowlist(channel string) []string
	Allowed(channel, senderID string) bool
}

// SessionQueries reads the session index.
type SessionQueries interface {
	// ListSessions returns every session, most recently active first.
	ListSessions() []Session
	Session(key string) (Session, bool)
}

// Queries is every read model query.
type Queries interface {
	DeviceQueries
	ConfigQueries
	ChannelQueries
	SessionQueries
	// CurrentView is every read model now, judging expiry at now.
	CurrentView(now time.Time) View
}

// EventReader reads the event log.
type EventReader interface {
	LastSeq() int64
	Query(ctx context.Context, f EventFilter) ([]Event, error)
	// Scan calls fn for every matching event without holding them all.
	Scan(ctx context.Context, f EventFilter, fn func(Event) error) error
	GetSeq(ctx context.Context, seq int64) (Event, error)
	// Get returns the event with id.
	Get(ctx context.Context, id string) (Event, error)
	// SeqAt returns the seq of the last event recorded at or before t.
	SeqAt(ctx context.Context, t time.Time) (int64, error)
	// Follow calls fn for every event after fromSeq, in order, first those
	// stored and then new commits as they happen, until ctx ends (nil), fn
	// fails (its error) or the log is closed (an error saying so).
	Follow(ctx context.Context, fromSeq int64, fn func(Event) error) error
}

// StorageStatus is the replication state of the log. It never contains
// credentials.
type StorageStatus struct {
	Configured bool     `json:"configured"`
	Replica    string   `json:"replica,omitempty"` // description without credentials
	Source     string   `json:"source,omitempty"`  // "env" or the litestream.yml path
	Missing    []string `json:"missing,omitempty"` // variables that would complete a partial config

	LocalSeq      int64   `json:"localSeq"`
	ReplicatedSeq int64   `json:"replicatedSeq"`
	LagEvents     int64   `json:"lagEvents"`
	LagSeconds    float64 `json:"lagSeconds"`

	LastSyncAt     time.Time `json:"lastSyncAt,omitzero"`
	LastSnapshotAt time.Time `json:"lastSnapshotAt,omitzero"`
	LastError      string    `json:"lastError,omitempty"`
	LastErrorAt    time.Time `json:"lastErrorAt,omitzero"`
}

// RestorePoint is a snapshot in the replica; a restore starts from one and
// replays the WAL shipped after it.
type RestorePoint struct {
	TXID      uint64    `json:"txid"`
	CreatedAt time.Time `json:"createdAt"`
	Bytes     int64     `json:"bytes"`
}

// BucketUsage is what the replica occupies in its bucket.
type BucketUsage struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// Storage is the replication side of the log. Without a replica, the
// actions fail with EUNAVAILABLE.
type Storage interface {
	Status(ctx context.Context) StorageStatus
	// SnapshotNow ships every committed event and writes a full snapshot;
	// it returns when the replica holds them.
	SnapshotNow(ctx context.Context) error
	BucketUsage(ctx context.Context) (BucketUsage, error)
	RestorePoints(ctx context.Context) ([]RestorePoint, error)
}

// View is a plain, printable picture of the read models at one moment:
// what `moltgate replay` prints and the admin's time machine compares.
// Config documents in it are redacted.
type View struct {
	Seq      int64        `json:"seq"`
	At       time.Time    `json:"at"`
	Config   ConfigView   `json:"config"`
	Devices  DevicesView  `json:"devices"`
	Channels ChannelsView `json:"channels"`
	Sessions []Session    `json:"sessions"`
	Errors   []ApplyError `json:"errors,omitempty"`
}

// ConfigView is the config part of a View.
type ConfigView struct {
	Hash     string          `json:"hash,omitempty"`
	Document json.RawMessage `json:"document,omitempty"`
	History  []ConfigVersion `json:"history,omitempty"`
}

// DevicesView is the devices part of a View.
type DevicesView struct {
	Pending  []Device `json:"pending"`
	Paired   []Device `json:"paired"`
	Resolved []Device `json:"resolved,omitempty"`
}

// ChannelsView is the channel-access part of a View.
type ChannelsView struct {
	Pending    []PendingSender     `json:"pending"`
	Allowlists map[string][]string `json:"allowlists"`
}

// ApplyError records an event a read model could not apply.
type ApplyError struct {
	Projection string    `json:"projection"`
	Seq        int64     `json:"seq"`
	Type       string    `json:"type"`
	Err        string    `json:"error"`
	At         time.Time `json:"at"`
}

func (e ApplyError) Error() string {
	return "projection " + e.Projection + " cannot apply " + e.Type + " at seq " + strconv.FormatInt(e.Seq, 10) + ": " + e.Err
}

// ConfigChange is one path whose value differs between two config versions.
type ConfigChange struct {
	Path string `json:"path"`
	Op   string `json:"op"` // added, removed, changed
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// History is the time machine: the read models and the config as they
// were at a point in the log. The CLI and the admin share it, so they
// agree on what "then" means.
type History interface {
	// ViewAt rebuilds the read models as they were at a point: at time at
	// when it is not zero (every event recorded by then; expiry judged at
	// that time), else after seq (0 = before the first event; expiry
	// judged at the time the event at seq was recorded).
	ViewAt(ctx context.Context, seq int64, at time.Time) (View, error)
	// ConfigAt returns the document stored by the config.applied event at
	// seq, redacted.
	ConfigAt(ctx context.Context, seq int64) (json.RawMessage, error)
	// DiffConfig compares the documents at two seqs (to 0 = the current
	// one), path by path; secrets show as RedactedMarker.
	DiffConfig(ctx context.Context, from, to int64) ([]ConfigChange, error)
}

// ModelInfo describes the models the agent will use, for models.list and
// the web chat.
type ModelInfo struct {
	Active     string   `json:"active"`     // "provider/model"
	Fallbacks  []string `json:"fallbacks"`  // in order
	Configured bool     `json:"configured"` // false: the echo model answers
	Notice     string   `json:"notice,omitempty"`
}

// RunControl is the agent's run queue as the transports see it.
type RunControl interface {
	// Active returns the ids of the runs queued or running in a session.
	Active(sessionKey string) []string
	// Abort stops a run (runID) or every run of a session (runID "") and
	// returns how many it stopped.
	Abort(sessionKey, runID string) int
}
