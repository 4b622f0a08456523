package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moltgate/moltgate/eventlog"
)

// Env is the process environment as a lookup function, so tests can run
// subcommands with an environment of their own.
type Env func(string) string

// EnvFromOS returns the real environment.
func EnvFromOS() Env { return os.Getenv }

// EnvFromMap returns an environment holding only m.
func EnvFromMap(m map[string]string) Env { return func(k string) string { return m[k] } }

func (e Env) get(key, def string) string {
	if v := strings.TrimSpace(e(key)); v != "" {
		return v
	}
	return def
}

// Defaults for the laptop: everything under ./data, loopback only.
const (
	DefaultDataDir = "./data"
	DefaultListen  = "127.0.0.1:18789"
)

// DataDir is where the event log and other local state live.
func (e Env) DataDir() string { return e.get("MOLTGATE_DATA_DIR", DefaultDataDir) }

// DBPath is the event log's SQLite file.
func (e Env) DBPath() string { return filepath.Join(e.DataDir(), "moltgate.db") }

// Listen is the HTTP listen address.
func (e Env) Listen() string { return e.get("MOLTGATE_LISTEN", DefaultListen) }

// Replica returns the replica configuration: from the litestream.yml named
// by MOLTGATE_LITESTREAM_CONFIG, else from Moltworker's R2 variables. A nil
// config with no error means no replica (the laptop mode); missing lists the
// variables that a partial R2 configuration lacks.
func (e Env) Replica() (cfg *eventlog.ReplicaConfig, missing []string, err error) {
	if path := e.get("MOLTGATE_LITESTREAM_CONFIG", ""); path != "" {
		cfg, err := eventlog.LoadReplicaConfigFile(path, e.DBPath())
		return cfg, nil, err
	}
	cfg, missing = eventlog.ReplicaConfigFromEnv(e)
	return cfg, missing, nil
}

// requireReplica is Replica for commands that cannot work without one.
func (e Env) requireReplica() (*eventlog.ReplicaConfig, error) {
	cfg, missing, err := e.Replica()
	switch {
	case err != nil:
		return nil, err
	case len(missing) > 0:
		return nil, fmt.Errorf("replica configuration is incomplete: set %s", strings.Join(missing, ", "))
	case cfg == nil:
		return nil, fmt.Errorf("no replica configured: set R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and CF_ACCOUNT_ID (or R2_ENDPOINT), or MOLTGATE_LITESTREAM_CONFIG")
	}
	return cfg, nil
}
