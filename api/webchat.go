package api

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

//go:embed web/chat.html
var chatPage []byte

// WebChat serves the web chat: one page that speaks the gateway protocol
// over /ws like any other client. The token and the device key never leave
// the browser except in the signed connect. Model output is rendered by a
// small Markdown renderer that escapes everything first, so a reply cannot
// inject markup.
func WebChat(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Referrer-Policy", "no-referrer")
	c.Data(http.StatusOK, "text/html; charset=utf-8", chatPage)
}
