package benchdata_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/moltgate/moltgate/eventlog"
	"github.com/moltgate/moltgate/internal/benchdata"
	"github.com/moltgate/moltgate/projections"
)

// The fixture is a log a gateway could have written: every run it starts
// it finishes, so a start on it measures a start, not the closing of tens
// of thousands of runs left open.
func TestGenerate_RunsFinish(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fixture.db")
	if err := benchdata.Generate(path, 5000); err != nil {
		t.Fatal(err)
	}
	l := eventlog.NewLog(path)
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	set := projections.NewSet()
	n, err := projections.NewRunner(l, set.All()...).RunToEnd(context.Background())
	if err != nil || n != 5000 {
		t.Fatalf("replayed %d events: %v", n, err)
	}
	if open := set.Sessions.WithOpenRuns(); len(open) != 0 {
		t.Fatalf("%d sessions have runs left open, e.g. %+v", len(open), open[0])
	}
	if len(set.Sessions.List()) == 0 {
		t.Fatal("no sessions: the fixture has no chat")
	}
}
