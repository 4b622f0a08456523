package api

import (
	"errors"
	"log/slog"
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

// isInternal reports whether err is a bug or an unexpected failure, whose
// text must not reach a client.
func isInternal(err error) bool {
	var e *moltgate.Error
	return !errors.As(err, &e) || e.Code == moltgate.EINTERNAL
}

// toWire is the one place that turns an error into what a client sees:
// moltgate codes map onto protocol codes and HTTP statuses, and anything
// that is not a *moltgate.Error is reported without its internals (the
// caller logs it with the request id first).
func toWire(err error) (wireError, int) {
	var e *moltgate.Error
	if !errors.As(err, &e) {
		return wireError{Code: CodeUnavailable, Message: "internal error", Retryable: true}, http.StatusInternalServerError
	}
	w := wireError{Message: e.Message, Details: e.Details}
	status := moltgate.HTTPStatus(e.Code)
	detail := func(code string) {
		if w.Details == nil {
			w.Details = map[string]any{}
		}
		if _, set := w.Details["code"]; !set {
			w.Details["code"] = code
		}
	}
	switch e.Code {
	case moltgate.EINVALID:
		w.Code = CodeInvalidRequest
	case moltgate.ENOTFOUND:
		w.Code = CodeInvalidRequest
		detail("NOT_FOUND")
	case moltgate.ECONFLICT:
		w.Code = CodeInvalidRequest
		detail("CONFLICT")
	case moltgate.ETOOLARGE:
		w.Code = CodeInvalidRequest
		detail("TOO_LARGE")
	case moltgate.ETOOMANY:
		w.Code, w.Retryable = CodeUnavailable, true
		detail("RATE_LIMITED")
	case moltgate.ENOTPAIRED:
		w.Code = CodeNotPaired
	case moltgate.EFORBIDDEN, moltgate.EUNAUTHORIZED:
		w.Code = CodeForbidden
	case moltgate.ETIMEOUT:
		w.Code, w.Retryable = CodeAgentTimeout, true
	case moltgate.EUNAVAILABLE:
		w.Code, w.Retryable = CodeUnavailable, true
	default:
		w = wireError{Code: CodeUnavailable, Message: "internal error", Retryable: true}
	}
	return w, status
}

// Keys the server leaves in every gin context.
const (
	requestIDKey = "moltgate.requestId"
	loggerKey    = "moltgate.logger"
)

// writeError answers an HTTP request with err. An internal error is logged
// with the request id before the generic answer goes out, and the answer
// carries the id, so a report can be matched with the log.
func writeError(c *gin.Context, err error) {
	w, status := toWire(err)
	if isInternal(err) {
		id := c.GetString(requestIDKey)
		logger, _ := c.Get(loggerKey)
		if l, ok := logger.(*slog.Logger); ok {
			l.Error("internal error", "requestId", id, "method", c.Request.Method, "path", c.Request.URL.Path, "error", err)
		}
		w.Details = map[string]any{"requestId": id}
	}
	c.AbortWithStatusJSON(status, gin.H{"error": w})
}
