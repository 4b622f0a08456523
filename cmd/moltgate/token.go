package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// gatewayToken returns MOLTBOT_GATEWAY_TOKEN, or on a loopback-only
// gateway (a laptop) a token generated on first start and kept in the data
// directory (mode 0600, never in the event log), as Jupyter does. A
// gateway that listens beyond loopback (a container behind the Worker)
// must be given the token: starting without one is an error that names
// the variable.
func gatewayToken(env Env) (token string, generated bool, err error) {
	if t := env.get("MOLTBOT_GATEWAY_TOKEN", ""); t != "" {
		if len(t) < 16 {
			return "", false, fmt.Errorf("MOLTBOT_GATEWAY_TOKEN is too short: use at least 16 characters (for example: openssl rand -hex 32)")
		}
		return t, false, nil
	}
	if !loopbackOnly(env.Listen()) {
		return "", false, fmt.Errorf("MOLTBOT_GATEWAY_TOKEN is not set: a gateway listening on %s must have one (for example: openssl rand -hex 32)", env.Listen())
	}
	path := filepath.Join(env.DataDir(), "gateway-token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), true, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("cannot read the gateway token: %w", err)
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	token = base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.MkdirAll(env.DataDir(), 0o700); err != nil {
		return "", false, err
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("cannot keep the gateway token: %w", err)
	}
	return token, true, nil
}

// loopbackOnly reports whether addr accepts connections from this machine only.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
