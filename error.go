package moltgate

import (
	"errors"
	"fmt"
)

// Error codes. They map onto HTTP statuses and gateway protocol error codes
// in one place (the api package), so handlers only ever return *Error.
const (
	EINVALID      = "invalid"      // bad input: malformed, missing or out of range
	ENOTFOUND     = "not_found"    // no such device, request, session, event
	ECONFLICT     = "conflict"     // optimistic concurrency: stale version or hash
	EUNAUTHORIZED = "unauthorized" // no or wrong credential
	EFORBIDDEN    = "forbidden"    // authenticated but not allowed
	ENOTPAIRED    = "not_paired"   // device needs approval
	EUNAVAILABLE  = "unavailable"  // not ready, dependency down, shutting down
	ETIMEOUT      = "timeout"      // a bounded wait ran out
	ETOOLARGE     = "too_large"    // a body, frame or message over its limit
	ETOOMANY      = "too_many"     // a rate or count limit: try again later
	EINTERNAL     = "internal"     // a bug or an unexpected failure
)

// Error is moltgate's one error type: a code a program can switch on and a
// message that is safe to show a client (never a secret, never a stack).
type Error struct {
	Code    string
	Message string
	Details map[string]any
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// HTTPStatus is the HTTP status an error code answers with: the one table
// every handler (the api package, the browser's CDP endpoints) uses.
func HTTPStatus(code string) int {
	switch code {
	case EINVALID:
		return 400
	case EUNAUTHORIZED:
		return 401
	case EFORBIDDEN, ENOTPAIRED:
		return 403
	case ENOTFOUND:
		return 404
	case ECONFLICT:
		return 409
	case ETOOLARGE:
		return 413
	case ETOOMANY:
		return 429
	case EUNAVAILABLE:
		return 503
	case ETIMEOUT:
		return 504
	default:
		return 500
	}
}

// ErrorCode returns the code of err, EINTERNAL for errors that are not an
// *Error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// ErrorMessage returns the client-safe message of err. Errors that are not
// an *Error may carry internals, so clients only see a generic message.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	default:
		return "internal error"
	}
}
