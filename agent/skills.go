package agent

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path"
	"regexp"
	"runtime"
	"sort"
	"strings"

	moltgate "github.com/moltgate/moltgate"
	"gopkg.in/yaml.v3"
)

// Skill is a workspace skill: skills/<name>/SKILL.md, YAML front matter
// (name, description, metadata) and a Markdown body of instructions, as
// OpenClaw reads it.
type Skill struct {
	Name        string
	Description string
	Path        string // in the workspace: skills/<name>/SKILL.md
	Body        string
	Homepage    string
	// DisableModelInvocation keeps the skill out of the model's prompt
	// (OpenClaw's disable-model-invocation): only a user invokes it.
	DisableModelInvocation bool
	Meta                   SkillMeta
	// Problem says why the file cannot be used as a skill.
	Problem string
}

// SkillMeta is the front matter's metadata.openclaw object.
type SkillMeta struct {
	Always     bool              `json:"always"`
	SkillKey   string            `json:"skillKey"`
	PrimaryEnv string            `json:"primaryEnv"`
	Emoji      string            `json:"emoji"`
	Homepage   string            `json:"homepage"`
	OS         []string          `json:"os"`
	Requires   SkillRequirements `json:"requires"`
	Install    []json.RawMessage `json:"install"`
}

// SkillRequirements are what a skill needs to run, and in a status what
// it lacks. Lists are never null in JSON, as OpenClaw sends them.
type SkillRequirements struct {
	Bins    []string `json:"bins"`
	AnyBins []string `json:"anyBins"`
	Env     []string `json:"env"`
	Config  []string `json:"config"`
	OS      []string `json:"os"`
}

// Key is the skill's key in skills.entries.
func (s Skill) Key() string {
	if s.Meta.SkillKey != "" {
		return s.Meta.SkillKey
	}
	return s.Name
}

