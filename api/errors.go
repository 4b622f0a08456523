package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	moltgate "github.com/moltgate/moltgate"
)

// Gateway protocol error codes (OpenClaw protocol v4).
const (
	CodeInvalidRequest = "INVALID_REQUEST"
	CodeNotPaired      = "NOT_PAIRED"
	CodeUnavailable    = "UNAVAILABLE"
	CodeForbidden      = "FORBIDDEN"
	CodeAgentTimeout   = "AGENT_TIMEOUT"
)

// wireError is an error as the gateway protocol and the JSON API send it.
type wireError struct {
	Code         string         `json:"code"`
	Message      string         `json:"message"`
	Details      map[string]any `json:"details,omitempty"`
	Retryable    bool           `json:"retryable,omitempty"`
	RetryAfterMs int64          `json:"retryAfterMs,omitempty"`
}

// toWire is the one place that turns an error into what a client sees:
// moltgate codes map onto protocol codes and HTTP statuses, and anything
// that is not a *moltgate.Error is reported without its internals.
func toWire(err error) (wireError, int) {
	var e *moltgate.Error
	if !errors.As(err, &e) {
		return wireError{Code: CodeUnavailable, Message: "internal error", Retryable: true}, http.StatusInternalServerError
	}
	w := wireError{Message: e.Message, Details: e.Details}
	status := http.StatusBadRequest
	detail := func(code string) {
		if w.Details == nil {
			w.Details = map[string]any{}
		}
		w.Details["code"] = code
	}
	switch e.Code {
	case moltgate.EINVALID:
		w.Code = CodeInvalidRequest
	case moltgate.ENOTFOUND:
		w.Code, status = CodeInvalidRequest, http.StatusNotFound
		detail("NOT_FOUND")
	case moltgate.ECONFLICT:
		w.Code, status = CodeInvalidRequest, http.StatusConflict
		detail("CONFLICT")
	case moltgate.ENOTPAIRED:
		w.Code, status = CodeNotPaired, http.StatusForbidden
	case moltgate.EFORBIDDEN:
		w.Code, status = CodeForbidden, http.StatusForbidden
	case moltgate.EUNAUTHORIZED:
		w.Code, status = CodeForbidden, http.StatusUnauthorized
	case moltgate.ETIMEOUT:
		w.Code, status, w.Retryable = CodeAgentTimeout, http.StatusGatewayTimeout, true
	case moltgate.EUNAVAILABLE:
		w.Code, status, w.Retryable = CodeUnavailable, http.StatusServiceUnavailable, true
	default:
		w.Code, status, w.Retryable = CodeUnavailable, http.StatusInternalServerError, true
		w.Message = "internal error"
	}
	return w, status
}

// writeError answers an HTTP request with err.
func writeError(c *gin.Context, err error) {
	w, status := toWire(err)
	c.AbortWithStatusJSON(status, gin.H{"error": w})
}
