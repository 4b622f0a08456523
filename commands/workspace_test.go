package commands_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/commands"
)

func TestWorkspace_Paths(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	for _, bad := range []string{"", ".", "..", "../SOUL.md", "skills/../../SOUL.md", `skills\x\SKILL.md`, "SO\x00UL.md",
		"run.sh", "SOUL", strings.Repeat("a", 198) + ".md"} {
		if err := s.WriteWorkspaceFile(ctx, bad, "x", owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
			t.Errorf("WriteWorkspaceFile(%.40q) = %v, want invalid", bad, err)
		}
	}
	// A leading slash and inner dots are cleaned; the file lands inside.
	for p, want := range map[string]string{"/SOUL.md": "SOUL.md", "skills/../notes.txt": "notes.txt", "skills/x/./SKILL.md": "skills/x/SKILL.md"} {
		if err := s.WriteWorkspaceFile(ctx, p, "x", owner); err != nil {
			t.Errorf("WriteWorkspaceFile(%q) = %v", p, err)
		}
		if _, ok := s.Models.Workspace.File(want); !ok {
			t.Errorf("%q was not stored as %q", p, want)
		}
	}
}

func TestWorkspace_Limits(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	if err := s.WriteWorkspaceFile(ctx, "SOUL.md", strings.Repeat("x", commands.MaxWorkspaceFile+1), owner); moltgate.ErrorCode(err) != moltgate.ETOOLARGE {
		t.Fatalf("oversized file = %v", err)
	}
	if err := s.WriteWorkspaceFile(ctx, "SOUL.md", "bad \xff utf-8", owner); moltgate.ErrorCode(err) != moltgate.ETOOLARGE {
		t.Fatalf("invalid UTF-8 = %v", err)
	}
	for i := 0; i < commands.MaxWorkspaceFiles; i++ {
		if err := s.WriteWorkspaceFile(ctx, fmt.Sprintf("f%03d.md", i), "x", owner); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WriteWorkspaceFile(ctx, "one-more.md", "x", owner); moltgate.ErrorCode(err) != moltgate.ETOOMANY {
		t.Fatalf("a file over the limit = %v", err)
	}
	// A full workspace still takes new versions of its files.
	if err := s.WriteWorkspaceFile(ctx, "f000.md", "new", owner); err != nil {
		t.Fatalf("rewriting a file of a full workspace = %v", err)
	}
	// Writing what is stored appends nothing.
	before := s.Log.LastSeq()
	if err := s.WriteWorkspaceFile(ctx, "f000.md", "new", owner); err != nil || s.Log.LastSeq() != before {
		t.Fatalf("the same content again = %v, log %d → %d", err, before, s.Log.LastSeq())
	}
}

func TestWorkspace_Delete(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	if err := s.DeleteWorkspaceFile(ctx, "SOUL.md", owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Fatalf("delete a missing file = %v", err)
	}
	if err := s.DeleteWorkspaceFile(ctx, "../SOUL.md", owner); moltgate.ErrorCode(err) != moltgate.EINVALID {
		t.Fatalf("delete outside the workspace = %v", err)
	}
	if err := s.WriteWorkspaceFile(ctx, "SOUL.md", "soul", owner); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWorkspaceFile(ctx, "SOUL.md", owner); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Models.Workspace.File("SOUL.md"); ok || s.Models.Workspace.Count() != 0 {
		t.Fatal("the deleted file is still there")
	}
	if err := s.DeleteWorkspaceFile(ctx, "SOUL.md", owner); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Fatalf("delete twice = %v", err)
	}
}

// New files written at once cannot all take the last place.
func TestConcurrent_WorkspaceLimit(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	for i := 0; i < commands.MaxWorkspaceFiles-1; i++ {
		if err := s.WriteWorkspaceFile(ctx, fmt.Sprintf("f%03d.md", i), "x", owner); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	wins, full := 0, 0
	inParallel(8, func(i int) {
		err := s.WriteWorkspaceFile(ctx, fmt.Sprintf("new%d.md", i), "y", owner)
		mu.Lock()
		defer mu.Unlock()
		switch moltgate.ErrorCode(err) {
		case "":
			wins++
		case moltgate.ETOOMANY:
			full++
		default:
			t.Errorf("unexpected: %v", err)
		}
	})
	if n := s.Models.Workspace.Count(); n != commands.MaxWorkspaceFiles || wins != 1 || full != 7 {
		t.Fatalf("%d files (limit %d), %d writes won, %d refused; want 1 and 7", n, commands.MaxWorkspaceFiles, wins, full)
	}
}

// An import records what was edited on disk and keeps what was edited in
// the admin since; a bad file is skipped, not the whole import.
func TestImportWorkspace(t *testing.T) {
	s, _ := MustOpenService(t)
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, content string, modified time.Time) {
		t.Helper()
		full := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(full, modified, modified); err != nil {
			t.Fatal(err)
		}
	}
	file := func(name string) string {
		c, _ := s.Models.Workspace.File(name)
		return s.Sealer.OpenText(moltgate.StreamWorkspace, c)
	}
	hourAgo := time.Now().Add(-time.Hour)
	write("SOUL.md", "soul from disk", hourAgo)
	write("USER.md", "user from disk", hourAgo)
	write("skills/web/SKILL.md", "skill", hourAgo)
	write("notes.md", "not a workspace file", hourAgo)
	write("skills/web/deep/SKILL.md", "too deep", hourAgo)
	if n, err := s.ImportWorkspace(ctx, dir); err != nil || n != 3 {
		t.Fatalf("first import = %d %v, want 3", n, err)
	}
	if _, ok := s.Models.Workspace.File("notes.md"); ok || s.Models.Workspace.Count() != 3 {
		t.Fatalf("imported %v", s.Models.Workspace.WorkspaceFiles())
	}

	// The admin edits one file and deletes another; the next start keeps both changes.
	if err := s.WriteWorkspaceFile(ctx, "SOUL.md", "edited in the admin", owner); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWorkspaceFile(ctx, "USER.md", owner); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ImportWorkspace(ctx, dir); err != nil || n != 0 {
		t.Fatalf("second import = %d %v, want 0", n, err)
	}
	if got := file("SOUL.md"); got != "edited in the admin" {
		t.Fatalf("SOUL.md = %q: the import reverted the admin's edit", got)
	}
	if _, ok := s.Models.Workspace.File("USER.md"); ok {
		t.Fatal("the import brought back a file the admin deleted")
	}

	// Edited on disk since: recorded. A file too large is skipped and the others still come in.
	later := time.Now().Add(time.Hour)
	write("SOUL.md", "edited on disk", later)
	write("AGENTS.md", strings.Repeat("x", commands.MaxWorkspaceFile+1), later)
	write("IDENTITY.md", "bad \xff utf-8", later)
	write("TOOLS.md", "tools", hourAgo)
	if n, err := s.ImportWorkspace(ctx, dir); err != nil || n != 2 {
		t.Fatalf("third import = %d %v, want 2 (SOUL.md, TOOLS.md)", n, err)
	}
	if got := file("SOUL.md"); got != "edited on disk" {
		t.Fatalf("SOUL.md = %q, want the newer disk version", got)
	}
	if got := file("TOOLS.md"); got != "tools" {
		t.Fatalf("TOOLS.md = %q: a bad file stopped the import", got)
	}
	if _, err := s.ImportWorkspace(ctx, filepath.Join(dir, "missing")); moltgate.ErrorCode(err) != moltgate.ENOTFOUND {
		t.Fatalf("import of a missing directory = %v", err)
	}
}
