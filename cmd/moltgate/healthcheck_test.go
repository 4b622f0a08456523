package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/moltgate/moltgate/api"
)

func TestHealthcheck(t *testing.T) {
	_, env := testEnv(t, nil)
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(g.server.URL(), "http://"))
	// The container listens on 0.0.0.0: the check asks over loopback.
	_, probe := testEnv(t, map[string]string{"MOLTGATE_LISTEN": "0.0.0.0:" + port})
	var out bytes.Buffer
	if err := run(context.Background(), probe, []string{"healthcheck"}, &out, io.Discard); err != nil || strings.TrimSpace(out.String()) != "ready" {
		t.Fatalf("healthcheck of a ready gateway = %q, %v", out.String(), err)
	}
	g.close(context.Background())
	if err := run(context.Background(), probe, []string{"healthcheck"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("healthcheck of a stopped gateway = %v", err)
	}
}

// A gateway still starting answers, but is not ready: the check fails and
// says the stage it is at.
func TestHealthcheck_NotReady(t *testing.T) {
	s := api.NewServer("127.0.0.1:0")
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	s.SetStage("rebuilding read models: 40%")
	_, probe := testEnv(t, map[string]string{"MOLTGATE_LISTEN": strings.TrimPrefix(s.URL(), "http://")})
	var out bytes.Buffer
	err := run(context.Background(), probe, []string{"healthcheck"}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not ready (503): rebuilding read models: 40%") || out.Len() != 0 {
		t.Fatalf("healthcheck of a starting gateway = %v (printed %q)", err, out.String())
	}
}
