package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// ProtocolVersion is the OpenClaw gateway protocol moltgate speaks.
const ProtocolVersion = 4

// Policy is what hello-ok advertises and the connection enforces.
type Policy struct {
	MaxPayload       int64         // largest frame accepted after the handshake
	MaxBufferedBytes int64         // outgoing bytes queued for a client before it is dropped as too slow
	TickInterval     time.Duration // how often `tick` is sent
	HandshakeTimeout time.Duration // how long a client has to send connect
}

// DefaultPolicy is the policy of a gateway that sets none.
var DefaultPolicy = Policy{MaxPayload: 4 << 20, MaxBufferedBytes: 8 << 20, TickInterval: 15 * time.Second, HandshakeTimeout: 10 * time.Second}

// maxPreauthPayload caps frames before connect succeeds.
const maxPreauthPayload = 64 << 10

// Gateway serves OpenClaw's gateway protocol over WebSocket: the handshake
// with device pairing, the methods, and the events. It reaches the rest of
// moltgate only through the root package's interfaces.
type Gateway struct {
	Token   string // the shared gateway token (MOLTBOT_GATEWAY_TOKEN)
	DevMode bool   // auto-approve devices (DEV_MODE=true)
	Policy  Policy
	Trust   *Trust

	Devices  moltgate.DeviceService
	Config   moltgate.ConfigService
	Chat     moltgate.ChatService
	Queries  moltgate.Queries
	Events   moltgate.EventReader
	Storage  moltgate.Storage
	Runs     moltgate.RunControl
	Channels ChannelStatuses
	// SkillsStatus and AgentsList answer OpenClaw's skills.status and
	// agents.list (the agent package builds them; nil answers empty).
	SkillsStatus func() any
	AgentsList   func() any
	// ModelInfo reports the active model; nil means the echo model only.
	ModelInfo func() moltgate.ModelInfo
	// TokenHash turns a device token into the hash the read models keep.
	TokenHash func(string) string
	Logger    *slog.Logger

	started time.Time
	limiter *failLimiter
	preauth *preauthLimiter
	metrics *metrics

	mu        sync.Mutex
	conns     map[*conn]struct{}
	followers map[string]map[*conn]struct{} // session key → connections following it
}

// ChannelStatuses reports the chat-platform channels (nil: none running).
type ChannelStatuses func() []moltgate.ChannelStatus

// NewGateway returns a gateway with the default policy; set the services
// before serving.
func NewGateway(token string) *Gateway {
	g := &Gateway{Token: token, Policy: DefaultPolicy, Logger: slog.Default(), started: time.Now(), Trust: &Trust{},
		limiter: newFailLimiter(10, time.Minute), preauth: newPreauthLimiter(maxPreauthConns, maxPreauthPerIP),
		conns: map[*conn]struct{}{}, followers: map[string]map[*conn]struct{}{}}
	g.metrics = newMetrics(g)
	return g
}

func (g *Gateway) modelInfo() moltgate.ModelInfo {
	if g.ModelInfo == nil {
		return moltgate.ModelInfo{Active: "echo/echo", Fallbacks: []string{}}
	}
	return g.ModelInfo()
}

func (g *Gateway) add(c *conn) {
	g.mu.Lock()
	g.conns[c] = struct{}{}
	g.mu.Unlock()
}

func (g *Gateway) remove(c *conn) {
	g.mu.Lock()
	delete(g.conns, c)
	for key := range c.following {
		delete(g.followers[key], c)
		if len(g.followers[key]) == 0 {
			delete(g.followers, key)
		}
	}
	g.mu.Unlock()
}

// follow subscribes c to a session's chat events.
func (g *Gateway) follow(c *conn, sessionKey string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, live := g.conns[c]; !live || c.following[sessionKey] {
		return
	}
	c.following[sessionKey] = true
	if g.followers[sessionKey] == nil {
		g.followers[sessionKey] = map[*conn]struct{}{}
	}
	g.followers[sessionKey][c] = struct{}{}
}

// currentView is every read model now, for the admin and /debug.
func (g *Gateway) currentView() moltgate.View { return g.Queries.CurrentView(time.Now()) }

// Connections returns how many clients are connected.
func (g *Gateway) Connections() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// broadcast sends an event to every connection holding scope.
func (g *Gateway) broadcast(event string, payload any, scope string) {
	g.broadcastTo(event, payload, func(c *conn) bool { return c.allowed(scope) })
}

