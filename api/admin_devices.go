package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

func (a *Admin) listDevices(c *gin.Context) {
	c.JSON(http.StatusOK, a.Gateway.deviceLists())
}

// The owner holds every scope, so the admin may grant any.
func (a *Admin) approveDevice(c *gin.Context) {
	d, err := a.Gateway.Devices.ApprovePairing(c.Request.Context(), c.Param("id"), moltgate.OwnerScopes, a.actorMeta(c))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "requestId": c.Param("id"), "device": deviceWire(d)})
}

// approveAll approves every pending request (Moltworker's approve-all),
// one command each: a request that fails (expired, decided meanwhile) is
// listed with its reason and does not stop the others.
func (a *Admin) approveAll(c *gin.Context) {
	approved, failed := []gin.H{}, []gin.H{}
	for _, p := range a.Gateway.Queries.PendingDevices(time.Now()) {
		if _, err := a.Gateway.Devices.ApprovePairing(c.Request.Context(), p.RequestID, moltgate.OwnerScopes, a.actorMeta(c)); err != nil {
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
	if err := bindOptionalJSON(c, &body, `{"reason": "…"}`); err != nil {
		writeError(c, err)
		return
	}
	if _, err := a.Gateway.Devices.RejectPairing(c.Request.Context(), c.Param("id"), body.Reason, a.actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "requestId": c.Param("id")})
}

func (a *Admin) removeDevice(c *gin.Context) {
	if err := a.Gateway.Devices.RemoveDevice(c.Request.Context(), c.Param("id"), "removed in the admin", a.actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "deviceId": c.Param("id")})
}

// revokeToken revokes the device token and disconnects the device. It is
// also the rotation: a paired device without a token is handed a new one,
// once, on its next signed connect, so no token is ever shown here.
func (a *Admin) revokeToken(c *gin.Context) {
	if err := a.Gateway.Devices.RevokeToken(c.Request.Context(), c.Param("id"), a.actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "deviceId": c.Param("id")})
}
