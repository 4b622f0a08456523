package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	moltgate "github.com/moltgate/moltgate"
)

// The workspace recorded at start: MOLTGATE_WORKSPACE_DIR first, then the
// config's (with ~/ expanded) when it is a directory here, then
// data/workspace when it is one.
func TestWorkspaceDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	homeWorkspace := filepath.Join(home, ".openclaw", "workspace")
	dataDir := filepath.Join(t.TempDir(), "data")
	dataWorkspace := filepath.Join(dataDir, "workspace")
	for _, c := range []struct {
		name, env, config string
		mkdirs            []string
		want, log         string
	}{
		{name: "nothing", want: ""},
		{name: "data/workspace", mkdirs: []string{dataWorkspace}, want: dataWorkspace},
		{name: "the environment first", env: "/from/env", config: "~/.openclaw/workspace", mkdirs: []string{homeWorkspace, dataWorkspace}, want: "/from/env"},
		{name: "the config's, ~/ expanded", config: "~/.openclaw/workspace", mkdirs: []string{homeWorkspace, dataWorkspace}, want: homeWorkspace},
		{name: "the config's, missing here", config: "~/.openclaw/workspace", mkdirs: []string{dataWorkspace}, want: dataWorkspace,
			log: "level=INFO msg=\"the config's agents.defaults.workspace is not a directory here: its files are not recorded\" workspace=" + homeWorkspace},
		{name: "the config's, a file", config: filepath.Join(home, "file"), want: "", log: "workspace=" + filepath.Join(home, "file")},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.RemoveAll(filepath.Join(home, ".openclaw"))
			os.RemoveAll(dataDir)
			os.WriteFile(filepath.Join(home, "file"), nil, 0o600)
			for _, d := range c.mkdirs {
				if err := os.MkdirAll(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			doc, _ := json.Marshal(map[string]any{"agents": map[string]any{"defaults": map[string]any{"workspace": c.config}}})
			var logs strings.Builder
			g := &gateway{env: EnvFromMap(map[string]string{"MOLTGATE_DATA_DIR": dataDir, "MOLTGATE_WORKSPACE_DIR": c.env}),
				logger: slog.New(slog.NewTextHandler(&logs, nil)),
				config: &liveConfig{current: func() (json.RawMessage, string) { return doc, "h" }}}
			if got := g.workspaceDir(); got != c.want {
				t.Errorf("workspaceDir() = %q, want %q", got, c.want)
			}
			if !strings.Contains(logs.String(), c.log) || (c.log == "" && logs.Len() > 0) {
				t.Errorf("logged %q, want %q", logs.String(), c.log)
			}
		})
	}
}

// A credential in the workspace is opened for the model's prompt only:
// skills.status and agents.list show it sealed.
func TestServe_WorkspaceSecretsStaySealedForClients(t *testing.T) {
	const key = "sk-workspace-secret-for-the-test-0123456789"
	_, env := testEnv(t, map[string]string{"MOLTGATE_SECRET_KEY": strings.Repeat("ab", 32)})
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())
	meta := moltgate.Meta{Actor: "owner"}
	for path, content := range map[string]string{
		"skills/demo/SKILL.md": "---\nname: demo\ndescription: calls the API with " + key + "\n---\nsteps",
		"IDENTITY.md":          "- **Name:** " + key,
	} {
		if err := g.service.WriteWorkspaceFile(context.Background(), path, content, meta); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.runner.WaitFor(context.Background(), g.log.LastSeq()); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{"skills.status": g.gw.SkillsStatus(), "agents.list": g.gw.AgentsList()} {
		b, _ := json.Marshal(v)
		if strings.Contains(string(b), key) || !strings.Contains(string(b), moltgate.SealedPrefix) {
			t.Errorf("%s = %s, want the credential sealed", name, b)
		}
	}
	var prompt strings.Builder
	for _, f := range g.agent.Workspace.WorkspaceFiles() {
		prompt.WriteString(f.Content)
	}
	if strings.Count(prompt.String(), key) != 2 {
		t.Errorf("the model's workspace does not hold the credential opened: %q", prompt.String())
	}
}

