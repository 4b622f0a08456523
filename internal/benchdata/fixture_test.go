package benchdata

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/moltgate/moltgate/eventlog"
)

// A fixture is one file that holds every event, with no WAL beside it:
// benchmarks copy the file alone.
func TestFixture_IsTheFileAlone(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	ctx := context.Background()
	const n = 300
	path := Fixture(t, n)
	if st, err := os.Stat(path + "-wal"); err == nil && st.Size() > 0 {
		t.Fatalf("a WAL of %d bytes lies beside the fixture %s", st.Size(), path)
	}
	moved := filepath.Join(t.TempDir(), "moved.db")
	Copy(t, path, moved)
	l := eventlog.NewLog(moved)
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	if count, err := l.Count(ctx, eventlog.Filter{}); err != nil || count != n {
		t.Fatalf("the fixture's file alone holds %d events, %v; want %d", count, err, n)
	}
}
