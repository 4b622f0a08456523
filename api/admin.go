package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/projections"
)

// Admin is the owner's JSON API under /api/admin (Moltworker's paths and
// shapes where it has them). Every action is an event whose actor is the
// authenticated person.
type Admin struct {
	// Access verifies Cloudflare Access; nil when it is not configured.
	Access *Access
	// AccessMissing names the variables that would configure Access.
	AccessMissing []string
	DevMode       bool
	// Token is the gateway token: without Access, the admin answers only
	// direct loopback requests that carry it.
	Token string
	// StorageMissing names the variables a partial replica config lacks.
	StorageMissing []string
	// Restart restarts the agent runner (and, later, the channel adapters)
	// in-process and records gateway.restarted.
	Restart func(ctx context.Context, meta moltgate.Meta) error

	Gateway *Gateway // its services, read models and log
	// EnvOverlay names the environment variables that configure the
	// gateway at run time; the admin shows them as read-only (never their
	// values).
	EnvOverlay []string
	// Validate checks a config document without applying it.
	Validate func(json.RawMessage) []moltgate.ConfigIssue
	// Channels decides chat-platform access.
	Channels moltgate.ChannelAccessService
}

// MountAdmin adds the admin API and the public status to the server.
func (s *Server) MountAdmin(a *Admin) {
	s.router.GET("/api/status", a.status(s))
	s.router.GET("/_admin/", a.page)
	s.router.GET("/_admin", func(c *gin.Context) { c.Redirect(http.StatusFound, "/_admin/") })
	g := s.router.Group("/api/admin", a.guard())
	g.GET("/whoami", a.whoami)
	g.GET("/devices", a.listDevices)
	g.POST("/devices/approve-all", a.approveAll)
	// One wildcard name per segment (gin's rule): :id is a request id for
	// approve/reject and a device id for the rest.
	g.POST("/devices/:id/approve", a.approveDevice)
	g.POST("/devices/:id/reject", a.rejectDevice)
	g.DELETE("/devices/:id", a.removeDevice)
	g.POST("/devices/:id/token/rotate", a.revokeToken) // the new token is handed over at the next signed connect
	g.POST("/devices/:id/token/revoke", a.revokeToken)
	g.GET("/channels", a.listChannels)
	g.POST("/channels/:channel/pairing/:code/approve", a.channelPairing(true))
	g.POST("/channels/:channel/pairing/:code/reject", a.channelPairing(false))
	g.PUT("/channels/:channel/allowlist", a.changeAllowlist)
	g.GET("/storage", a.storage)
	g.POST("/storage/sync", a.backupNow)
	g.GET("/config", a.getConfig)
	g.PUT("/config", a.putConfig)
	g.POST("/config/validate", a.validateConfig)
	g.GET("/config/versions/:seq", a.configVersion)
	g.GET("/config/diff", a.configDiff)
	g.POST("/config/revert", a.revertConfig)
	g.POST("/gateway/restart", a.restart)
	g.GET("/events", a.listEvents)
	g.GET("/events/export", a.exportEvents)
	g.GET("/events/:seq", a.showEvent)
	g.GET("/replay", a.replay)
	g.GET("/sessions", a.listSessions)
	g.GET("/sessions/:key", a.transcript)
	g.POST("/sessions/:key/reset", a.resetSession)
}

// guard admits the owner: through Cloudflare Access when configured, on
// DEV_MODE, or — on a laptop or a self-hosted box without Access — a direct
// loopback request carrying the gateway token. Everything else gets 503
// naming what to configure; the gateway itself keeps working.
func (a *Admin) guard() gin.HandlerFunc {
	return func(c *gin.Context) {
		switch {
		case a.DevMode:
			c.Set(ActorKey, "dev-mode")
			c.Next()
		case a.Access != nil:
			a.Access.Middleware()(c)
		case isDirectLoopback(c.Request) && tokenEqual(bearer(c.Request), a.Token):
			c.Set(ActorKey, "local-admin")
			c.Next()
		case isDirectLoopback(c.Request):
			writeError(c, moltgate.Errorf(moltgate.EUNAUTHORIZED, "send the gateway token as Authorization: Bearer <token>"))
		default:
			writeError(c, &moltgate.Error{Code: moltgate.EUNAVAILABLE,
				Message: "the admin needs Cloudflare Access: set " + strings.Join(a.AccessMissing, " and "),
				Details: map[string]any{"missing": a.AccessMissing}})
		}
	}
}

func bearer(r *http.Request) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

