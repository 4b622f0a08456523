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
	key := moltgate.CanonicalSessionKey(c.Param("key"))
	if _, ok := a.Gateway.Queries.Session(key); !ok {
		writeError(c, moltgate.Errorf(moltgate.ENOTFOUND, "no session %q", key))
		return
	}
	msgs, err := a.Gateway.Chat.Transcript(c.Request.Context(), key, 0)
	if err != nil {
		writeError(c, err)
		return
	}
	for i := range msgs {
		msgs[i] = redactMessage(msgs[i])
	}
	c.JSON(http.StatusOK, gin.H{"sessionKey": key, "messages": msgs})
}

func (a *Admin) resetSession(c *gin.Context) {
	key := moltgate.CanonicalSessionKey(c.Param("key"))
	a.Gateway.Runs.Abort(key, "")
	id, err := a.Gateway.Chat.ResetSession(c.Request.Context(), key, a.actorMeta(c))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "sessionId": id})
}
