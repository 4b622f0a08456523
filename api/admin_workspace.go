package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

// listWorkspace returns the workspace files, credentials in them redacted.
func (a *Admin) listWorkspace(c *gin.Context) {
	files := []moltgate.WorkspaceFile{}
	if a.WorkspaceFiles != nil {
		for _, f := range a.WorkspaceFiles.WorkspaceFiles() {
			f.Content = moltgate.RedactText(f.Content)
			files = append(files, f)
		}
	}
	c.JSON(http.StatusOK, gin.H{"files": files})
}

func (a *Admin) writeWorkspace(c *gin.Context) {
	if a.Workspace == nil {
		writeError(c, moltgate.Errorf(moltgate.EUNAVAILABLE, "the workspace is not available"))
		return
	}
	var body struct {
		Content *string `json:"content"`
	}
	if err := bindRequired(c, &body, `{"content": "…"}`, func() bool { return body.Content != nil }); err != nil {
		writeError(c, err)
		return
	}
	if err := a.Workspace.WriteWorkspaceFile(c.Request.Context(), c.Param("path"), *body.Content, a.actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "path": c.Param("path")})
}

func (a *Admin) deleteWorkspace(c *gin.Context) {
	if a.Workspace == nil {
		writeError(c, moltgate.Errorf(moltgate.EUNAVAILABLE, "the workspace is not available"))
		return
	}
	if err := a.Workspace.DeleteWorkspaceFile(c.Request.Context(), c.Param("path"), a.actorMeta(c)); err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true})
}
