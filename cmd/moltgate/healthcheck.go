package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runHealthcheck asks the gateway on this machine whether it is ready:
// the container's HEALTHCHECK (the image has no curl). It exits 0 when
// /readyz answers 200, and otherwise says why.
func runHealthcheck(ctx context.Context, env Env, stdout io.Writer) error {
	host, port, err := net.SplitHostPort(env.Listen())
	if err != nil {
		return fmt.Errorf("MOLTGATE_LISTEN %q is not host:port", env.Listen())
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every address: ask over loopback
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the gateway does not answer at %s: %w", url, err)
	}
	defer res.Body.Close()
	var body struct {
		Ready bool   `json:"ready"`
		Stage string `json:"stage"`
	}
	_ = json.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(&body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready (%d): %s", res.StatusCode, body.Stage)
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}