func actorMeta(c *gin.Context) moltgate.Meta {
	return moltgate.Meta{Actor: c.GetString(ActorKey), Source: moltgate.SourceUI, RemoteIP: clientIP(c.Request)}
}

func (a *Admin) status(s *Server) gin.HandlerFunc {
	return func(c *gin.Context) {
		ready, stage := s.IsReady()
		out := gin.H{"ready": ready, "stage": stage, "version": moltgate.Version}
		if ready {
			st := a.Gateway.Log.Status(c.Request.Context())
			out["storage"] = gin.H{"configured": st.Configured, "lastSyncAt": st.LastSyncAt, "lagEvents": st.LagEvents, "healthy": st.LastError == ""}
		}
		c.JSON(http.StatusOK, out)
	}
}

func (a *Admin) listDevices(c *gin.Context) {
	out, _ := a.Gateway.devicePairList(c.Request.Context(), nil, nil)
	c.JSON(http.StatusOK, out)
}

func (a *Admin) approveDevice(c *gin.Context) {
	deviceID, err := a.Gateway.Devices.ApprovePairing(c.Request.Context(), c.Param("id"), actorMeta(c))
	if err != nil {
		writeError(c, err)
		return
	}
	d, _ := a.Gateway.Models.Devices.Device(deviceID)
	c.JSON(http.StatusOK, gin.H{"success": true, "requestId": c.Param("id"), "device": pairedWire(d)})
}

// approveAll approves every pending request (Moltworker's approve-all).
func (a *Admin) approveAll(c *gin.Context) {
	approved, failed := []gin.H{}, []gin.H{}
	for _, p := range a.Gateway.Models.Devices.Pending(time.Now()) {
		if _, err := a.Gateway.Devices.ApprovePairing(c.Request.Context(), p.RequestID, actorMeta(c)); err != nil {
			failed = append(failed, gin.H{"requestId": p.RequestID, "deviceId": p.DeviceID, "error": moltgate.ErrorMessage(err)})
			continue
		}
		approved = append(approved, gin.H{"requestId": p.RequestID, "deviceId": p.DeviceID})
	}
	c.JSON(http.StatusOK, gin.H{"approved": approved, "failed": failed})
}

func (a *Admin) rejectDevice(c *gin.Context) {
	var body struct {
		Reason string `json:"reason"`
	}
	if c.Request.ContentLength > 0 && c.ShouldBindJSON(&body) != nil {
		writeError(c, moltgate.Errorf(moltgate.EINVALID, "body must be JSON: {\"reason\": \"…\"}"))
		return
	}
	if err := a.Gateway.Devices.RejectPairing(c.Request.Context(), c.Param("id"), body.Reason, actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "requestId": c.Param("id")})
}

func (a *Admin) removeDevice(c *gin.Context) {
	if err := a.Gateway.Devices.RemoveDevice(c.Request.Context(), c.Param("id"), "removed in the admin", actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "deviceId": c.Param("id")})
}

func (a *Admin) storage(c *gin.Context) {
	st := a.Gateway.Log.Status(c.Request.Context())
	out := gin.H{"configured": st.Configured, "status": st, "lastSync": nil}
	if !st.LastSyncAt.IsZero() {
		out["lastSync"] = st.LastSyncAt
	}
	if st.Configured {
		// Best effort: a slow or dead bucket must not hang the page.
		ctx, cancel := context.WithTimeout(c.Request.Context(), 10*time.Second)
		defer cancel()
		if usage, err := a.Gateway.Log.BucketUsage(ctx); err == nil {
			out["bucket"] = usage
		} else {
			out["bucketError"] = err.Error()
		}
		if points, err := a.Gateway.Log.RestorePoints(ctx); err == nil {
			out["restorePoints"] = points
		}
	}
	if !st.Configured {
		out["missing"] = a.StorageMissing
		if len(a.StorageMissing) == 0 {
			out["missing"] = []string{"R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "CF_ACCOUNT_ID"}
		}
	}
	c.JSON(http.StatusOK, out)
}

// backupNow syncs and snapshots, answering only when the replica holds
// every event.
func (a *Admin) backupNow(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Minute)
	defer cancel()
	if err := a.Gateway.Log.SnapshotNow(ctx); err != nil {
		if err == eventlog.ErrNoReplica {
			writeError(c, moltgate.Errorf(moltgate.EUNAVAILABLE, "no replica is configured: set R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and CF_ACCOUNT_ID"))
			return
		}
		writeError(c, moltgate.Errorf(moltgate.EUNAVAILABLE, "backup failed: %v", err))
		return
	}
	st := a.Gateway.Log.Status(ctx)
	c.JSON(http.StatusOK, gin.H{"success": true, "lastSync": st.LastSyncAt, "status": st}) // a sync just succeeded: never zero
}

