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

// FuzzDecodeMeta checks the hand-written reader against encoding/json: on
// any input that encoding/json accepts as a Meta, both must agree.
func FuzzDecodeMeta(f *testing.F) {
	for _, seed := range []string{`{}`, `{"actor":"a"}`, `{"actor":"\u00e9","source":"ui"}`, `{"actor":"a\"b"}`, ` {"remoteIp" : "1.2.3.4" } `,
		`{"actor":"x","extra":[1,2]}`, `{"actor":1}`, `{"actor":"\/"}`, `null`, `{"actor":"a","actor":"b"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want moltgate.Meta
		if json.Unmarshal(data, &want) != nil {
			return
		}
		var got moltgate.Meta
		if err := decodeMeta(data, &got); err != nil || got != want {
			t.Fatalf("decodeMeta(%q) = %+v, %v; encoding/json gives %+v", data, got, err, want)
		}
	})
}