// skillName is what OpenClaw accepts as a skill's name.
var skillName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// LoadSkills reads the skills among the workspace files: every
// skills/…/SKILL.md (nested folders only organise them). A skill whose
// name another file already took is left out, first path first.
func LoadSkills(files []moltgate.WorkspaceFile) []Skill {
	var out []Skill
	seen := map[string]bool{}
	sorted := append([]moltgate.WorkspaceFile(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, f := range sorted {
		if !strings.HasPrefix(f.Path, "skills/") || path.Base(f.Path) != "SKILL.md" || strings.Count(f.Path, "/") > 7 {
			continue
		}
		s := parseSkill(f.Path, f.Content)
		if seen[s.Name] {
			continue
		}
		seen[s.Name] = true
		out = append(out, s)
	}
	return out
}

// parseSkill reads one SKILL.md.
func parseSkill(p, content string) Skill {
	s := Skill{Name: path.Base(path.Dir(p)), Path: p, Body: content}
	content = strings.TrimPrefix(strings.ReplaceAll(content, "\r\n", "\n"), "\ufeff")
	front, body, ok := splitFrontMatter(content)
	if !ok {
		s.Problem = "SKILL.md has no front matter (a --- block with name and description)"
		return s
	}
	s.Body = body
	var fm struct {
		Name                   string `yaml:"name"`
		Description            string `yaml:"description"`
		Homepage               string `yaml:"homepage"`
		DisableModelInvocation bool   `yaml:"disable-model-invocation"`
		Metadata               any    `yaml:"metadata"`
	}
	if err := yaml.Unmarshal([]byte(front), &fm); err != nil {
		s.Problem = "the front matter is not valid YAML: " + err.Error()
		return s
	}
	if fm.Name != "" {
		s.Name = strings.TrimSpace(fm.Name)
	}
	s.Description, s.Homepage, s.DisableModelInvocation = strings.TrimSpace(fm.Description), fm.Homepage, fm.DisableModelInvocation
	switch {
	case !skillName.MatchString(s.Name):
		s.Problem = fmt.Sprintf("%q is not a skill name: use letters, digits, '.', '_' and '-'", s.Name)
	case s.Description == "":
		s.Problem = "the front matter has no description"
	}
	if meta, err := skillMeta(fm.Metadata); err != nil {
		s.Problem = err.Error()
	} else {
		s.Meta = meta
		if s.Homepage == "" {
			s.Homepage = meta.Homepage
		}
	}
	return s
}

// splitFrontMatter splits "---\n<yaml>\n---\n<body>".
func splitFrontMatter(content string) (front, body string, ok bool) {
	rest, found := strings.CutPrefix(content, "---\n")
	if !found {
		return "", content, false
	}
	if strings.HasPrefix(rest, "---\n") || rest == "---" {
		return "", strings.TrimPrefix(rest, "---"), true
	}
	front, body, found = strings.Cut(rest, "\n---")
	if !found {
		return "", content, false
	}
	_, body, _ = strings.Cut(body, "\n")
	return front, strings.TrimLeft(body, "\n"), true
}

// skillMeta reads metadata.openclaw (or the older clawdbot and moltbot
// names), written as YAML or as a JSON string.
func skillMeta(v any) (SkillMeta, error) {
	var meta SkillMeta
	if s, ok := v.(string); ok {
		if err := yaml.Unmarshal([]byte(s), &v); err != nil {
			return meta, fmt.Errorf("the metadata is not valid JSON: %w", err)
		}
	}
	m, _ := v.(map[string]any)
	for _, key := range []string{"openclaw", "clawdbot", "moltbot"} {
		if inner, ok := m[key]; ok {
			b, err := json.Marshal(inner)
			if err == nil {
				err = json.Unmarshal(b, &meta)
			}
			if err != nil {
				return meta, fmt.Errorf("metadata.%s is not valid: %w", key, err)
			}
			break
		}
	}
	return meta, nil
}

// SkillStatus is one entry of the skills.status answer, in OpenClaw's
// shape (SkillStatusEntry).
type SkillStatus struct {
	Name               string               `json:"name"`
	Description        string               `json:"description"`
	Source             string               `json:"source"` // "openclaw-workspace"
	Bundled            bool                 `json:"bundled"`
	FilePath           string               `json:"filePath"`
	BaseDir            string               `json:"baseDir"`
	SkillKey           string               `json:"skillKey"`
	PrimaryEnv         string               `json:"primaryEnv,omitempty"`
	Emoji              string               `json:"emoji,omitempty"`
	Homepage           string               `json:"homepage,omitempty"`
	Always             bool                 `json:"always"`
	Disabled           bool                 `json:"disabled"`
	BlockedByAllowlist bool                 `json:"blockedByAllowlist"`
	Eligible           bool                 `json:"eligible"`
	Requirements       SkillRequirements    `json:"requirements"`
	Missing            SkillRequirements    `json:"missing"`
	ConfigChecks       []SkillConfigCheck   `json:"configChecks"`
	Install            []SkillInstallOption `json:"install"`
	HasInstallSpecs    bool                 `json:"hasInstallSpecs"`
	// Error says why the file is not a usable skill (moltgate's addition).
	Error string `json:"error,omitempty"`
}

// SkillConfigCheck is a config path a skill requires to be set.
type SkillConfigCheck struct {
	Path      string `json:"path"`
	Satisfied bool   `json:"satisfied"`
}

// SkillInstallOption is an installer OpenClaw would offer. moltgate runs
// no installers, so the list is always empty; the type keeps the shape.
type SkillInstallOption struct {
	ID    string   `json:"id"`
	Kind  string   `json:"kind"`
	Label string   `json:"label"`
	Bins  []string `json:"bins"`
}

// SkillsReport is the skills.status answer (OpenClaw's SkillStatusReport).
type SkillsReport struct {
	WorkspaceDir     string        `json:"workspaceDir"`
	ManagedSkillsDir string        `json:"managedSkillsDir"`
	Skills           []SkillStatus `json:"skills"`
}

// DefaultWorkspaceDir is OpenClaw's workspace path, reported when the
// config names none (moltgate keeps the files in its log).
const DefaultWorkspaceDir = "~/.openclaw/workspace"

// SkillsStatus answers OpenClaw's skills.status: every workspace skill,
// whether it is eligible for the prompt, and what it lacks. getenv reads
// the environment for required variables.
func SkillsStatus(files []moltgate.WorkspaceFile, cfg moltgate.Config, getenv func(string) string) SkillsReport {
	dir := cfg.Agents.Defaults.Workspace
	if dir == "" {
		dir = DefaultWorkspaceDir
	}
	rep := SkillsReport{WorkspaceDir: dir, ManagedSkillsDir: "~/.openclaw/skills", Skills: []SkillStatus{}}
	view := newConfigView(cfg)
	for _, s := range LoadSkills(files) {
		st := s.status(view, getenv)
		st.FilePath = strings.TrimRight(dir, "/") + "/" + s.Path
		st.BaseDir = path.Dir(st.FilePath)
		rep.Skills = append(rep.Skills, st)
	}
	return rep
}

// Status says whether the skill is eligible and what it lacks: it is
// turned off in skills.entries.<key>.enabled, a binary is not on PATH, a
// variable is set neither in the environment nor in the skill's config
// entry, a config path is not set, or the OS is not one it supports.
// "always" skills skip the checks.
func (s Skill) Status(cfg moltgate.Config, getenv func(string) string) SkillStatus {
	return s.status(newConfigView(cfg), getenv)
}

// status is Status over a config view that the skills of one listing share.
func (s Skill) status(view *configView, getenv func(string) string) SkillStatus {
	entry := view.cfg.Skills.Entries[s.Key()]
	req := s.Meta.Requires
	req.OS = s.Meta.OS
	st := SkillStatus{Name: s.Name, Description: s.Description, Source: "openclaw-workspace", FilePath: s.Path, BaseDir: path.Dir(s.Path),
		SkillKey: s.Key(), PrimaryEnv: s.Meta.PrimaryEnv, Emoji: s.Meta.Emoji, Homepage: s.Homepage, Always: s.Meta.Always,
		Disabled: !moltgate.IsEnabled(entry.Enabled, true), Requirements: nonNil(req), Missing: nonNil(SkillRequirements{}),
		ConfigChecks: []SkillConfigCheck{}, Install: []SkillInstallOption{}, HasInstallSpecs: len(s.Meta.Install) > 0, Error: s.Problem}
	if !st.Always {
		for _, bin := range req.Bins {
			if _, err := exec.LookPath(bin); err != nil {
				st.Missing.Bins = append(st.Missing.Bins, bin)
			}
		}
		if len(req.AnyBins) > 0 && !anyOnPath(req.AnyBins) {
			st.Missing.AnyBins = append(st.Missing.AnyBins, req.AnyBins...)
		}
		for _, name := range req.Env {
			set := getenv != nil && getenv(name) != ""
			set = set || entry.Env[name] != "" || (entry.APIKey != "" && s.Meta.PrimaryEnv == name)
			if !set {
				st.Missing.Env = append(st.Missing.Env, name)
			}
		}
		for _, p := range req.Config {
			ok := view.set(p)
			st.ConfigChecks = append(st.ConfigChecks, SkillConfigCheck{Path: p, Satisfied: ok})
			if !ok {
				st.Missing.Config = append(st.Missing.Config, p)
			}
		}
		if len(req.OS) > 0 && !supportsOS(req.OS) {
			st.Missing.OS = append(st.Missing.OS, req.OS...)
		}
	}
	m := st.Missing
	satisfied := len(m.Bins)+len(m.AnyBins)+len(m.Env)+len(m.Config)+len(m.OS) == 0
	st.Eligible = s.Problem == "" && !st.Disabled && satisfied
	return st
}

func nonNil(r SkillRequirements) SkillRequirements {
	for _, l := range []*[]string{&r.Bins, &r.AnyBins, &r.Env, &r.Config, &r.OS} {
		if *l == nil {
			*l = []string{}
		}
	}
	return r
}

func anyOnPath(bins []string) bool {
	for _, b := range bins {
		if _, err := exec.LookPath(b); err == nil {
			return true
		}
	}
	return false
}

// supportsOS reads OpenClaw's platform names (Node's: darwin, linux, win32).
func supportsOS(list []string) bool {
	for _, o := range list {
		if o == runtime.GOOS || (o == "win32" && runtime.GOOS == "windows") {
			return true
		}
	}
	return false
}

// configView is the config as the skills' requirements read it: typed,
// and as generic JSON for their config paths, marshalled on the first path
// checked and shared by all the skills of one listing (not once per path).
type configView struct {
	cfg  moltgate.Config
	tree any
	read bool
}

func newConfigView(cfg moltgate.Config) *configView { return &configView{cfg: cfg} }

// set reports whether a dotted config path holds a truthy value
// in the typed config: only paths moltgate reads can be checked.
func (c *configView) set(p string) bool {
	if !c.read {
		c.read = true
		if b, err := json.Marshal(c.cfg); err == nil {
			_ = json.Unmarshal(b, &c.tree) // on failure no path is set
		}
	}
	v := c.tree
	for _, k := range strings.Split(p, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		v = m[k]
	}
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case string:
		return v != "" && v != "0" && !strings.EqualFold(v, "false")
	case float64:
		return v != 0
	}
	return true
}

// AgentsList is the agents.list answer, in OpenClaw's shape
// (AgentsListResult): moltgate runs one agent, "main".
type AgentsList struct {
	DefaultID string         `json:"defaultId"`
	MainKey   string         `json:"mainKey"`
	Scope     string         `json:"scope"` // "per-sender" or "global"
	Agents    []AgentSummary `json:"agents"`
}

// AgentSummary is one agent of agents.list.
type AgentSummary struct {
	ID        string         `json:"id"`
	Name      string         `json:"name,omitempty"`
	Identity  *AgentIdentity `json:"identity,omitempty"`
	Workspace string         `json:"workspace,omitempty"`
	Model     *AgentModel    `json:"model,omitempty"`
}

// AgentIdentity is what IDENTITY.md says about the agent.
type AgentIdentity struct {
	Name   string `json:"name,omitempty"`
	Theme  string `json:"theme,omitempty"`
	Emoji  string `json:"emoji,omitempty"`
	Avatar string `json:"avatar,omitempty"`
}

// AgentModel is an agent's model selection.
type AgentModel struct {
	Primary   string   `json:"primary,omitempty"`
	Fallbacks []string `json:"fallbacks,omitempty"`
}

// MainAgentID is the id of moltgate's one agent, and its main session key.
const MainAgentID = "main"

// ListAgents answers OpenClaw's agents.list: the one agent, named by
// IDENTITY.md when the workspace has one, with the models in use (models:
// Resolution.Info, which includes the environment's).
func ListAgents(cfg moltgate.Config, files []moltgate.WorkspaceFile, models moltgate.ModelInfo) AgentsList {
	agent := AgentSummary{ID: MainAgentID, Workspace: cfg.Agents.Defaults.Workspace}
	if models.Active != "" {
		agent.Model = &AgentModel{Primary: models.Active, Fallbacks: models.Fallbacks}
	}
	for _, f := range files {
		if f.Path == "IDENTITY.md" {
			if id := parseIdentity(f.Content); id != (AgentIdentity{}) {
				agent.Identity, agent.Name = &id, id.Name
			}
		}
	}
	return AgentsList{DefaultID: MainAgentID, MainKey: MainAgentID, Scope: "per-sender", Agents: []AgentSummary{agent}}
}

// identityLine matches OpenClaw's IDENTITY.md template lines, such as
// "- **Name:** Molty" or "Emoji: 🦞".
var identityLine = regexp.MustCompile(`(?i)^[-*\s]*\**\s*(name|emoji|theme|vibe|avatar)\s*\**\s*:\s*\**\s*(.*?)\s*$`)

// parseIdentity reads IDENTITY.md; the template's placeholders, written
// in parentheses, are not values.
func parseIdentity(content string) AgentIdentity {
	var id AgentIdentity
	for _, line := range strings.Split(content, "\n") {
		m := identityLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v := strings.Trim(m[2], "*_ ")
		if v == "" || strings.HasPrefix(v, "(") {
			continue
		}
		switch strings.ToLower(m[1]) {
		case "name":
			id.Name = v
		case "emoji":
			id.Emoji = v
		case "theme":
			id.Theme = v
		case "vibe":
			if id.Theme == "" {
				id.Theme = v
			}
		case "avatar":
			id.Avatar = v
		}
	}
	return id
}
