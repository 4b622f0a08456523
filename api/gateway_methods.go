package api

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	moltgate "github.com/moltgate/moltgate"
)

// method is one RPC: the scope it needs and its handler, which parses
// params, calls the services and returns the payload.
type method struct {
	scope string
	fn    func(g *Gateway, ctx context.Context, c *conn, params json.RawMessage) (any, error)
}

var methods = map[string]method{
	"health":              {"", (*Gateway).health},
	"status":              {scopeRead, (*Gateway).status},
	"models.list":         {scopeRead, (*Gateway).modelsList},
	"config.get":          {scopeRead, (*Gateway).configGet},
	"config.apply":        {scopeAdmin, (*Gateway).configApply},
	"config.patch":        {scopeAdmin, (*Gateway).configPatch},
	"sessions.list":       {scopeRead, (*Gateway).sessionsList},
	"sessions.reset":      {scopeWrite, (*Gateway).sessionsReset},
	"chat.history":        {scopeRead, (*Gateway).chatHistory},
	"chat.send":           {scopeWrite, (*Gateway).chatSend},
	"chat.abort":          {scopeWrite, (*Gateway).chatAbort},
	"chat.inject":         {scopeWrite, (*Gateway).chatInject},
	"device.pair.list":    {scopePairing, (*Gateway).devicePairList},
	"device.pair.approve": {scopePairing, (*Gateway).devicePairApprove},
	"device.pair.reject":  {scopePairing, (*Gateway).devicePairReject},
	"device.pair.remove":  {scopePairing, (*Gateway).devicePairRemove},
	"channels.status":     {scopeRead, (*Gateway).channelsStatus},
	"skills.status":       {scopeRead, (*Gateway).skillsStatus},
	"agents.list":         {scopeRead, (*Gateway).agentsList},
}

func (g *Gateway) skillsStatus(ctx context.Context, c *conn, _ json.RawMessage) (any, error) {
	if g.SkillsStatus == nil {
		return map[string]any{"skills": []any{}}, nil
	}
	return g.SkillsStatus(), nil
}

func (g *Gateway) agentsList(ctx context.Context, c *conn, _ json.RawMessage) (any, error) {
	if g.AgentsList == nil {
		return map[string]any{"defaultId": "main", "agents": []any{}}, nil
	}
	return g.AgentsList(), nil
}

// methodNames is what hello-ok lists, sorted.
var methodNames = slices.Sorted(maps.Keys(methods))

func (g *Gateway) dispatch(ctx context.Context, c *conn, name string, params json.RawMessage) (any, error) {
	m, ok := methods[name]
	if !ok {
		return nil, moltgate.Errorf(moltgate.EINVALID, "unknown method %q", name)
	}
	if !c.allowed(m.scope) {
		return nil, &moltgate.Error{Code: moltgate.EFORBIDDEN, Message: "missing scope: " + m.scope,
			Details: map[string]any{"code": "MISSING_SCOPE", "missingScope": m.scope, "requiredScopes": []string{m.scope}}}
	}
	if len(params) == 0 || string(params) == "null" {
		params = json.RawMessage(`{}`)
	}
	return m.fn(g, ctx, c, params)
}

// decode parses params into v, naming what is wrong.
func decode(params json.RawMessage, v any) error {
	if err := json.Unmarshal(params, v); err != nil {
		return moltgate.Errorf(moltgate.EINVALID, "invalid params: %v", err)
	}
	return nil
}

func required(name, value string) error {
	if strings.TrimSpace(value) == "" {
		return moltgate.Errorf(moltgate.EINVALID, "%s is required", name)
	}
	return nil
}

func (c *conn) meta() moltgate.Meta {
	return moltgate.Meta{Actor: c.actor, Source: moltgate.SourceWS, RemoteIP: c.ip, CorrelationID: c.id}
}

