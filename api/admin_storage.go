package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

func (a *Admin) storage(c *gin.Context) {
	st := a.Gateway.Storage.Status(c.Request.Context())
	out := gin.H{"configured": st.Configured, "status": st, "lastSync": nil}
	if !st.LastSyncAt.IsZero() {
		out["lastSync"] = st.LastSyncAt
	}
	if st.Configured {
		// Best effort: a slow or dead bucket must not hang the page.
		ctx, cancel := context.WithTimeout(c.Request.Context(), 10*time.Second)
		defer cancel()
		if usage, err := a.Gateway.Storage.BucketUsage(ctx); err == nil {
			out["bucket"] = usage
		} else {
			out["bucketError"] = err.Error()
		}
		if points, err := a.Gateway.Storage.RestorePoints(ctx); err == nil {
			out["restorePoints"] = points
		}
	} else {
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
	if err := a.Gateway.Storage.SnapshotNow(ctx); err != nil {
		writeError(c, err)
		return
	}
	st := a.Gateway.Storage.Status(ctx)
	c.JSON(http.StatusOK, gin.H{"success": true, "lastSync": st.LastSyncAt, "status": st}) // a sync just succeeded: never zero
}
