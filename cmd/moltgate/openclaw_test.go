package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// openclawCLI is the real OpenClaw CLI, installed from npm (pinned in
// compat/openclaw) by scripts/test.sh.
func openclawCLI(t *testing.T) (bin string, env []string) {
	t.Helper()
	dir, err := filepath.Abs("../../compat/openclaw/node_modules/.bin")
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "openclaw")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the OpenClaw CLI is not installed (%v): run ./scripts/test.sh, which installs it from compat/openclaw", err)
	}
	home := t.TempDir()
	return bin, append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "HOME="+home, "NO_COLOR=1")
}

// openclaw runs the CLI against the gateway and decodes its --json output.
func openclaw(t *testing.T, url, token string, args ...string) (map[string]any, error) {
	t.Helper()
	bin, env := openclawCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "--url", url, "--token", token, "--json")...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return nil, fmt.Errorf("openclaw %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	var v map[string]any
	if err := json.Unmarshal(out[strings.IndexByte(string(out), '{'):], &v); err != nil {
		return nil, fmt.Errorf("openclaw %s printed %q: %v", strings.Join(args, " "), out, err)
	}
	return v, nil
}

// deviceConnect connects with a fresh-or-given Ed25519 identity, signing
// the challenge as OpenClaw's v3 payload, and returns the connect response.
func deviceConnect(t *testing.T, url, token string, priv ed25519.PrivateKey) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	var challenge struct {
		Payload struct {
			Nonce string `json:"nonce"`
			TS    int64  `json:"ts"`
		} `json:"payload"`
	}
	_, data, err := ws.Read(ctx)
	if err != nil || json.Unmarshal(data, &challenge) != nil {
		t.Fatalf("challenge: %s %v", data, err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	id := hex.EncodeToString(sum[:])
	payload := strings.Join([]string{"v3", id, "test-app", "ui", "operator", "operator.read", fmt.Sprint(challenge.Payload.TS), token, challenge.Payload.Nonce, "linux", "test"}, "|")
	connect, _ := json.Marshal(map[string]any{"type": "req", "id": "c", "method": "connect", "params": map[string]any{
		"minProtocol": 4, "maxProtocol": 4, "role": "operator", "scopes": []string{"operator.read"},
		"client": map[string]any{"id": "test-app", "version": "1", "platform": "linux", "deviceFamily": "test", "mode": "ui"},
		"auth":   map[string]any{"token": token},
		"device": map[string]any{"id": id, "publicKey": base64.RawURLEncoding.EncodeToString(pub),
			"signature": base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(payload))), "signedAt": challenge.Payload.TS, "nonce": challenge.Payload.Nonce},
	}})
	if err := ws.Write(ctx, websocket.MessageText, connect); err != nil {
		t.Fatal(err)
	}
	_, data, err = ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	json.Unmarshal(data, &res)
	return res
}

// TestOpenClawCLI drives moltgate with OpenClaw's own CLI, unchanged: a
// health call, the device approval queue, and a chat.
func TestOpenClawCLI(t *testing.T) {
	const token = "openclaw-compat-token-0123456789"
	_, env := testEnv(t, map[string]string{"MOLTBOT_GATEWAY_TOKEN": token})
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())
	url := strings.Replace(g.server.URL(), "http://", "ws://", 1)

	health, err := openclaw(t, url, token, "gateway", "call", "health")
	if err != nil || health["ok"] != true {
		t.Fatalf("health = %v %v", health, err)
	}
	if _, err := openclaw(t, url, "wrong-token-wrong-token", "gateway", "call", "health"); err == nil {
		t.Fatal("the CLI got in with a wrong token")
	}

	// A device asks to pair; the CLI lists and approves it.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	refused := deviceConnect(t, url, token, priv)
	details := refused["error"].(map[string]any)["details"].(map[string]any)
	requestID := details["requestId"].(string)
	list, err := openclaw(t, url, token, "devices", "list")
	if err != nil || !strings.Contains(fmt.Sprint(list["pending"]), requestID) {
		t.Fatalf("devices list = %v %v", list, err)
	}
	if _, err := openclaw(t, url, token, "devices", "approve", requestID); err != nil {
		t.Fatal(err)
	}
	hello := deviceConnect(t, url, token, priv)
	if hello["ok"] != true || hello["payload"].(map[string]any)["auth"].(map[string]any)["deviceToken"] == nil {
		t.Fatalf("approved device = %v", hello)
	}

	ack, err := openclaw(t, url, token, "gateway", "call", "chat.send", "--params", `{"sessionKey":"cli","message":"hi from openclaw","idempotencyKey":"oc-1"}`)
	if err != nil || ack["status"] != "started" {
		t.Fatalf("chat.send = %v %v", ack, err)
	}
	if err := g.runner.WaitFor(context.Background(), g.log.LastSeq()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		hist, err := openclaw(t, url, token, "gateway", "call", "chat.history", "--params", `{"sessionKey":"cli"}`)
		if err != nil {
			t.Fatal(err)
		}
		if msgs, _ := hist["messages"].([]any); len(msgs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history = %v", hist)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
