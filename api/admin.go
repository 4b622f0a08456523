package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

// Admin is the owner's JSON API under /api/admin (Moltworker's paths and
// shapes where it has them) and the admin page at /_admin/. Every action
// is an event whose actor is the authenticated person. Handlers live in
// one admin_*.go file per area; admin_stream.go pushes what the page
// shows as it changes.
type Admin struct {
	// Access verifies Cloudflare Access; nil when it is not configured.
	Access *Access
	// AccessMissing names the variables that would configure Access.
	AccessMissing []string
	// StorageMissing names the variables a partial replica config lacks.
	StorageMissing []string
	// Restart restarts the agent runner and the channel adapters
	// in-process and records gateway.restarted.
	Restart func(ctx context.Context, meta moltgate.Meta) error

	// Gateway is the gateway administered: its services, queries, log and
	// trust, its DEV_MODE and its token, which without Access admits
	// local requests that carry it.
	Gateway *Gateway
	History moltgate.History
	// EnvOverlay names the environment variables that configure the
	// gateway at run time; the admin shows them as read-only (never their
	// values).
	EnvOverlay []string
	// Channels decides chat-platform access.
	Channels moltgate.ChannelAccessService
	// SecretProblems lists sealed config values this gateway cannot open
	// (a log restored without its MOLTGATE_SECRET_KEY).
	SecretProblems func() []moltgate.ConfigIssue
	// Workspace edits the agent's workspace files.
	Workspace      moltgate.WorkspaceService
	WorkspaceFiles moltgate.WorkspaceQueries
}

// MaxAdminBody bounds an admin request body; larger ones get 413 before
// anything is read.
const MaxAdminBody = 1 << 20

// MountAdmin adds the admin API and the public status to the server.
func (s *Server) MountAdmin(a *Admin) {
	s.router.GET("/api/status", a.status)
	s.router.GET("/_admin/", a.Gateway.LimitFailures, a.page)
	s.router.GET("/_admin", func(c *gin.Context) { c.Redirect(http.StatusFound, "/_admin/") })
	g := s.router.Group("/api/admin", a.middleware()...)
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
	g.GET("/workspace", a.listWorkspace)
	g.PUT("/workspace/*path", a.writeWorkspace)
	g.DELETE("/workspace/*path", a.deleteWorkspace)
	g.GET("/sessions", a.listSessions)
	g.GET("/sessions/:key", a.transcript)
	g.POST("/sessions/:key/reset", a.resetSession)
	a.mountStream(s)
}

// middleware runs before every admin route: the failure limit, the body
// limit, the guard, and the refusal of cross-site writes.
func (a *Admin) middleware() gin.HandlersChain {
	return gin.HandlersChain{a.Gateway.LimitFailures, limitBody(MaxAdminBody), a.guard(), a.sameOrigin()}
}

// guard admits the owner: a local request in DEV_MODE, a local request
// carrying the gateway token (a laptop, a box without Access), or anyone
// Cloudflare Access vouches for. DEV_MODE never opens the admin to
// clients that are not local. Everything else gets 503 naming what to
// configure; the gateway itself keeps working.
func (a *Admin) guard() gin.HandlerFunc {
	return func(c *gin.Context) {
		local := a.Gateway.Trust.Local(c.Request)
		switch {
		case local && a.Gateway.DevMode:
			c.Set(ActorKey, "dev-mode")
			c.Next()
		case local && tokenEqual(bearer(c.Request), a.Gateway.Token):
			c.Set(ActorKey, "local-admin")
			c.Next()
		case a.Access != nil:
			a.Access.Middleware()(c)
		case local:
			writeError(c, moltgate.Errorf(moltgate.EUNAUTHORIZED, "send the gateway token as Authorization: Bearer <token>"))
		default:
			writeError(c, &moltgate.Error{Code: moltgate.EUNAVAILABLE,
				Message: "the admin needs Cloudflare Access: set " + strings.Join(a.AccessMissing, " and "),
				Details: map[string]any{"missing": a.AccessMissing}})
		}
	}
}

// limitBody refuses a body over n bytes with 413 before reading it (by
// its Content-Length), and cuts off one that grows past n while read.
func limitBody(n int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > n {
			writeError(c, moltgate.Errorf(moltgate.ETOOLARGE, "the request body is %d bytes; the limit is %d", c.Request.ContentLength, n))
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, n)
		c.Next()
	}
}