func TestServe_InvalidTrustedProxies(t *testing.T) {
	_, env := testEnv(t, map[string]string{"MOLTGATE_TRUSTED_PROXIES": "10.0.0.0/8, not-a-network"})
	g := &gateway{env: env, logger: discardLogger(), stderr: io.Discard}
	err := g.open(context.Background())
	g.close(context.Background())
	if err == nil || !strings.Contains(err.Error(), "MOLTGATE_TRUSTED_PROXIES") || !strings.Contains(err.Error(), "not-a-network") {
		t.Fatalf("open = %v, want an error naming MOLTGATE_TRUSTED_PROXIES and the bad entry", err)
	}
}

// Listening on every address, a loopback peer is local (the admin's
// token-only fallback) only when MOLTGATE_TRUST_LOOPBACK=true says so.
func TestServe_TrustLoopback(t *testing.T) {
	const token = "trust-loopback-token-0123456789"
	for _, c := range []struct {
		trust string
		want  int
	}{{"", http.StatusServiceUnavailable}, {"true", http.StatusOK}} {
		_, env := testEnv(t, map[string]string{"MOLTGATE_LISTEN": "0.0.0.0:0", "MOLTBOT_GATEWAY_TOKEN": token, "MOLTGATE_TRUST_LOOPBACK": c.trust})
		g := mustOpenGateway(t, env)
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(g.server.URL(), "http://"))
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+port+"/api/admin/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		g.close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("MOLTGATE_TRUST_LOOPBACK=%q: a loopback admin request with the token = %d, want %d", c.trust, res.StatusCode, c.want)
		}
	}
}

// Without MOLTGATE_SECRET_KEY the sealing key is generated once and kept
// beside the gateway token; replicating with it draws a warning, since a
// restore elsewhere will not have it.
func TestSealer(t *testing.T) {
	vars, env := testEnv(t, nil)
	keyFile := filepath.Join(vars["MOLTGATE_DATA_DIR"], "secret-key")
	s, warning, err := sealer(env, false)
	if err != nil || warning != "" {
		t.Fatalf("sealer = %v, %q", err, warning)
	}
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	sealed := s.Seal("config", "sk-a-secret")
	again, warning, err := sealer(env, true)
	if err != nil || !strings.Contains(warning, "MOLTGATE_SECRET_KEY is not set") || !strings.Contains(warning, keyFile) {
		t.Fatalf("replicated without MOLTGATE_SECRET_KEY: %v, warning %q", err, warning)
	}
	if plain, err := again.Open("config", sealed); err != nil || plain != "sk-a-secret" {
		t.Fatalf("the key changed between starts: %q %v", plain, err)
	}

	vars, env = testEnv(t, map[string]string{"MOLTGATE_SECRET_KEY": strings.Repeat("ab", 32)})
	if _, warning, err := sealer(env, true); err != nil || warning != "" {
		t.Fatalf("with MOLTGATE_SECRET_KEY: %v, warning %q", err, warning)
	}
	if _, err := os.Stat(filepath.Join(vars["MOLTGATE_DATA_DIR"], "secret-key")); !os.IsNotExist(err) {
		t.Fatalf("a key file was written although MOLTGATE_SECRET_KEY is set: %v", err)
	}
	_, env = testEnv(t, map[string]string{"MOLTGATE_SECRET_KEY": "short"})
	if _, _, err := sealer(env, false); err == nil {
		t.Fatal("a malformed MOLTGATE_SECRET_KEY was accepted")
	}
}

func TestServe_TelegramWebhookWithoutTelegram(t *testing.T) {
	_, env := testEnv(t, nil)
	g := mustOpenGateway(t, env)
	defer g.close(context.Background())
	res, err := http.Post(g.server.URL()+"/telegram/webhook", "application/json", strings.NewReader(`{"update_id":1}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "not running") {
		t.Fatalf("webhook without Telegram = %d %s", res.StatusCode, body)
	}
}