func (g *Gateway) health(ctx context.Context, c *conn, _ json.RawMessage) (any, error) {
	st := g.Storage.Status(ctx)
	return map[string]any{"ok": true, "ts": time.Now().UnixMilli(), "uptimeMs": time.Since(g.started).Milliseconds(),
		"events": st.LocalSeq, "replica": map[string]any{"configured": st.Configured, "lagEvents": st.LagEvents, "lastError": st.LastError}}, nil
}

func (g *Gateway) status(ctx context.Context, c *conn, _ json.RawMessage) (any, error) {
	st := g.Storage.Status(ctx)
	return map[string]any{
		"version": moltgate.Version, "uptimeMs": time.Since(g.started).Milliseconds(), "connections": g.Connections(),
		"events": st.LocalSeq, "storage": st, "model": g.modelInfo(),
		"sessions": len(g.Queries.ListSessions()),
		"devices":  map[string]int{"pending": len(g.Queries.PendingDevices(time.Now())), "paired": len(g.Queries.PairedDevices())},
		"channels": g.channelStatuses(),
	}, nil
}

func (g *Gateway) channelStatuses() []moltgate.ChannelStatus {
	if g.Channels == nil {
		return []moltgate.ChannelStatus{}
	}
	return g.Channels()
}

// channelLabels are the platforms' names as OpenClaw's CLI shows them.
var channelLabels = map[string]string{"telegram": "Telegram", "discord": "Discord", "slack": "Slack"}

// channelsStatus answers OpenClaw's channels.status (what `openclaw
// channels status` calls), in its shape: a summary per channel and one
// account per configured channel (moltgate runs one bot per platform,
// OpenClaw's "default" account).
func (g *Gateway) channelsStatus(ctx context.Context, c *conn, _ json.RawMessage) (any, error) {
	list := g.channelStatuses()
	channels, accounts := map[string]any{}, map[string]any{}
	for _, st := range list {
		configured, running := st.State != moltgate.ChannelStopped, st.State == moltgate.ChannelRunning
		channels[st.Channel] = map[string]any{"configured": configured, "running": running, "state": st.State, "lastError": st.Error}
		if !configured {
			continue
		}
		account := map[string]any{"accountId": "default", "enabled": true, "configured": true, "running": running, "connected": running,
			"state": st.State, "dmPolicy": st.DMPolicy, "reconnects": st.Reconnects, "botId": st.AccountID}
		if st.BotName != "" {
			account["name"], account["bot"] = st.BotName, map[string]any{"username": st.BotName}
		}
		if st.Error != "" {
			account["lastError"] = st.Error
		}
		if !st.LastActivity.IsZero() {
			account["lastTransportActivityAt"] = st.LastActivity.UnixMilli()
		}
		accounts[st.Channel] = []any{account}
	}
	return map[string]any{"ts": time.Now().UnixMilli(), "channels": channels, "channelAccounts": accounts,
		"channelDefaultAccountId": map[string]string{"telegram": "default", "discord": "default", "slack": "default"},
		"channelLabels":           channelLabels, "channelOrder": moltgate.ChannelNames}, nil
}

func (g *Gateway) modelsList(ctx context.Context, c *conn, _ json.RawMessage) (any, error) {
	info := g.modelInfo()
	var models []map[string]any
	for i, name := range append([]string{info.Active}, info.Fallbacks...) {
		provider, model, _ := strings.Cut(name, "/")
		models = append(models, map[string]any{"id": name, "provider": provider, "name": model, "active": i == 0})
	}
	return map[string]any{"models": models, "configured": info.Configured, "notice": info.Notice}, nil
}

// configGet returns the document with every secret shown as OpenClaw's
// redaction marker; sending it back keeps the stored secrets.
func (g *Gateway) configGet(ctx context.Context, c *conn, _ json.RawMessage) (any, error) {
	doc, hash := g.Queries.CurrentConfig()
	if len(doc) == 0 {
		return map[string]any{"exists": false, "hash": "", "config": map[string]any{}, "raw": "{}"}, nil
	}
	doc = moltgate.RedactSealed(doc)
	return map[string]any{"exists": true, "hash": hash, "config": doc, "raw": string(doc)}, nil
}