// broadcastSession sends an event (`chat`, `agent`) to the connections
// that follow the session (they sent to it or read its history). OpenClaw
// sends every chat event to every reader; with many sessions streaming at
// once that is n² frames, so moltgate scopes them to the session's
// followers.
func (g *Gateway) broadcastSession(sessionKey, event string, payload any) {
	g.mu.Lock()
	conns := make([]*conn, 0, len(g.followers[sessionKey]))
	for c := range g.followers[sessionKey] {
		if c.allowed(scopeRead) {
			conns = append(conns, c)
		}
	}
	g.mu.Unlock()
	g.sendTo(conns, event, payload)
}

func (g *Gateway) broadcastTo(event string, payload any, want func(*conn) bool) {
	g.mu.Lock()
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		if want(c) {
			conns = append(conns, c)
		}
	}
	g.mu.Unlock()
	g.sendTo(conns, event, payload)
}

func (g *Gateway) sendTo(conns []*conn, event string, payload any) {
	if len(conns) == 0 {
		return
	}
	data, err := json.Marshal(payload)
	if err != nil {
		g.Logger.Error("cannot encode event", "event", event, "error", err)
		return
	}
	for _, c := range conns {
		c.sendEvent(event, data)
	}
}

// disconnectDevice closes every connection of a device (it was removed).
func (g *Gateway) disconnectDevice(deviceID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		if c.deviceID == deviceID {
			c.closeWith(1008, "device removed")
		}
	}
}

// Close disconnects every client with 1001 (going away).
func (g *Gateway) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		c.closeWith(1001, "gateway shutting down")
	}
}

// Follow turns log events into protocol events until ctx ends, so that
// every client hears of pairing requests and config changes whichever part
// of moltgate caused them.
func (g *Gateway) Follow(ctx context.Context, fromSeq int64) {
	go func() {
		err := g.Events.Follow(ctx, fromSeq, func(e moltgate.Event) error {
			g.publish(e)
			return nil
		})
		if err != nil {
			g.Logger.Error("the gateway stopped following the log", "error", err)
		}
	}()
}

func (g *Gateway) publish(e moltgate.Event) {
	g.metrics.events.WithLabelValues(e.Type).Inc()
	switch e.Type {
	case moltgate.EventDevicePairingRequested:
		var d moltgate.DevicePairingRequestedData
		if e.Decode(&d) == nil {
			g.broadcast("device.pair.requested", deviceWire(requestedDevice(d, e.RecordedAt)), scopePairing)
		}
	case moltgate.EventDevicePairingApproved, moltgate.EventDevicePairingRejected:
		var d struct {
			RequestID string `json:"requestId"`
			DeviceID  string `json:"deviceId"`
		}
		if e.Decode(&d) == nil {
			decision := "approved"
			if e.Type == moltgate.EventDevicePairingRejected {
				decision = "rejected"
			}
			g.broadcast("device.pair.resolved", map[string]any{"requestId": d.RequestID, "deviceId": d.DeviceID,
				"decision": decision, "ts": e.RecordedAt.UnixMilli()}, scopePairing)
		}
	case moltgate.EventDeviceRemoved, moltgate.EventDeviceTokenRevoked:
		var d struct {
			DeviceID string `json:"deviceId"`
		}
		if e.Decode(&d) == nil {
			g.disconnectDevice(d.DeviceID)
		}
	case moltgate.EventChatRunFinished:
		// The agent announces the runs it finishes as they end; these are
		// the runs closed without it: found open after a crash, or refused
		// before they started.
		var d moltgate.ChatRunFinishedData
		if e.Meta.Source == moltgate.SourceSystem && e.Decode(&d) == nil {
			g.RunDone(d.SessionKey, d.RunID, 1, d.Status, "", d.Error)
		}
	case moltgate.EventConfigApplied:
		var d moltgate.ConfigAppliedData
		if e.Decode(&d) == nil {
			g.broadcast("config.changed", map[string]any{"hash": d.Hash, "ts": e.RecordedAt.UnixMilli()}, scopeRead)
		}
	}
}

// wireMessage is a transcript message as the protocol sends it.
type wireMessage struct {
	Role      string     `json:"role"`
	Content   []textPart `json:"content"`
	Timestamp int64      `json:"timestamp"`
}

type textPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func newWireMessage(role, text string, at time.Time) wireMessage {
	return wireMessage{Role: role, Content: []textPart{{Type: "text", Text: text}}, Timestamp: at.UnixMilli()}
}

// chatMessage is a transcript message as a map, for payloads that add fields.
func chatMessage(role, text string, at time.Time) map[string]any {
	return map[string]any{"role": role, "content": []textPart{{Type: "text", Text: text}}, "timestamp": at.UnixMilli()}
}

// chatDelta is the payload of a streaming `chat` event. A struct, not a
// map: deltas are the hottest frames the gateway sends.
type chatDelta struct {
	RunID      string      `json:"runId"`
	SessionKey string      `json:"sessionKey"`
	Seq        int         `json:"seq"`
	State      string      `json:"state"`
	DeltaText  string      `json:"deltaText"`
	Message    wireMessage `json:"message"`
}

// CapDeltaOnly is the connect capability of a client that wants `chat`
// deltas without the cumulative message: protocol v4 repeats the whole
// reply so far in every delta, so a long reply costs O(n²) bytes per
// follower; with it, each delta carries only its new text (deltaText),
// which the client appends. OpenClaw's clients do not ask for it and get
// v4's frames unchanged.
const CapDeltaOnly = "chat.delta-only"

// chatDeltaOnly is a delta for CapDeltaOnly clients.
type chatDeltaOnly struct {
	RunID      string `json:"runId"`
	SessionKey string `json:"sessionKey"`
	Seq        int    `json:"seq"`
	State      string `json:"state"`
	DeltaText  string `json:"deltaText"`
}

// RunDelta implements agent.Sink: a `chat` event in state delta, with the
// v4 deltaText and the cumulative message — or, for clients that asked
// for CapDeltaOnly, the deltaText alone. Each shape is encoded at most
// once however many followers get it.
func (g *Gateway) RunDelta(sessionKey, runID string, seq int, delta, cumulative string) {
	g.mu.Lock()
	var full, lean []*conn
	for c := range g.followers[sessionKey] {
		switch {
		case !c.allowed(scopeRead):
		case c.deltaOnly:
			lean = append(lean, c)
		default:
			full = append(full, c)
		}
	}
	g.mu.Unlock()
	if len(full) > 0 {
		g.sendTo(full, "chat", chatDelta{RunID: runID, SessionKey: sessionKey, Seq: seq, State: "delta",
			DeltaText: delta, Message: newWireMessage("assistant", cumulative, time.Now())})
	}
	if len(lean) > 0 {
		g.sendTo(lean, "chat", chatDeltaOnly{RunID: runID, SessionKey: sessionKey, Seq: seq, State: "delta", DeltaText: delta})
	}
}

// RunTool implements agent.Sink: an OpenClaw-style `agent` event on the
// "tool" stream, to the session's followers, when a tool call starts
// (phase "start", with its arguments, which the Sink gets redacted) and
// when it has a result.
func (g *Gateway) RunTool(sessionKey, runID string, seq int, phase string, call moltgate.ToolCall) {
	data := map[string]any{"phase": phase, "toolCallId": call.ID, "name": call.Name, "args": call.Input}
	if phase != "start" {
		data["status"], data["summary"], data["error"] = call.Status, moltgate.RedactText(call.Summary), moltgate.RedactText(call.Error)
		if call.Image != nil {
			data["image"] = call.Image
		}
	}
	g.broadcastSession(sessionKey, "agent", map[string]any{"runId": runID, "sessionKey": sessionKey, "seq": seq, "stream": "tool",
		"ts": time.Now().UnixMilli(), "data": data})
}

// RunDone implements agent.Sink: a `chat` event in state final, aborted or
// error.
func (g *Gateway) RunDone(sessionKey, runID string, seq int, status, text, errMsg string) {
	state := map[string]string{moltgate.RunCompleted: "final", moltgate.RunAborted: "aborted", moltgate.RunFailed: "error", moltgate.RunInterrupted: "error"}[status]
	g.metrics.runs.WithLabelValues(state).Inc()
	p := map[string]any{"runId": runID, "sessionKey": sessionKey, "seq": seq, "state": state}
	if text != "" || state == "final" {
		p["message"] = chatMessage("assistant", text, time.Now())
	}
	if errMsg != "" {
		p["errorMessage"] = errMsg
	}
	g.broadcastSession(sessionKey, "chat", p)
}
