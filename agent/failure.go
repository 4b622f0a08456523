package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/openai/openai-go/v3"
)

// fallbackReason says whether another model may succeed where this one
// failed, and why in a few words. Only failures of the provider's service
// qualify: rate limits (429), server errors (5xx, Anthropic's 529),
// request timeouts (408) and connections that failed or broke before the
// reply was complete. A request the provider refused (400 bad request,
// 401/403 a key that is wrong or not allowed, 404 a model or URL that does
// not exist) is a configuration mistake the owner must see, so it is
// reported instead of hidden behind a fallback; so is anything not
// recognised.
func fallbackReason(err error) (string, bool) {
	if status := httpStatus(err); status != 0 {
		text := strings.TrimSpace(fmt.Sprintf("HTTP %d %s", status, http.StatusText(status)))
		return text, status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
	}
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &netErr) && netErr.Timeout():
		return "the connection timed out", true
	case errors.As(err, &opErr):
		return "connection error: " + opErr.Op, true
	case errors.Is(err, errIncomplete), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the connection broke before the reply was complete", true
	}
	return "", false
}

// httpStatus is the status of a provider's error answer, 0 when err is
// not one.
func httpStatus(err error) int {
	var ae *anthropic.Error
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	var oe *openai.Error
	if errors.As(err, &oe) {
		return oe.StatusCode
	}
	return 0
}

// safeError is an error's text for users: provider errors carry no
// credentials, but are trimmed to a line of at most 300 characters.
func safeError(err error) string {
	if err == nil {
		return "unknown error"
	}
	line, _, _ := strings.Cut(err.Error(), "\n")
	return shorten(line, 300)
}