// configWrite reads {raw: "<json>"} (OpenClaw's shape) or {config: {…}} /
// {patch: {…}}, plus baseHash.
type configWrite struct {
	Raw      *string         `json:"raw"`
	Config   json.RawMessage `json:"config"`
	Patch    json.RawMessage `json:"patch"`
	BaseHash string          `json:"baseHash"`
}

func (w configWrite) body(field json.RawMessage) (json.RawMessage, error) {
	switch {
	case w.Raw != nil:
		return json.RawMessage(*w.Raw), nil
	case len(field) > 0:
		return field, nil
	}
	return nil, moltgate.Errorf(moltgate.EINVALID, "raw (a JSON string) is required")
}

func (g *Gateway) configApply(ctx context.Context, c *conn, params json.RawMessage) (any, error) {
	return g.configWrite(ctx, c, params, func(w configWrite) json.RawMessage { return w.Config }, g.Config.ApplyConfig)
}

func (g *Gateway) configPatch(ctx context.Context, c *conn, params json.RawMessage) (any, error) {
	return g.configWrite(ctx, c, params, func(w configWrite) json.RawMessage { return w.Patch }, g.Config.PatchConfig)
}

// configWrite is config.apply and config.patch: the same params, a
// different write.
func (g *Gateway) configWrite(ctx context.Context, c *conn, params json.RawMessage, field func(configWrite) json.RawMessage,
	write func(context.Context, json.RawMessage, string, moltgate.Meta) (moltgate.ConfigResult, error)) (any, error) {
	var w configWrite
	if err := decode(params, &w); err != nil {
		return nil, err
	}
	body, err := w.body(field(w))
	if err != nil {
		return nil, err
	}
	res, err := write(ctx, body, w.BaseHash, c.meta())
	if err != nil {
		return nil, err
	}
	cur, _ := g.Queries.CurrentConfig()
	return map[string]any{"ok": true, "hash": res.Hash, "changed": res.Changed, "warnings": nonNilIssues(res.Warnings), "config": moltgate.RedactSealed(cur)}, nil
}

// sessionParams accepts OpenClaw's sessionKey and the older key.
type sessionParams struct {
	SessionKey     string `json:"sessionKey"`
	Key            string `json:"key"`
	Limit          int    `json:"limit"`
	Message        string `json:"message"`
	IdempotencyKey string `json:"idempotencyKey"`
	RunID          string `json:"runId"`
	Role           string `json:"role"`
}

// sessionRequest decodes params that name a session, requires the key,
// and subscribes the connection to that session's chat events.
func sessionRequest(c *conn, params json.RawMessage) (sessionParams, error) {
	var p sessionParams
	if err := decode(params, &p); err != nil {
		return p, err
	}
	if err := required("sessionKey", p.key()); err != nil {
		return p, err
	}
	c.follow(p.key())
	return p, nil
}

// key is the session key sent, with OpenClaw's alias "main" mapped onto
// the main session (agent:main:main), which the channels share.
func (p sessionParams) key() string {
	if p.SessionKey != "" {
		return moltgate.CanonicalSessionKey(p.SessionKey)
	}
	return moltgate.CanonicalSessionKey(p.Key)
}

func (g *Gateway) sessionsList(ctx context.Context, c *conn, _ json.RawMessage) (any, error) {
	list := g.Queries.ListSessions()
	out := make([]map[string]any, 0, len(list))
	for _, s := range list {
		active := g.Runs.Active(s.Key)
		out = append(out, map[string]any{"key": s.Key, "sessionId": s.ID, "updatedAt": s.LastActivity.UnixMilli(),
			"messageCount": s.MessageCount, "hasActiveRun": len(active) > 0, "activeRunIds": nonNil(active)})
	}
	return map[string]any{"sessions": out}, nil
}

