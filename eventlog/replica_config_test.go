package eventlog_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltgate/moltgate/eventlog"
)

func TestReplicaConfigFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	t.Run("None", func(t *testing.T) {
		if c, missing := eventlog.ReplicaConfigFromEnv(env(nil)); c != nil || missing != nil {
			t.Fatalf("got %+v %v", c, missing)
		}
	})
	t.Run("Moltworker", func(t *testing.T) {
		c, missing := eventlog.ReplicaConfigFromEnv(env(map[string]string{
			"R2_ACCESS_KEY_ID": "AKIDEXAMPLE", "R2_SECRET_ACCESS_KEY": "s3cr3t-value", "CF_ACCOUNT_ID": "acct"}))
		if missing != nil || c.Endpoint != "https://acct.r2.cloudflarestorage.com" || c.Bucket != "moltbot-data" ||
			c.Region != "auto" || !c.ForcePathStyle || c.SyncInterval != time.Second || c.SnapshotInterval != 5*time.Minute {
			t.Fatalf("got %+v %v", c, missing)
		}
		if d := c.String(); strings.Contains(d, "s3cr3t-value") || strings.Contains(d, "AKIDEXAMPLE") {
			t.Fatal("String leaks credentials")
		}
	})
	t.Run("StringShowsSchemeAndHostOnly", func(t *testing.T) {
		for endpoint, want := range map[string]string{
			"": "s3://b/p (https://s3.amazonaws.com)",
			"https://AKIDEXAMPLE:s3cr3t-value@r2.example.com/base?X-Token=tok3n": "s3://b/p (https://r2.example.com)",
			"http://127.0.0.1:9000":                    "s3://b/p (http://127.0.0.1:9000)",
			"AKIDEXAMPLE:s3cr3t-value@minio:9000/base": "s3://b/p (minio:9000)",
			"minio:9000":                   "s3://b/p (minio:9000)",
			"http://%zz:s3cr3t-value@host": "s3://b/p (an endpoint that is not a URL)",
		} {
			if got := (eventlog.ReplicaConfig{Bucket: "b", Path: "p", Endpoint: endpoint}).String(); got != want {
				t.Errorf("endpoint %q: String = %q, want %q", endpoint, got, want)
			}
		}
	})
	t.Run("EndpointOverride", func(t *testing.T) {
		c, _ := eventlog.ReplicaConfigFromEnv(env(map[string]string{
			"R2_ACCESS_KEY_ID": "k", "R2_SECRET_ACCESS_KEY": "s", "R2_ENDPOINT": "http://127.0.0.1:9000", "R2_BUCKET_NAME": "b"}))
		if c == nil || c.Endpoint != "http://127.0.0.1:9000" || c.Bucket != "b" {
			t.Fatalf("got %+v", c)
		}
	})
	t.Run("Partial", func(t *testing.T) {
		c, missing := eventlog.ReplicaConfigFromEnv(env(map[string]string{"CF_ACCOUNT_ID": "acct"}))
		if c != nil || strings.Join(missing, ",") != "R2_ACCESS_KEY_ID,R2_SECRET_ACCESS_KEY" {
			t.Fatalf("got %+v %v", c, missing)
		}
	})
}

func TestLoadReplicaConfigFile(t *testing.T) {
	t.Run("RepositoryFile", func(t *testing.T) {
		t.Setenv("R2_BUCKET_NAME", "moltbot-data")
		t.Setenv("CF_ACCOUNT_ID", "acct")
		t.Setenv("R2_ACCESS_KEY_ID", "key")
		t.Setenv("R2_SECRET_ACCESS_KEY", "secret")
		c, err := eventlog.LoadReplicaConfigFile("../litestream.yml", "./data/moltgate.db")
		if err != nil {
			t.Fatal(err)
		}
		if c.Bucket != "moltbot-data" || c.Path != "moltgate" || c.Endpoint != "https://acct.r2.cloudflarestorage.com" ||
			c.AccessKeyID != "key" || c.SecretAccessKey != "secret" || c.SyncInterval != time.Second || c.SnapshotInterval != 5*time.Minute {
			t.Fatalf("got %+v", c)
		}
	})
	t.Run("URLForm", func(t *testing.T) {
		c, err := eventlog.ParseReplicaConfig([]byte("dbs:\n  - path: a.db\n    replicas:\n      - url: s3://bucket/some/prefix\n"), "a.db")
		if err != nil || c.Bucket != "bucket" || c.Path != "some/prefix" {
			t.Fatalf("got %+v %v", c, err)
		}
	})
	t.Run("PicksMatchingDB", func(t *testing.T) {
		yml := "dbs:\n  - path: other.db\n    replica: {type: s3, bucket: wrong}\n  - path: ./data/m.db\n    replica: {type: s3, bucket: right}\n"
		c, err := eventlog.ParseReplicaConfig([]byte(yml), "data/m.db")
		if err != nil || c.Bucket != "right" {
			t.Fatalf("got %+v %v", c, err)
		}
	})
	for name, tc := range map[string]struct{ yml, want string }{
		"BadDuration":   {"dbs:\n  - path: a.db\n    replica:\n      type: s3\n      bucket: b\n      sync-interval: often\n", "dbs[0].replica.sync-interval"},
		"BadSnapshot":   {"snapshot:\n  interval: -5m\ndbs:\n  - path: a.db\n    replica: {type: s3, bucket: b}\n", "snapshot.interval"},
		"NoBucket":      {"dbs:\n  - path: a.db\n    replica:\n      type: s3\n", "dbs[0].replica.bucket"},
		"WrongType":     {"dbs:\n  - path: a.db\n    replica:\n      type: gcs\n      bucket: b\n", "dbs[0].replica.type"},
		"DBsNotAList":   {"dbs: yes\n", "dbs: expected a list"},
		"NoDBs":         {"snapshot:\n  interval: 5m\n", "dbs: at least one"},
		"BadBool":       {"dbs:\n  - path: a.db\n    replica: {type: s3, bucket: b, force-path-style: maybe}\n", "dbs[0].replica.force-path-style"},
		"NotYAML":       {"dbs: [\n", "invalid YAML"},
		"ReplicaScalar": {"dbs:\n  - path: a.db\n    replica: s3\n", "dbs[0].replica: expected a mapping"},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "litestream.yml")
			os.WriteFile(p, []byte(tc.yml), 0o600)
			_, err := eventlog.LoadReplicaConfigFile(p, "a.db")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %q", err, tc.want)
			}
		})
	}
}