func (a *Admin) getConfig(c *gin.Context) {
	doc, hash := a.Gateway.Models.Config.Current()
	if doc == nil {
		doc = json.RawMessage(`{}`)
	}
	env := []gin.H{}
	for _, name := range a.EnvOverlay {
		env = append(env, gin.H{"name": name, "readOnly": true})
	}
	c.JSON(http.StatusOK, gin.H{"config": doc, "hash": hash, "history": a.Gateway.Models.Config.History(), "model": a.Gateway.modelInfo(), "environment": env})
}

func (a *Admin) putConfig(c *gin.Context) {
	var body struct {
		Config   json.RawMessage `json:"config"`
		BaseHash string          `json:"baseHash"`
	}
	if err := c.ShouldBindJSON(&body); err != nil || len(body.Config) == 0 {
		writeError(c, moltgate.Errorf(moltgate.EINVALID, "body must be JSON: {\"config\": {…}, \"baseHash\": \"…\"}"))
		return
	}
	hash, err := a.Gateway.Config.ApplyConfig(c.Request.Context(), body.Config, body.BaseHash, actorMeta(c))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "hash": hash})
}

// listEvents pages through the log, newest first, with the CLI's filters.
func (a *Admin) listEvents(c *gin.Context) {
	f := eventlog.Filter{TypePrefix: c.Query("type"), Stream: c.Query("stream"), Actor: c.Query("actor"), Desc: true, Limit: 100}
	var err error
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := c.Query(name); v != "" {
			if *dst, err = time.Parse(time.RFC3339, v); err != nil {
				writeError(c, moltgate.Errorf(moltgate.EINVALID, "%s must be an RFC 3339 time", name))
				return
			}
		}
	}
	for name, dst := range map[string]*int64{"before": &f.UntilSeq, "after": &f.AfterSeq} {
		if v := c.Query(name); v != "" {
			if *dst, err = strconv.ParseInt(v, 10, 64); err != nil {
				writeError(c, moltgate.Errorf(moltgate.EINVALID, "%s must be a seq", name))
				return
			}
		}
	}
	if f.UntilSeq > 0 {
		f.UntilSeq-- // "before" is exclusive
	}
	if v := c.Query("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > 1000 {
			writeError(c, moltgate.Errorf(moltgate.EINVALID, "limit must be 1-1000"))
			return
		}
	}
	events, err := a.Gateway.Log.Query(c.Request.Context(), f)
	if err != nil {
		writeError(c, err)
		return
	}
	if events == nil {
		events = []moltgate.Event{}
	}
	out := gin.H{"events": events}
	if len(events) == f.Limit {
		out["nextBefore"] = events[len(events)-1].Seq
	}
	c.JSON(http.StatusOK, out)
}

func (a *Admin) listSessions(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"sessions": a.Gateway.Models.Sessions.List()})
}

func (a *Admin) transcript(c *gin.Context) {
	if _, ok := a.Gateway.Models.Sessions.Get(c.Param("key")); !ok {
		writeError(c, moltgate.Errorf(moltgate.ENOTFOUND, "no session %q", c.Param("key")))
		return
	}
	msgs, err := a.Gateway.Chat.Transcript(c.Request.Context(), c.Param("key"), 0)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"sessionKey": c.Param("key"), "messages": msgs})
}

func (a *Admin) resetSession(c *gin.Context) {
	a.Gateway.Agent.Abort(c.Param("key"), "")
	id, err := a.Gateway.Chat.ResetSession(c.Request.Context(), c.Param("key"), actorMeta(c))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "sessionId": id})
}

// replay rebuilds the read models as they were at ?seq=N (or ?at=RFC3339)
// and returns them beside the current ones: the time machine.
func (a *Admin) replay(c *gin.Context) {
	ctx := c.Request.Context()
	seq := a.Gateway.Log.LastSeq()
	at := time.Now()
	if v := c.Query("seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > seq {
			writeError(c, moltgate.Errorf(moltgate.EINVALID, "seq must be between 0 and %d", seq))
			return
		}
		seq = n
	} else if v := c.Query("at"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(c, moltgate.Errorf(moltgate.EINVALID, "at must be an RFC 3339 time"))
			return
		}
		if seq, err = a.Gateway.Log.SeqAt(ctx, t); err != nil {
			writeError(c, err)
			return
		}
		at = t
	}
	then := projections.NewSet()
	r := projections.NewRunner(a.Gateway.Log, then.All()...)
	r.Logger = a.Gateway.Logger
	if seq > 0 {
		if _, err := r.RunUntil(ctx, seq); err != nil {
			writeError(c, err)
			return
		}
		if e, err := a.Gateway.Log.GetSeq(ctx, seq); err == nil && c.Query("at") == "" {
			at = e.RecordedAt // judge expiry at that moment
		}
	}
	view := then.View(seq, at)
	view.Errors = r.Errors()
	c.JSON(http.StatusOK, gin.H{"then": view, "now": a.Gateway.Models.View(a.Gateway.Log.LastSeq(), time.Now())})
}

