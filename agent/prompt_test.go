package agent

import (
	"encoding/json"
	"strings"
	"testing"

	moltgate "github.com/moltgate/moltgate"
)

const weatherSkill = `---
name: weather
description: Get the current weather and forecasts for a place.
metadata: {"openclaw": {"emoji": "🌤️", "requires": {"env": ["WEATHER_API_KEY"]}, "primaryEnv": "WEATHER_API_KEY"}}
---
# Weather

Call web_fetch on https://wttr.in/<place>?format=3.
`

const notesSkill = `---
name: notes
description: "Keep notes in the owner's notebook."
homepage: https://example.com/notes
---
Write notes as bullet points.
`

var workspace = []moltgate.WorkspaceFile{
	{Path: "AGENTS.md", Content: "# Rules\nReply in English."},
	{Path: "IDENTITY.md", Content: "# IDENTITY.md - Who Am I?\n\n- **Name:** Molty\n- **Creature:** (pick something)\n- **Vibe:** calm\n- **Emoji:** 🦞\n"},
	{Path: "SOUL.md", Content: "Be kind."},
	{Path: "USER.md", Content: "The owner is Ada."},
	{Path: "memory/2026-11-25.md", Content: "daily notes stay out"},
	{Path: "skills/weather/SKILL.md", Content: weatherSkill},
	{Path: "skills/personal/notes/SKILL.md", Content: notesSkill},
	{Path: "skills/broken/SKILL.md", Content: "---\nname: [unclosed\n---\nbody"},
	{Path: "skills/nodesc/SKILL.md", Content: "---\nname: nodesc\n---\nbody"},
	{Path: "skills/hidden/SKILL.md", Content: "---\nname: hidden\ndescription: user only\ndisable-model-invocation: true\n---\nsecret steps"},
}

func TestSystemPrompt(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	prompt := SystemPrompt("BASE", []Tool{loopTool{}}, workspace, moltgate.Config{}, getenv)
	for _, want := range []string{"BASE\n\n## Tools", "- again: Does nothing.", "### AGENTS.md\n# Rules\nReply in English.", "### SOUL.md\nBe kind.",
		"### USER.md\nThe owner is Ada.", "### IDENTITY.md", "<name>notes</name>", "<description>Keep notes in the owner&#39;s notebook.</description>",
		"<location>skills/personal/notes/SKILL.md</location>", "### Skill: notes (skills/personal/notes/SKILL.md)\nWrite notes as bullet points."} {
		if !strings.Contains(prompt, want) {
			t.Fatalf("the prompt lacks %q:\n%s", want, prompt)
		}
	}
	// OpenClaw's order: AGENTS, SOUL, IDENTITY, USER.
	if a, s, i, u := strings.Index(prompt, "### AGENTS.md"), strings.Index(prompt, "### SOUL.md"), strings.Index(prompt, "### IDENTITY.md"), strings.Index(prompt, "### USER.md"); !(a < s && s < i && i < u) {
		t.Fatalf("files out of order:\n%s", prompt)
	}
	for _, absent := range []string{"weather", "daily notes", "[unclosed", "nodesc", "secret steps", TruncationNotice} {
		if strings.Contains(prompt, absent) {
			t.Fatalf("the prompt should not contain %q:\n%s", absent, prompt)
		}
	}

	// The weather skill is eligible once its key is set, in the
	// environment or in its config entry; a disabled skill is left out.
	env["WEATHER_API_KEY"] = "k"
	if p := SystemPrompt("BASE", nil, workspace, moltgate.Config{}, getenv); !strings.Contains(p, "Call web_fetch on https://wttr.in") || strings.Contains(p, "## Tools") {
		t.Fatalf("with the key set:\n%s", p)
	}
	delete(env, "WEATHER_API_KEY")
	var cfg moltgate.Config
	off := false
	cfg.Skills.Entries = map[string]moltgate.SkillEntry{"weather": {APIKey: "moltgate:sealed:v1:0123abcd:x"}, "notes": {Enabled: &off}}
	p := SystemPrompt("BASE", nil, workspace, cfg, getenv)
	if !strings.Contains(p, "<name>weather</name>") || strings.Contains(p, "<name>notes</name>") {
		t.Fatalf("with weather's apiKey and notes turned off:\n%s", p)
	}

	if p := SystemPrompt("BASE", nil, nil, moltgate.Config{}, getenv); p != "BASE" {
		t.Fatalf("no workspace, no tools: %q", p)
	}
}

