package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

func (a *Admin) listSessions(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"sessions": a.Gateway.Queries.ListSessions()})
}

func (a *Admin) transcript(c *gin.Context) {
	if _, ok := a.Gateway.Queries.Session(moltgate.CanonicalSessionKey(c.Param("key"))); !ok {
		writeError(c, moltgate.Errorf(moltgate.ENOTFOUND, "no session %q", moltgate.CanonicalSessionKey(c.Param("key"))))
		return
	}
	msgs, err := a.Gateway.Chat.Transcript(c.Request.Context(), moltgate.CanonicalSessionKey(c.Param("key")), 0)
	if err != nil {
		writeError(c, err)
		return
	}
	for i := range msgs {
		msgs[i] = redactMessage(msgs[i])
	}
	c.JSON(http.StatusOK, gin.H{"sessionKey": moltgate.CanonicalSessionKey(c.Param("key")), "messages": msgs})
}

func (a *Admin) resetSession(c *gin.Context) {
	a.Gateway.Runs.Abort(moltgate.CanonicalSessionKey(c.Param("key")), "")
	id, err := a.Gateway.Chat.ResetSession(c.Request.Context(), moltgate.CanonicalSessionKey(c.Param("key")), a.actorMeta(c))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "sessionId": id})
}
