package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

// getConfig returns the document with secrets redacted, its hash and
// history, the environment overlay (names only) and the sealed secrets
// this gateway cannot open.
func (a *Admin) getConfig(c *gin.Context) {
	doc, hash := a.Gateway.Queries.CurrentConfig()
	if doc == nil {
		doc = json.RawMessage(`{}`)
	}
	env := []gin.H{}
	for _, name := range a.EnvOverlay {
		env = append(env, gin.H{"name": name, "readOnly": true})
	}
	problems := []moltgate.ConfigIssue{}
	if a.SecretProblems != nil {
		problems = nonNilIssues(a.SecretProblems())
	}
	c.JSON(http.StatusOK, gin.H{"config": moltgate.RedactSealed(doc), "hash": hash, "history": a.Gateway.Queries.ConfigHistory(),
		"model": a.Gateway.modelInfo(), "environment": env, "secretProblems": problems})
}

func (a *Admin) putConfig(c *gin.Context) {
	var body struct {
		Config   json.RawMessage `json:"config"`
		BaseHash string          `json:"baseHash"`
	}
	if err := bindRequired(c, &body, `{"config": {…}, "baseHash": "…"}`, func() bool { return len(body.Config) > 0 }); err != nil {
		writeError(c, err)
		return
	}
	res, err := a.Gateway.Config.ApplyConfig(c.Request.Context(), body.Config, body.BaseHash, a.actorMeta(c))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "hash": res.Hash, "changed": res.Changed, "warnings": nonNilIssues(res.Warnings)})
}

// validateConfig reports what applying a document would say, without
// applying it.
func (a *Admin) validateConfig(c *gin.Context) {
	var body struct {
		Config json.RawMessage `json:"config"`
	}
	if err := bindRequired(c, &body, `{"config": {…}}`, func() bool { return len(body.Config) > 0 }); err != nil {
		writeError(c, err)
		return
	}
	issues, warnings := a.Gateway.Config.CheckConfig(c.Request.Context(), body.Config)
	c.JSON(http.StatusOK, gin.H{"valid": len(issues) == 0, "issues": nonNilIssues(issues), "warnings": nonNilIssues(warnings)})
}

func (a *Admin) configVersion(c *gin.Context) {
	seq, err := strconv.ParseInt(c.Param("seq"), 10, 64)
	if err != nil {
		writeError(c, moltgate.Errorf(moltgate.EINVALID, "seq must be a number"))
		return
	}
	doc, err := a.History.ConfigAt(c.Request.Context(), seq)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"seq": seq, "config": doc})
}

// configDiff compares two versions (?from=SEQ&to=SEQ, to defaults to the
// current document) path by path.
func (a *Admin) configDiff(c *gin.Context) {
	from, err := strconv.ParseInt(c.Query("from"), 10, 64)
	if err != nil {
		writeError(c, moltgate.Errorf(moltgate.EINVALID, "from must be the seq of a config version"))
		return
	}
	var to int64
	if v := c.Query("to"); v != "" {
		if to, err = strconv.ParseInt(v, 10, 64); err != nil {
			writeError(c, moltgate.Errorf(moltgate.EINVALID, "to must be the seq of a config version"))
			return
		}
	}
	changes, err := a.History.DiffConfig(c.Request.Context(), from, to)
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"changes": changes})
}

// revertConfig applies an old version again, as a new config.applied event.
func (a *Admin) revertConfig(c *gin.Context) {
	var body struct {
		Seq      int64  `json:"seq"`
		BaseHash string `json:"baseHash"`
	}
	if err := bindRequired(c, &body, `{"seq": N, "baseHash": "…"}`, func() bool { return body.Seq > 0 }); err != nil {
		writeError(c, err)
		return
	}
	res, err := a.Gateway.Config.RevertConfig(c.Request.Context(), body.Seq, body.BaseHash, a.actorMeta(c))
	if err != nil {
		writeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "hash": res.Hash, "revertedTo": body.Seq, "warnings": nonNilIssues(res.Warnings)})
}
