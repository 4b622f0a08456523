package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

func (a *Admin) listChannels(c *gin.Context) {
	pending := sendersWire(a.Gateway.Queries.PendingSenders("", time.Now()))
	allow := gin.H{}
	for _, ch := range moltgate.ChannelNames {
		allow[ch] = a.Gateway.Queries.Allowlist(ch)
	}
	c.JSON(http.StatusOK, gin.H{"pending": pending, "allowlists": allow, "status": a.Gateway.channelStatuses()})
}

// channelPairing approves or rejects a code; an approval tells the sender
// unless the body says {"notify": false}.
func (a *Admin) channelPairing(approve bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		body := struct {
			Notify *bool `json:"notify"`
		}{}
		if err := bindOptionalJSON(c, &body, `{"notify": true}`); err != nil {
			writeError(c, err)
			return
		}
		var err error
		var sender moltgate.PendingSender
		if approve {
			sender, err = a.Channels.ApproveChannelPairing(c.Request.Context(), c.Param("channel"), c.Param("code"), moltgate.IsEnabled(body.Notify, true), a.actorMeta(c))
		} else {
			sender, err = a.Channels.RejectChannelPairing(c.Request.Context(), c.Param("channel"), c.Param("code"), a.actorMeta(c))
		}
		if err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"success": true, "channel": c.Param("channel"), "code": sender.Code, "senderId": sender.SenderID})
	}
}

func (a *Admin) changeAllowlist(c *gin.Context) {
	var body struct {
		Add    []string `json:"add"`
		Remove []string `json:"remove"`
	}
	if err := bindJSON(c, &body, `{"add": [ids], "remove": [ids]}`); err != nil {
		writeError(c, err)
		return
	}
	if err := a.Channels.ChangeAllowlist(c.Request.Context(), c.Param("channel"), body.Add, body.Remove, a.actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "allowlist": a.Gateway.Queries.Allowlist(c.Param("channel"))})
}