// redactMessage shows the credentials sealed in a transcript message as
// the redaction marker.
func redactMessage(m moltgate.ChatMessage) moltgate.ChatMessage {
	m.Content = moltgate.RedactText(m.Content)
	if m.Tool != nil {
		t := *m.Tool
		t.Summary, t.Error, t.Input = moltgate.RedactText(t.Summary), moltgate.RedactText(t.Error), moltgate.RedactSealed(t.Input)
		m.Tool = &t
	}
	return m
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (g *Gateway) sessionsReset(ctx context.Context, c *conn, params json.RawMessage) (any, error) {
	p, err := sessionRequest(c, params)
	if err != nil {
		return nil, err
	}
	g.Runs.Abort(p.key(), "")
	id, err := g.Chat.ResetSession(ctx, p.key(), c.meta())
	if err != nil {
		return nil, err
	}
	return map[string]any{"ok": true, "key": p.key(), "sessionId": id}, nil
}

func (g *Gateway) chatHistory(ctx context.Context, c *conn, params json.RawMessage) (any, error) {
	p, err := sessionRequest(c, params)
	if err != nil {
		return nil, err
	}
	if p.Limit <= 0 || p.Limit > 1000 {
		p.Limit = 200
	}
	msgs, err := g.Chat.Transcript(ctx, p.key(), p.Limit)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(msgs))
	for _, m := range msgs {
		m = redactMessage(m)
		wm := chatMessage(m.Role, m.Content, m.Timestamp)
		if m.Tool != nil {
			wm["tool"] = m.Tool
		}
		wm["id"] = m.ID
		if m.RunID != "" {
			wm["runId"] = m.RunID
		}
		if m.Model != "" {
			wm["model"] = m.Model
		}
		if m.Usage != nil {
			wm["usage"] = m.Usage
		}
		out = append(out, wm)
	}
	sess, _ := g.Queries.Session(p.key())
	active := g.Runs.Active(p.key())
	info := map[string]any{"hasActiveRun": len(active) > 0, "activeRunIds": nonNil(active)}
	if sess.LastRunID != "" {
		info["lastRun"] = map[string]any{"runId": sess.LastRunID, "state": sess.LastRunState, "error": sess.LastRunError}
	}
	return map[string]any{"sessionKey": p.key(), "sessionId": sess.ID, "messages": out, "sessionInfo": info}, nil
}

func (g *Gateway) chatSend(ctx context.Context, c *conn, params json.RawMessage) (any, error) {
	p, err := sessionRequest(c, params)
	if err != nil {
		return nil, err
	}
	if err := required("message", p.Message); err != nil {
		return nil, err
	}
	// Gateway clients are the owner's paired devices (or local tools).
	receipt, err := g.Chat.SendMessage(ctx, moltgate.RunRequest{SessionKey: p.key(), Message: p.Message, IdempotencyKey: p.IdempotencyKey, Owner: true}, c.meta())
	if err != nil {
		return nil, err
	}
	status := "started"
	if receipt.State != "queued" {
		status = receipt.State // a retry of a run that has ended: say how
	}
	return map[string]any{"runId": receipt.RunID, "status": status}, nil
}

func (g *Gateway) chatAbort(ctx context.Context, c *conn, params json.RawMessage) (any, error) {
	var p sessionParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	if p.key() == "" && p.RunID == "" {
		return nil, moltgate.Errorf(moltgate.EINVALID, "sessionKey or runId is required")
	}
	if p.key() != "" {
		c.follow(p.key())
	}
	n := g.Runs.Abort(p.key(), p.RunID)
	return map[string]any{"ok": true, "aborted": n > 0, "count": n}, nil
}

func (g *Gateway) chatInject(ctx context.Context, c *conn, params json.RawMessage) (any, error) {
	p, err := sessionRequest(c, params)
	if err != nil {
		return nil, err
	}
	if err := required("message", p.Message); err != nil {
		return nil, err
	}
	msg, err := g.Chat.Inject(ctx, p.key(), moltgate.ChatMessage{Role: p.Role, Content: p.Message}, c.meta())
	if err != nil {
		return nil, err
	}
	g.broadcastSession(p.key(), "chat", map[string]any{"runId": "inject-" + msg.ID, "sessionKey": p.key(), "seq": 1, "state": "final",
		"message": chatMessage(msg.Role, moltgate.RedactText(msg.Content), msg.Timestamp)})
	return map[string]any{"ok": true, "messageId": msg.ID}, nil
}

