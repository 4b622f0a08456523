package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGatewayToken(t *testing.T) {
	t.Run("GeneratedOnALaptop", func(t *testing.T) {
		vars, env := testEnv(t, nil)
		tok, generated, err := gatewayToken(env)
		if err != nil || !generated || len(tok) < 16 {
			t.Fatalf("token %q generated %v err %v", tok, generated, err)
		}
		st, err := os.Stat(filepath.Join(vars["MOLTGATE_DATA_DIR"], "gateway-token"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("token file: %v %v", st, err)
		}
		again, _, _ := gatewayToken(env)
		if again != tok {
			t.Fatal("the token changed between starts")
		}
	})
	t.Run("FromEnv", func(t *testing.T) {
		_, env := testEnv(t, map[string]string{"MOLTBOT_GATEWAY_TOKEN": "0123456789abcdef0123"})
		if tok, generated, err := gatewayToken(env); err != nil || generated || tok != "0123456789abcdef0123" {
			t.Fatalf("%q %v %v", tok, generated, err)
		}
	})
	t.Run("RequiredBeyondLoopback", func(t *testing.T) {
		_, env := testEnv(t, map[string]string{"MOLTGATE_LISTEN": "0.0.0.0:18789"})
		if _, _, err := gatewayToken(env); err == nil || !strings.Contains(err.Error(), "MOLTBOT_GATEWAY_TOKEN") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("TooShort", func(t *testing.T) {
		_, env := testEnv(t, map[string]string{"MOLTBOT_GATEWAY_TOKEN": "abc"})
		if _, _, err := gatewayToken(env); err == nil {
			t.Fatal("a 3-character token was accepted")
		}
	})
}

func TestServe_PrintsTheURLWithTheToken(t *testing.T) {
	vars, env := testEnv(t, nil)
	var out strings.Builder
	g := &gateway{env: env, logger: discardLogger(), stderr: &out}
	if err := g.open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer g.close(t.Context())
	tok, _ := os.ReadFile(filepath.Join(vars["MOLTGATE_DATA_DIR"], "gateway-token"))
	if !strings.Contains(out.String(), "/?token="+strings.TrimSpace(string(tok))) {
		t.Fatalf("start-up output %q lacks the URL with the token", out.String())
	}
}
