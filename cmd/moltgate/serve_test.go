package main

import (
	"context"
	"encoding/json"
	"log/slog"
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