// deviceWire is a device as device.pair.list, the device.pair.* events
// and the admin send it: OpenClaw's fields (and Moltworker's admin shape)
// for pending and paired devices alike.
func deviceWire(d moltgate.Device) map[string]any {
	w := map[string]any{"requestId": d.RequestID, "deviceId": d.DeviceID, "publicKey": d.PublicKey,
		"displayName": d.DisplayName, "platform": d.Platform, "clientId": d.ClientID, "clientMode": d.ClientMode,
		"role": d.Role, "roles": []string{d.Role}, "scopes": nonNil(d.Scopes), "remoteIp": d.RemoteIP, "state": d.State,
		"ts": d.RequestedAt.UnixMilli(), "createdAtMs": d.RequestedAt.UnixMilli(), "hasToken": d.HasToken}
	if !d.ApprovedAt.IsZero() {
		w["approvedAtMs"] = d.ApprovedAt.UnixMilli()
	}
	if !d.ExpiresAt.IsZero() {
		w["expiresAtMs"] = d.ExpiresAt.UnixMilli()
	}
	return w
}

func nonNilIssues(issues []moltgate.ConfigIssue) []moltgate.ConfigIssue {
	if issues == nil {
		return []moltgate.ConfigIssue{}
	}
	return issues
}

func (g *Gateway) devicePairList(ctx context.Context, c *conn, _ json.RawMessage) (any, error) {
	return g.deviceLists(), nil
}

// deviceLists is the devices now, as deviceListsWire sends them.
func (g *Gateway) deviceLists() map[string]any {
	return deviceListsWire(g.Queries.PendingDevices(time.Now()), g.Queries.PairedDevices())
}

// deviceListsWire is {pending, paired}, OpenClaw's and Moltworker's shape.
func deviceListsWire(pending, paired []moltgate.Device) map[string]any {
	return map[string]any{"pending": devicesWire(pending), "paired": devicesWire(paired)}
}

func devicesWire(devices []moltgate.Device) []map[string]any {
	out := make([]map[string]any, 0, len(devices))
	for _, d := range devices {
		out = append(out, deviceWire(d))
	}
	return out
}

type pairParams struct {
	RequestID string `json:"requestId"`
	DeviceID  string `json:"deviceId"`
	Reason    string `json:"reason"`
}

func (g *Gateway) devicePairApprove(ctx context.Context, c *conn, params json.RawMessage) (any, error) {
	var p pairParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	if err := required("requestId", p.RequestID); err != nil {
		return nil, err
	}
	// A device may grant only the scopes it holds itself.
	d, err := g.Devices.ApprovePairing(ctx, p.RequestID, c.scopes, c.meta())
	if err != nil {
		return nil, err
	}
	return map[string]any{"requestId": p.RequestID, "device": deviceWire(d)}, nil
}

func (g *Gateway) devicePairReject(ctx context.Context, c *conn, params json.RawMessage) (any, error) {
	var p pairParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	if err := required("requestId", p.RequestID); err != nil {
		return nil, err
	}
	d, err := g.Devices.RejectPairing(ctx, p.RequestID, p.Reason, c.meta())
	if err != nil {
		return nil, err
	}
	return map[string]any{"requestId": p.RequestID, "deviceId": d.DeviceID}, nil
}

func (g *Gateway) devicePairRemove(ctx context.Context, c *conn, params json.RawMessage) (any, error) {
	var p pairParams
	if err := decode(params, &p); err != nil {
		return nil, err
	}
	if err := required("deviceId", p.DeviceID); err != nil {
		return nil, err
	}
	if err := g.Devices.RemoveDevice(ctx, p.DeviceID, p.Reason, c.meta()); err != nil {
		return nil, err
	}
	return map[string]any{"deviceId": p.DeviceID}, nil
}
