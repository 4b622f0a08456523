package api

import (
	"net/http"
	"net/http/pprof"
	"runtime/debug"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

// MountDebug adds /debug/* (only when DEBUG_ROUTES=true), behind the same
// guard as the admin: profiles, read-model dumps, replay, build info.
// Nothing here runs commands or prints secrets (the read models hold
// token hashes, never tokens, and config secrets are shown redacted).
func (s *Server) MountDebug(a *Admin) {
	g := s.router.Group("/debug", a.middleware()...)
	g.GET("/pprof/*profile", func(c *gin.Context) {
		switch c.Param("profile") {
		case "/cmdline":
			c.AbortWithStatus(http.StatusNotFound) // the command line may carry secrets
		case "/profile":
			pprof.Profile(c.Writer, c.Request)
		case "/trace":
			pprof.Trace(c.Writer, c.Request)
		case "/symbol":
			pprof.Symbol(c.Writer, c.Request)
		default:
			pprof.Index(c.Writer, c.Request)
		}
	})
	g.GET("/models", func(c *gin.Context) {
		c.JSON(http.StatusOK, a.Gateway.currentView())
	})
	g.GET("/replay", a.replay)
	g.GET("/build", func(c *gin.Context) {
		info, ok := debug.ReadBuildInfo()
		if !ok {
			writeError(c, moltgate.Errorf(moltgate.EUNAVAILABLE, "this binary carries no build information"))
			return
		}
		deps := map[string]string{}
		for _, d := range info.Deps {
			deps[d.Path] = d.Version
		}
		c.JSON(http.StatusOK, gin.H{"go": info.GoVersion, "path": info.Path, "main": info.Main.Version, "deps": deps, "settings": info.Settings})
	})
}