func TestSystemPrompt_Caps(t *testing.T) {
	var cfg moltgate.Config
	cfg.Agents.Defaults.BootstrapMaxChars = 1000
	files := []moltgate.WorkspaceFile{{Path: "AGENTS.md", Content: strings.Repeat("a", 5000)}, {Path: "SOUL.md", Content: "short"}}
	p := SystemPrompt("BASE", nil, files, cfg, nil)
	if strings.Count(p, "a") < 1000 || strings.Contains(p, strings.Repeat("a", 1001)) {
		t.Fatal("AGENTS.md should be cut at 1000 characters")
	}
	if !strings.Contains(p, "[…truncated: AGENTS.md has 5000 characters; the first 1000 are shown]") || !strings.Contains(p, TruncationNotice) || !strings.Contains(p, "### SOUL.md\nshort") {
		t.Fatalf("prompt:\n%s", p)
	}

	// The total: 4 files of 20,000 characters fill the 60,000 budget.
	var big []moltgate.WorkspaceFile
	for _, name := range []string{"AGENTS.md", "SOUL.md", "IDENTITY.md", "USER.md"} {
		big = append(big, moltgate.WorkspaceFile{Path: name, Content: strings.Repeat("x", 20000)})
	}
	big = append(big, moltgate.WorkspaceFile{Path: "skills/notes/SKILL.md", Content: notesSkill})
	p = SystemPrompt("BASE", nil, big, moltgate.Config{}, nil)
	if n := strings.Count(p, "x"); n > DefaultBootstrapTotalMaxChars+100 {
		t.Fatalf("%d characters of files, more than the total cap", n)
	}
	if !strings.Contains(p, "[…truncated: USER.md has 20000 characters; the first 0 are shown]") ||
		!strings.Contains(p, "### Skill: notes (skills/notes/SKILL.md)\n[…left out: the workspace part of the prompt is full]") {
		t.Fatalf("prompt tail:\n%s", p[len(p)-600:])
	}
}

func TestSkillsStatus(t *testing.T) {
	var cfg moltgate.Config
	off := false
	cfg.Skills.Entries = map[string]moltgate.SkillEntry{"notes": {Enabled: &off}}
	rep := SkillsStatus(workspace, cfg, func(string) string { return "" })
	byName := map[string]SkillStatus{}
	for _, s := range rep.Skills {
		byName[s.Name] = s
	}
	if len(rep.Skills) != 5 || rep.WorkspaceDir != DefaultWorkspaceDir {
		t.Fatalf("report %+v", rep)
	}
	w := byName["weather"]
	if w.Eligible || strings.Join(w.Missing.Env, ",") != "WEATHER_API_KEY" || w.Emoji != "🌤️" || w.PrimaryEnv != "WEATHER_API_KEY" ||
		w.Source != "openclaw-workspace" || w.FilePath != "~/.openclaw/workspace/skills/weather/SKILL.md" || w.BaseDir != "~/.openclaw/workspace/skills/weather" {
		t.Fatalf("weather %+v", w)
	}
	if n := byName["notes"]; !n.Disabled || n.Eligible || n.Homepage != "https://example.com/notes" {
		t.Fatalf("notes %+v", n)
	}
	if b := byName["broken"]; b.Eligible || !strings.Contains(b.Error, "not valid YAML") {
		t.Fatalf("broken %+v", b)
	}
	if d := byName["nodesc"]; d.Eligible || d.Error != "the front matter has no description" {
		t.Fatalf("nodesc %+v", d)
	}
	if h := byName["hidden"]; !h.Eligible {
		t.Fatalf("hidden %+v: eligible, only kept out of the model's prompt", h)
	}

	// The JSON has OpenClaw's SkillStatusEntry fields, lists never null.
	var raw map[string]any
	b, _ := json.Marshal(rep)
	json.Unmarshal(b, &raw)
	entry := dig(raw, "skills", 0).(map[string]any)
	for _, key := range []string{"name", "description", "source", "bundled", "filePath", "baseDir", "skillKey", "always", "disabled",
		"blockedByAllowlist", "eligible", "requirements", "missing", "configChecks", "install"} {
		if _, ok := entry[key]; !ok {
			t.Fatalf("skills.status entry lacks %q: %s", key, b)
		}
	}
	if dig(entry, "missing", "bins") == nil || dig(raw, "workspaceDir") == nil || dig(raw, "managedSkillsDir") == nil {
		t.Fatalf("report %s", b)
	}
}

