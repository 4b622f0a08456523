package eventlog

import (
	"encoding/json"
	"testing"

	moltgate "github.com/moltgate/moltgate"
)

func TestDecodeMeta(t *testing.T) {
	for _, m := range []moltgate.Meta{
		{},
		{Actor: "owner@example.com", Source: "ui", RemoteIP: "203.0.113.7", CorrelationID: "c1", CausationID: "c2"},
		{Actor: `quote " back \ slash`, Source: "tab\tnewline\n ünïcødé ✓"},
		{Actor: "<script>&"},
	} {
		raw, _ := json.Marshal(m)
		var got moltgate.Meta
		if err := decodeMeta(raw, &got); err != nil || got != m {
			t.Errorf("decodeMeta(%s) = %+v, %v; want %+v", raw, got, err, m)
		}
	}
	// Shapes the fast path does not read go through encoding/json.
	for raw, want := range map[string]moltgate.Meta{
		`{"actor":"a","extra":{"n":1},"source":"s"}`: {Actor: "a", Source: "s"},
		` { "actor" : "a" , "source":"s" } `:         {Actor: "a", Source: "s"},
		`{"actor":"\u00e9"}`:                         {Actor: "é"},
	} {
		var got moltgate.Meta
		if err := decodeMeta([]byte(raw), &got); err != nil || got != want {
			t.Errorf("decodeMeta(%s) = %+v, %v; want %+v", raw, got, err, want)
		}
	}
	var m moltgate.Meta
	if err := decodeMeta([]byte(`{"actor":`), &m); err == nil {
		t.Error("truncated meta decoded without error")
	}
}
