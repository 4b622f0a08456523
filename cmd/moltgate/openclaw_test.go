package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/fakediscord"
	"github.com/moltgate/moltgate/internal/fakellm"
	"github.com/moltgate/moltgate/internal/fakes3"
	"github.com/moltgate/moltgate/internal/faketelegram"
	"github.com/moltgate/moltgate/internal/syncbuf"
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
	// The JSON may follow a banner line.
	start := bytes.IndexByte(out, '{')
	if start < 0 {
		return nil, fmt.Errorf("openclaw %s printed no JSON object: %q", strings.Join(args, " "), out)
	}
	var v map[string]any
	if err := json.Unmarshal(out[start:], &v); err != nil {
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

// OpenClaw's CLI applies a config with a plaintext apiKey (as its guides
// do), chats with that provider, and the key is neither in the event log
// nor in the replica in plaintext; config.get shows OpenClaw's marker.
func TestOpenClawCLI_PlaintextProviderKey(t *testing.T) {
	const token = "openclaw-compat-token-0123456789"
	const apiKey = "sk-plaintext-deepseek-key-for-the-test-0123"
	model := fakellm.NewOpenAI(t)
	model.Script(fakellm.Step{Tokens: fakellm.Tokens("hello from deepseek")})
	var seenKey atomic.Value
	upstream, _ := url.Parse(model.URL)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenKey.Store(r.Header.Get("Authorization"))
		httputil.NewSingleHostReverseProxy(upstream).ServeHTTP(w, r)
	}))
	defer proxy.Close()
	s3 := fakes3.New(t)
	vars := s3.Env("openclaw-key")
	vars["MOLTBOT_GATEWAY_TOKEN"] = token
	vars["MOLTGATE_SECRET_KEY"] = strings.Repeat("ab", 32)
	_, env := testEnv(t, vars)
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())
	wsURL := strings.Replace(g.server.URL(), "http://", "ws://", 1)

	raw, _ := json.Marshal(map[string]any{
		"models": map[string]any{"providers": map[string]any{"deepseek": map[string]any{
			"api": "openai-completions", "baseUrl": proxy.URL + "/v1", "apiKey": apiKey, "models": []any{map[string]any{"id": "deepseek-chat"}}}}},
		"agents": map[string]any{"defaults": map[string]any{"model": map[string]any{"primary": "deepseek/deepseek-chat"}}},
	})
	params, _ := json.Marshal(map[string]any{"raw": string(raw)})
	if res, err := openclaw(t, wsURL, token, "gateway", "call", "config.apply", "--params", string(params)); err != nil || res["ok"] != true {
		t.Fatalf("config.apply = %v %v", res, err)
	}
	got, err := openclaw(t, wsURL, token, "gateway", "call", "config.get")
	if err != nil || !strings.Contains(fmt.Sprint(got["raw"]), moltgate.RedactedMarker) || strings.Contains(fmt.Sprint(got), apiKey) {
		t.Fatalf("config.get = %v %v", got, err)
	}

	if _, err := openclaw(t, wsURL, token, "gateway", "call", "chat.send", "--params", `{"sessionKey":"cli","message":"hi","idempotencyKey":"oc-k"}`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reply", func() bool {
		msgs, _ := g.service.Transcript(context.Background(), "cli", 0)
		return len(msgs) == 2 && msgs[1].Content == "hello from deepseek"
	})
	if seenKey.Load() != "Bearer "+apiKey {
		t.Fatalf("the provider got Authorization %q", seenKey.Load())
	}

	// Neither the log file nor the replica holds the key.
	if err := g.log.SnapshotNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"moltgate.db", "moltgate.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(env.DataDir(), f))
		if bytes.Contains(b, []byte(apiKey)) {
			t.Fatalf("%s holds the key in plaintext", f)
		}
	}
	restored := filepath.Join(t.TempDir(), "restored.db")
	if err := eventlog.Restore(context.Background(), s3.Config("openclaw-key"), eventlog.RestoreOptions{OutputPath: restored}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(restored); !bytes.Contains(b, []byte(moltgate.SealedPrefix)) || bytes.Contains(b, []byte(apiKey)) {
		t.Fatal("the replica does not hold the key sealed")
	}
}