func TestSkillRequirements(t *testing.T) {
	skill := func(meta string) Skill {
		return parseSkill("skills/x/SKILL.md", "---\nname: x\ndescription: d\nmetadata:\n  openclaw:\n"+meta+"\n---\nbody")
	}
	var cfg moltgate.Config
	on := true
	cfg.Browser.Enabled = &on
	for name, tc := range map[string]struct {
		meta     string
		eligible bool
	}{
		"BinOnPath":         {"    requires: {bins: [sh]}", true},
		"BinMissing":        {"    requires: {bins: [no-such-binary-here]}", false},
		"AnyBin":            {"    requires: {anyBins: [no-such-binary-here, sh]}", true},
		"ConfigSet":         {"    requires: {config: [browser.enabled]}", true},
		"ConfigUnset":       {"    requires: {config: [tools.web.fetch.allowPrivateNetwork]}", false},
		"OtherOS":           {"    os: [plan9]", false},
		"AlwaysSkipsChecks": {"    always: true\n    requires: {bins: [no-such-binary-here]}", true},
	} {
		if got := skill(tc.meta).Status(cfg, nil); got.Eligible != tc.eligible || got.Error != "" {
			t.Errorf("%s: eligible %v (error %q), want %v", name, got.Eligible, got.Error, tc.eligible)
		}
	}
	if s := parseSkill("skills/x/SKILL.md", "no front matter"); s.Problem == "" || s.Name != "x" {
		t.Fatalf("%+v", s)
	}
	if s := parseSkill("skills/x/SKILL.md", "---\nname: ../etc\ndescription: d\n---\n"); !strings.Contains(s.Problem, "is not a skill name") {
		t.Fatalf("%+v", s)
	}
}

func TestListAgents(t *testing.T) {
	var cfg moltgate.Config
	cfg.Agents.Defaults.Workspace = "/data/workspace"
	got := ListAgents(cfg, workspace, moltgate.ModelInfo{Active: "anthropic/claude-sonnet-4-5", Fallbacks: []string{"openai/gpt-4o"}})
	b, _ := json.Marshal(got)
	want := `{"defaultId":"main","mainKey":"main","scope":"per-sender","agents":[{"id":"main","name":"Molty","identity":{"name":"Molty","theme":"calm","emoji":"🦞"},` +
		`"workspace":"/data/workspace","model":{"primary":"anthropic/claude-sonnet-4-5","fallbacks":["openai/gpt-4o"]}}]}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	if b, _ := json.Marshal(ListAgents(moltgate.Config{}, nil, moltgate.ModelInfo{})); string(b) != `{"defaultId":"main","mainKey":"main","scope":"per-sender","agents":[{"id":"main"}]}` {
		t.Fatalf("bare: %s", b)
	}
}
