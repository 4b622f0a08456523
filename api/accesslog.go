package api

import (
	"time"

	"github.com/gin-gonic/gin"
)

// logRequest logs each request's method, path, status and duration at
// debug level. The query string is left out on purpose: the web chat's
// first visit carries the gateway token in ?token=, and secrets never reach
// the logs.
func (s *Server) logRequest(c *gin.Context) {
	start := time.Now()
	c.Next()
	s.Logger.Debug("http", "method", c.Request.Method, "path", c.Request.URL.Path, "status", c.Writer.Status(),
		"ms", time.Since(start).Milliseconds(), "ip", s.Trust.ClientIP(c.Request), "requestId", c.GetString(requestIDKey))
}