// A log restored on a machine without the sealing key starts, names the
// secrets it cannot open and why, and runs everything else.
func TestServe_RestoreWithoutTheSealingKey(t *testing.T) {
	s3 := fakes3.New(t)
	vars := s3.Env("no-key")
	vars["MOLTGATE_SECRET_KEY"] = strings.Repeat("ab", 32)
	_, env := testEnv(t, vars)
	g := mustOpenGateway(t, env)
	doc := `{"models":{"providers":{"deepseek":{"api":"openai-completions","apiKey":"sk-sealed-on-the-first-machine-0123"}}},"agents":{"defaults":{"model":{"primary":"deepseek/deepseek-chat"}}}}`
	if _, err := g.service.ApplyConfig(context.Background(), json.RawMessage(doc), "", moltgate.Meta{Actor: "owner"}); err != nil {
		t.Fatal(err)
	}
	g.close(context.Background())

	// A new machine: an empty disk, the replica, another key.
	vars["MOLTGATE_SECRET_KEY"] = strings.Repeat("cd", 32)
	vars["MOLTGATE_DATA_DIR"] = filepath.Join(t.TempDir(), "data")
	var logs syncbuf.Buffer
	g2 := &gateway{env: EnvFromMap(vars), logger: slog.New(slog.NewTextHandler(&logs, nil)), stderr: io.Discard}
	if err := g2.open(context.Background()); err != nil {
		t.Fatalf("the gateway did not start without its key: %v", err)
	}
	defer g2.close(context.Background())
	if !strings.Contains(logs.String(), "path=models.providers.deepseek.apiKey") || !strings.Contains(logs.String(), "MOLTGATE_SECRET_KEY") {
		t.Fatalf("start-up did not name the secret it cannot open:\n%s", logs.String())
	}
	_, out := adminCall(t, g2, "GET", "/api/admin/config", "")
	if !strings.Contains(fmt.Sprint(out["secretProblems"]), "models.providers.deepseek.apiKey") {
		t.Fatalf("admin config = %v", out)
	}
	// Everything else runs: a chat is answered with why the model cannot.
	r, err := g2.service.SendMessage(context.Background(), moltgate.RunRequest{SessionKey: "s", Message: "hi"}, moltgate.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run to end", func() bool {
		s, _ := g2.set.Sessions.Get("s")
		return s.LastRunID == r.RunID && s.LastRunState != "running"
	})
	s, _ := g2.set.Sessions.Get("s")
	if s.LastRunState != moltgate.RunFailed || !strings.Contains(s.LastRunError, "another key") {
		t.Fatalf("run = %s %q", s.LastRunState, s.LastRunError)
	}
}

// `openclaw channels status` (OpenClaw's channels.status) shows a running
// channel and a failed one with its reason.
func TestOpenClawCLI_ChannelsStatus(t *testing.T) {
	const token = "openclaw-compat-token-0123456789"
	tg, dc := faketelegram.New(t), fakediscord.New(t)
	dc.RefuseToken(true)
	_, env := testEnv(t, map[string]string{"MOLTBOT_GATEWAY_TOKEN": token, "TELEGRAM_BOT_TOKEN": tg.Token, "TELEGRAM_API_URL": tg.URL,
		"DISCORD_BOT_TOKEN": dc.Token, "DISCORD_API_URL": dc.URL})
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())
	waitFor(t, "telegram running and discord failed", func() bool {
		return channelState(g, "telegram") == "running" && channelState(g, "discord") == "failed"
	})
	bin, cenv := openclawCLI(t)
	// This command has no --url: it reads the gateway from OpenClaw's config.
	home := ""
	for _, e := range cenv {
		if h, ok := strings.CutPrefix(e, "HOME="); ok {
			home = h
		}
	}
	wsURL := strings.Replace(g.server.URL(), "http://", "ws://", 1)
	os.MkdirAll(filepath.Join(home, ".openclaw"), 0o700)
	os.WriteFile(filepath.Join(home, ".openclaw", "openclaw.json"), []byte(`{"gateway":{"mode":"remote","remote":{"url":"`+wsURL+`","token":"`+token+`"}}}`), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "channels", "status")
	cmd.Env = cenv
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openclaw channels status: %v\n%s", err, out)
	}
	text := string(out)
	if !strings.Contains(text, "Telegram default (moltgate_test_bot): enabled, configured, running, connected") {
		t.Fatalf("telegram is not shown running:\n%s", text)
	}
	if !strings.Contains(text, "Discord default") || !strings.Contains(text, "error:discord: the bot token was refused") {
		t.Fatalf("discord's failure is not shown:\n%s", text)
	}
}