//go:embed web/admin.html
var adminPage []byte

// page serves the admin UI. With Access it is guarded like the API; on a
// loopback box without Access the page itself holds nothing and its API
// calls carry the token it was opened with (?token=).
func (a *Admin) page(c *gin.Context) {
	if a.Access != nil && !a.DevMode {
		a.Access.Middleware()(c)
		if c.IsAborted() {
			return
		}
	} else if !a.DevMode && !isDirectLoopback(c.Request) {
		writeError(c, &moltgate.Error{Code: moltgate.EUNAVAILABLE,
			Message: "the admin needs Cloudflare Access: set " + strings.Join(a.AccessMissing, " and ")})
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Data(http.StatusOK, "text/html; charset=utf-8", adminPage)
}

func (a *Admin) whoami(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"actor": c.GetString(ActorKey), "devMode": a.DevMode})
}

// revokeToken revokes the device token and disconnects the device. It is
// also the rotation: a paired device without a token is handed a new one,
// once, on its next signed connect, so no token is ever shown here.
func (a *Admin) revokeToken(c *gin.Context) {
	if err := a.Gateway.Devices.RevokeToken(c.Request.Context(), c.Param("id"), actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "deviceId": c.Param("id")})
}

func (a *Admin) showEvent(c *gin.Context) {
	seq, err := strconv.ParseInt(c.Param("seq"), 10, 64)
	if err != nil {
		writeError(c, moltgate.Errorf(moltgate.EINVALID, "seq must be a number"))
		return
	}
	e, err := a.Gateway.Log.GetSeq(c.Request.Context(), seq)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, e)
}

// exportEvents streams the log (optionally filtered by type and stream) as
// JSON lines, oldest first.
func (a *Admin) exportEvents(c *gin.Context) {
	c.Header("Content-Type", "application/x-ndjson")
	c.Header("Content-Disposition", `attachment; filename="moltgate-events.jsonl"`)
	enc := json.NewEncoder(c.Writer)
	err := a.Gateway.Log.Scan(c.Request.Context(), eventlog.Filter{TypePrefix: c.Query("type"), Stream: c.Query("stream")}, func(e moltgate.Event) error {
		return enc.Encode(e)
	})
	if err != nil {
		a.Gateway.Logger.Error("event export stopped", "error", err)
	}
}

// configAt returns the document a config.applied event at seq stored.
func (a *Admin) configAt(ctx context.Context, seqText string) (json.RawMessage, error) {
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if err != nil {
		return nil, moltgate.Errorf(moltgate.EINVALID, "seq must be a number")
	}
	e, err := a.Gateway.Log.GetSeq(ctx, seq)
	if err != nil {
		return nil, err
	}
	if e.Type != moltgate.EventConfigApplied {
		return nil, moltgate.Errorf(moltgate.ENOTFOUND, "seq %d is a %s, not a config version", seq, e.Type)
	}
	var d moltgate.ConfigAppliedData
	if err := e.Decode(&d); err != nil {
		return nil, err
	}
	return d.Document, nil
}

func (a *Admin) configVersion(c *gin.Context) {
	doc, err := a.configAt(c.Request.Context(), c.Param("seq"))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"seq": c.Param("seq"), "config": doc})
}

// configDiff compares two versions (?from=SEQ&to=SEQ, to defaults to the
// current document) path by path.
func (a *Admin) configDiff(c *gin.Context) {
	from, err := a.configAt(c.Request.Context(), c.Query("from"))
	if err != nil {
		writeError(c, err)
		return
	}
	to, _ := a.Gateway.Models.Config.Current()
	if c.Query("to") != "" {
		if to, err = a.configAt(c.Request.Context(), c.Query("to")); err != nil {
			writeError(c, err)
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"changes": diffJSON(from, to)})
}

