package agent

import (
	"fmt"
	"html"
	"strings"

	moltgate "github.com/moltgate/moltgate"
)

// The workspace files injected into the system prompt, in OpenClaw's
// order: operating instructions, persona, identity, the user, local tool
// notes. Missing files are left out.
var bootstrapFiles = []string{"AGENTS.md", "SOUL.md", "IDENTITY.md", "USER.md", "TOOLS.md"}

// Size caps of what the workspace adds to the system prompt, OpenClaw's
// defaults: each file (agents.defaults.bootstrapMaxChars) and everything
// together, skills included (OpenClaw's bootstrapTotalMaxChars).
const (
	DefaultBootstrapMaxChars      = 20000
	DefaultBootstrapTotalMaxChars = 60000
)

// TruncationNotice tells the model that what it sees of the workspace is
// shortened.
const TruncationNotice = "Some workspace files or skills were truncated to fit the prompt; the markers below show where. Ask the owner to shorten them if something seems missing."

// SystemPrompt builds a run's system prompt as OpenClaw does: the base
// instructions, the tools the run is offered, then the workspace files
// (AGENTS.md, SOUL.md, IDENTITY.md, USER.md, TOOLS.md) and the eligible
// skills — a list of names and descriptions, then their instructions,
// since moltgate has no file tool for the model to read them with. Each
// file is capped at agents.defaults.bootstrapMaxChars characters and the
// whole workspace part at DefaultBootstrapTotalMaxChars; cut text is
// marked and announced.
func SystemPrompt(base string, tools []Tool, files []moltgate.WorkspaceFile, cfg moltgate.Config, getenv func(string) string) string {
	var b strings.Builder
	b.WriteString(strings.TrimSpace(base))
	if len(tools) > 0 {
		b.WriteString("\n\n## Tools\nYou can call these tools; their results come back to you before you answer:\n")
		for _, t := range tools {
			fmt.Fprintf(&b, "- %s: %s\n", t.Name(), firstSentence(t.Description()))
		}
		b.WriteString("Never put secrets you were given into a tool's input unless the owner asked you to.")
	}

	perFile := cfg.Agents.Defaults.BootstrapMaxChars
	if perFile <= 0 {
		perFile = DefaultBootstrapMaxChars
	}
	budget := DefaultBootstrapTotalMaxChars
	truncated := false
	take := func(name, content string) string {
		limit := min(perFile, budget)
		text, cut := truncate(content, limit)
		if cut {
			truncated = true
			text += fmt.Sprintf("\n\n[…truncated: %s has %d characters; the first %d are shown]", name, len([]rune(content)), len([]rune(text)))
		}
		budget -= len([]rune(text))
		return text
	}

	byPath := map[string]string{}
	for _, f := range files {
		byPath[f.Path] = f.Content
	}
	var ws strings.Builder
	for _, name := range bootstrapFiles {
		content, ok := byPath[name]
		if !ok || strings.TrimSpace(content) == "" {
			continue
		}
		fmt.Fprintf(&ws, "\n\n### %s\n%s", name, take(name, strings.TrimSpace(content)))
	}

	var skills []Skill
	view := newConfigView(cfg)
	for _, s := range LoadSkills(files) {
		if s.status(view, getenv).Eligible && !s.DisableModelInvocation {
			skills = append(skills, s)
		}
	}
	var sk strings.Builder
	if len(skills) > 0 {
		sk.WriteString("\n\n## Skills\nSkills are instructions for particular tasks. When a task matches a skill's description, follow that skill's instructions below.\n<available_skills>\n")
		for _, s := range skills {
			fmt.Fprintf(&sk, "  <skill>\n    <name>%s</name>\n    <description>%s</description>\n    <location>%s</location>\n  </skill>\n",
				html.EscapeString(s.Name), html.EscapeString(s.Description), html.EscapeString(s.Path))
		}
		sk.WriteString("</available_skills>")
		for _, s := range skills {
			fmt.Fprintf(&sk, "\n\n### Skill: %s (%s)\n", s.Name, s.Path)
			if budget <= 0 {
				truncated = true
				sk.WriteString("[…left out: the workspace part of the prompt is full]")
				continue
			}
			sk.WriteString(take(s.Path, strings.TrimSpace(s.Body)))
		}
	}

	if ws.Len() > 0 {
		b.WriteString("\n\n## Workspace Files (injected)\nThese files from your workspace hold your operating instructions, persona and what you know about the user; follow them.")
		if truncated {
			b.WriteString("\n" + TruncationNotice)
		}
		b.WriteString(ws.String())
	} else if truncated {
		b.WriteString("\n\n" + TruncationNotice)
	}
	b.WriteString(sk.String())
	return b.String()
}

// truncate cuts s to n characters.
func truncate(s string, n int) (string, bool) {
	if n < 0 {
		n = 0
	}
	r := []rune(s)
	if len(r) <= n {
		return s, false
	}
	return string(r[:n]), true
}

// firstSentence is a description's first sentence, for the prompt's list
// of tools (the full description goes with the tool's definition).
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}
