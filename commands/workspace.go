package commands

import (
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	moltgate "github.com/moltgate/moltgate"
)

var _ moltgate.WorkspaceService = (*Service)(nil)

// Limits on the workspace: it feeds the system prompt, so it is text and
// bounded.
const (
	MaxWorkspaceFile  = 256 << 10
	MaxWorkspaceFiles = 200
)

// cleanWorkspacePath checks a workspace path: relative, slash-separated,
// no way out of the workspace, a Markdown or text file.
func cleanWorkspacePath(p string) (string, error) {
	c := path.Clean(strings.TrimPrefix(p, "/"))
	switch {
	case p == "" || c == "." || strings.HasPrefix(c, "../") || c == ".." || strings.Contains(p, "\\") || strings.ContainsRune(p, 0):
		return "", moltgate.Errorf(moltgate.EINVALID, "%q is not a path inside the workspace", p)
	case len(c) > 200:
		return "", moltgate.Errorf(moltgate.EINVALID, "workspace paths are at most 200 characters")
	case !strings.HasSuffix(c, ".md") && !strings.HasSuffix(c, ".txt"):
		return "", moltgate.Errorf(moltgate.EINVALID, "%s: the workspace holds Markdown and text files (.md, .txt)", c)
	}
	return c, nil
}

// WriteWorkspaceFile implements moltgate.WorkspaceService. The content is
// sealed like a chat message's (a token pasted into SOUL.md stays out of
// the replica in plaintext).
func (s *Service) WriteWorkspaceFile(ctx context.Context, p, content string, meta moltgate.Meta) error {
	p, err := cleanWorkspacePath(p)
	if err != nil {
		return err
	}
	if len(content) > MaxWorkspaceFile || !utf8.ValidString(content) {
		return moltgate.Errorf(moltgate.ETOOLARGE, "%s must be UTF-8 text of at most %d bytes (it has %d)", p, MaxWorkspaceFile, len(content))
	}
	if old, ok := s.Models.Workspace.File(p); ok && s.openWorkspace(old) == content {
		return nil
	}
	if _, ok := s.Models.Workspace.File(p); !ok && len(s.Models.Workspace.WorkspaceFiles()) >= MaxWorkspaceFiles {
		return moltgate.Errorf(moltgate.ETOOMANY, "the workspace holds at most %d files", MaxWorkspaceFiles)
	}
	e := moltgate.MustEvent(moltgate.StreamWorkspace, moltgate.EventWorkspaceFileWritten,
		moltgate.WorkspaceFileData{Path: p, Content: s.sealText(moltgate.StreamWorkspace, content)}, meta)
	_, err = s.append(ctx, false, e)
	return err
}

func (s *Service) openWorkspace(content string) string {
	if s.Sealer == nil {
		return content
	}
	return s.Sealer.OpenText(moltgate.StreamWorkspace, content)
}

// DeleteWorkspaceFile implements moltgate.WorkspaceService.
func (s *Service) DeleteWorkspaceFile(ctx context.Context, p string, meta moltgate.Meta) error {
	p, err := cleanWorkspacePath(p)
	if err != nil {
		return err
	}
	if _, ok := s.Models.Workspace.File(p); !ok {
		return moltgate.Errorf(moltgate.ENOTFOUND, "no workspace file %s", p)
	}
	_, err = s.append(ctx, false, moltgate.MustEvent(moltgate.StreamWorkspace, moltgate.EventWorkspaceFileDeleted, moltgate.WorkspaceFileData{Path: p}, meta))
	return err
}

// ImportWorkspace records the workspace files found in dir (AGENTS.md,
// SOUL.md, USER.md, IDENTITY.md, TOOLS.md and skills/*/SKILL.md, as
// OpenClaw lays them out) that differ from the log's, so files edited on
// disk reach the log, and from there the replica. It returns how many it
// recorded.
func (s *Service) ImportWorkspace(ctx context.Context, dir string) (int, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return 0, moltgate.Errorf(moltgate.ENOTFOUND, "no workspace directory at %s", dir)
	}
	n := 0
	err := filepath.WalkDir(dir, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, full)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && rel != "skills" && !(strings.HasPrefix(rel, "skills/") && strings.Count(rel, "/") == 1) {
				return fs.SkipDir
			}
			return nil
		}
		if !workspaceFileName(rel) {
			return nil
		}
		b, err := os.ReadFile(full)
		if err != nil {
			return err
		}
		before := s.Log.LastSeq()
		if err := s.WriteWorkspaceFile(ctx, rel, string(b), moltgate.Meta{Actor: "workspace:" + dir, Source: moltgate.SourceSystem}); err != nil {
			return err
		}
		if s.Log.LastSeq() != before {
			n++
		}
		return nil
	})
	return n, err
}

// workspaceFileName reports whether rel is a file OpenClaw's workspace
// feeds into the prompt.
func workspaceFileName(rel string) bool {
	switch rel {
	case "AGENTS.md", "SOUL.md", "USER.md", "IDENTITY.md", "TOOLS.md":
		return true
	}
	dir, file := path.Split(rel)
	return file == "SKILL.md" && strings.HasPrefix(dir, "skills/") && strings.Count(dir, "/") == 2
}