// revertConfig applies an old version again, as a new config.applied event.
func (a *Admin) revertConfig(c *gin.Context) {
	var body struct {
		Seq      int64  `json:"seq"`
		BaseHash string `json:"baseHash"`
	}
	if err := c.ShouldBindJSON(&body); err != nil || body.Seq <= 0 {
		writeError(c, moltgate.Errorf(moltgate.EINVALID, "body must be JSON: {\"seq\": N, \"baseHash\": \"…\"}"))
		return
	}
	doc, err := a.configAt(c.Request.Context(), strconv.FormatInt(body.Seq, 10))
	if err != nil {
		writeError(c, err)
		return
	}
	hash, err := a.Gateway.Config.ApplyConfig(c.Request.Context(), doc, body.BaseHash, actorMeta(c))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "hash": hash, "revertedTo": body.Seq})
}

// restart restarts the agent in-process: in-flight runs are aborted and
// recorded, then new messages are served again.
func (a *Admin) restart(c *gin.Context) {
	if a.Restart == nil {
		writeError(c, moltgate.Errorf(moltgate.EUNAVAILABLE, "restart is not available"))
		return
	}
	if err := a.Restart(c.Request.Context(), actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true})
}

// diffJSON lists the paths whose values differ between two documents.
func diffJSON(from, to json.RawMessage) []gin.H {
	a, b := map[string]string{}, map[string]string{}
	flatten("", decodeAny(from), a)
	flatten("", decodeAny(to), b)
	var paths []string
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	changes := []gin.H{}
	for _, p := range paths {
		va, inA := a[p]
		vb, inB := b[p]
		switch {
		case !inA:
			changes = append(changes, gin.H{"path": p, "op": "added", "to": vb})
		case !inB:
			changes = append(changes, gin.H{"path": p, "op": "removed", "from": va})
		case va != vb:
			changes = append(changes, gin.H{"path": p, "op": "changed", "from": va, "to": vb})
		}
	}
	return changes
}

func decodeAny(raw json.RawMessage) any {
	var v any
	_ = json.Unmarshal(raw, &v)
	return v
}

func flatten(prefix string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, x, out)
		}
	case []any:
		for i, x := range v {
			flatten(fmt.Sprintf("%s[%d]", prefix, i), x, out)
		}
	default:
		b, _ := json.Marshal(v)
		out[prefix] = string(b)
	}
}

func (a *Admin) listChannels(c *gin.Context) {
	now := time.Now()
	pending := []gin.H{}
	for _, p := range a.Gateway.Models.Channels.Pending("", now) {
		pending = append(pending, gin.H{"channel": p.Channel, "senderId": p.SenderID, "senderName": p.SenderName, "code": p.Code,
			"ageMs": now.Sub(p.RequestedAt).Milliseconds(), "expiresAtMs": p.ExpiresAt.UnixMilli()})
	}
	allow := gin.H{}
	for _, ch := range []string{"telegram", "discord", "slack"} {
		allow[ch] = a.Gateway.Models.Channels.Allowlist(ch)
	}
	c.JSON(http.StatusOK, gin.H{"pending": pending, "allowlists": allow})
}

func (a *Admin) channelPairing(approve bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		decide := a.Channels.RejectChannelPairing
		if approve {
			decide = a.Channels.ApproveChannelPairing
		}
		if err := decide(c.Request.Context(), c.Param("channel"), c.Param("code"), actorMeta(c)); err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"success": true, "channel": c.Param("channel"), "code": c.Param("code")})
	}
}

func (a *Admin) changeAllowlist(c *gin.Context) {
	var body struct {
		Add    []string `json:"add"`
		Remove []string `json:"remove"`
	}
	if err := c.ShouldBindJSON(&body); err != nil {
		writeError(c, moltgate.Errorf(moltgate.EINVALID, "body must be JSON: {\"add\": [ids], \"remove\": [ids]}"))
		return
	}
	if err := a.Channels.ChangeAllowlist(c.Request.Context(), c.Param("channel"), body.Add, body.Remove, actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "allowlist": a.Gateway.Models.Channels.Allowlist(c.Param("channel"))})
}

// validateConfig reports what applying a document would say, without
// applying it.
func (a *Admin) validateConfig(c *gin.Context) {
	var body struct {
		Config json.RawMessage `json:"config"`
	}
	if err := c.ShouldBindJSON(&body); err != nil || len(body.Config) == 0 {
		writeError(c, moltgate.Errorf(moltgate.EINVALID, "body must be JSON: {\"config\": {…}}"))
		return
	}
	issues := a.Validate(body.Config)
	c.JSON(http.StatusOK, gin.H{"valid": len(issues) == 0, "issues": issues})
}
