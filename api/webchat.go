package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// WebChat serves the web chat page.
func WebChat(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "text/html; charset=utf-8", []byte(`<!doctype html><title>moltgate</title><p>moltgate is running. Connect an OpenClaw client to this URL.</p>`))
}