// sameOrigin refuses state-changing requests a browser sends from another
// site: the Access cookie would otherwise let any page the owner visits
// approve devices or change the config. Requests without Origin (the CLI,
// curl) carry their credential explicitly and pass.
func (a *Admin) sameOrigin() gin.HandlerFunc {
	return func(c *gin.Context) {
		switch c.Request.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			c.Next()
			return
		}
		r := c.Request
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			writeError(c, moltgate.Errorf(moltgate.EFORBIDDEN, "cross-site requests cannot change anything here"))
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			u, err := url.Parse(origin)
			host := r.Host
			if fh := r.Header.Get("X-Forwarded-Host"); fh != "" && a.Gateway.Trust.ViaTrustedProxy(r) {
				host = fh
			}
			if err != nil || !strings.EqualFold(u.Host, host) {
				writeError(c, moltgate.Errorf(moltgate.EFORBIDDEN, "requests from %s cannot change anything here", origin))
				return
			}
		}
		c.Next()
	}
}

// bindJSON decodes the body into v: 413 for a body over the limit, 400
// with usage for anything malformed. encoding/json rather than gin's
// binding: the validator behind ShouldBindJSON uses reflection that keeps
// every method of every type in the binary (see loading.go).
func bindJSON(c *gin.Context, v any, usage string) error {
	return bodyError(json.NewDecoder(c.Request.Body).Decode(v), usage)
}

// bindRequired is bindJSON for a body that must also be complete: 400
// with usage when complete, asked after decoding, says it is not.
func bindRequired(c *gin.Context, v any, usage string, complete func() bool) error {
	if err := bindJSON(c, v, usage); err != nil {
		return err
	}
	if !complete() {
		return moltgate.Errorf(moltgate.EINVALID, "body must be JSON: %s", usage)
	}
	return nil
}

// bindOptionalJSON is bindJSON for a body that may be left out: no body,
// whatever its framing (an empty chunked body has no Content-Length
// either), leaves v as it is.
func bindOptionalJSON(c *gin.Context, v any, usage string) error {
	if err := json.NewDecoder(c.Request.Body).Decode(v); err != io.EOF {
		return bodyError(err, usage)
	}
	return nil
}

// bodyError is what the client is told of a body that did not decode.
func bodyError(err error, usage string) error {
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return moltgate.Errorf(moltgate.ETOOLARGE, "the request body is over %d bytes", tooBig.Limit)
	}
	return moltgate.Errorf(moltgate.EINVALID, "body must be JSON: %s", usage)
}

func bearer(r *http.Request) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

func (a *Admin) actorMeta(c *gin.Context) moltgate.Meta {
	return moltgate.Meta{Actor: c.GetString(ActorKey), Source: moltgate.SourceUI, RemoteIP: a.Gateway.Trust.ClientIP(c.Request), CorrelationID: c.GetString(requestIDKey)}
}

// status is public: whether the gateway serves, and whether its replica
// is healthy. Mounted routes are served only once the server is ready
// (while it starts, the loading answer says so instead).
func (a *Admin) status(c *gin.Context) {
	st := a.Gateway.Storage.Status(c.Request.Context())
	c.JSON(http.StatusOK, gin.H{"ready": true, "version": moltgate.Version,
		"storage": gin.H{"configured": st.Configured, "lastSyncAt": st.LastSyncAt, "lagEvents": st.LagEvents, "healthy": st.LastError == ""}})
}

//go:embed web/admin.html
var adminHTML string

// adminPage is served, like the chat, with a CSP that runs only its own
// inline script and style.
var adminPage = mustHashedPage(adminHTML, nil)

// page serves the admin UI, guarded like the API. The page itself holds
// nothing: on a box without Access its API calls carry the token it was
// opened with (?token=).
func (a *Admin) page(c *gin.Context) {
	local := a.Gateway.Trust.Local(c.Request)
	switch {
	case local && (a.Gateway.DevMode || a.Access == nil):
	case a.Access != nil:
		a.Access.Middleware()(c)
		if c.IsAborted() {
			return
		}
	default:
		writeError(c, moltgate.Errorf(moltgate.EUNAVAILABLE, "the admin needs Cloudflare Access: set %s", strings.Join(a.AccessMissing, " and ")))
		return
	}
	adminPage.serve(c)
}

func (a *Admin) whoami(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"actor": c.GetString(ActorKey), "devMode": a.Gateway.DevMode})
}

// restart restarts the agent and the channels in-process: in-flight runs
// are aborted and recorded, then new messages are served again.
func (a *Admin) restart(c *gin.Context) {
	if a.Restart == nil {
		writeError(c, moltgate.Errorf(moltgate.EUNAVAILABLE, "restart is not available"))
		return
	}
	if err := a.Restart(c.Request.Context(), a.actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true})
}
