package eventlog

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Replication defaults: the WAL is shipped every second and a full snapshot
// is written every five minutes, so a restore replays at most five minutes of
// WAL on top of a snapshot.
const (
	DefaultSyncInterval     = 1 * time.Second
	DefaultSnapshotInterval = 5 * time.Minute
	DefaultR2Bucket         = "moltbot-data"
	DefaultReplicaPath      = "moltgate"
)

// ReplicaConfig says where the event log is replicated. Only S3-compatible
// replicas (R2, MinIO, AWS S3, gofakes3 in tests) are supported.
type ReplicaConfig struct {
	Bucket          string
	Path            string // key prefix inside the bucket
	Endpoint        string // empty = AWS S3
	Region          string
	AccessKeyID     string
	SecretAccessKey string
	ForcePathStyle  bool

	SyncInterval     time.Duration
	SnapshotInterval time.Duration

	// Source says where the config came from ("env" or a file path), for Status.
	Source string
}

// String describes the replica without credentials: safe for logs and events.
func (c ReplicaConfig) String() string {
	return fmt.Sprintf("s3://%s/%s (%s)", c.Bucket, c.Path, c.endpoint())
}

// endpoint is where the bucket lives, for messages: scheme://host and no
// more, because the configured URL may carry a user and password, or a
// token in its query.
func (c ReplicaConfig) endpoint() string {
	if c.Endpoint == "" {
		return "https://s3.amazonaws.com"
	}
	if u, err := url.Parse(c.Endpoint); err == nil && u.Host != "" {
		return u.Scheme + "://" + u.Host
	}
	// No scheme ("minio:9000" parses as the scheme minio): the host alone.
	if u, err := url.Parse("//" + c.Endpoint); err == nil && u.Host != "" {
		return u.Host
	}
	return "an endpoint that is not a URL"
}

func (c *ReplicaConfig) setDefaults() {
	if c.Path == "" {
		c.Path = DefaultReplicaPath
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
}

// ReplicaConfigFromEnv reads Moltworker's R2 variables: R2_ACCESS_KEY_ID,
// R2_SECRET_ACCESS_KEY and CF_ACCOUNT_ID (endpoint
// https://<account>.r2.cloudflarestorage.com), R2_BUCKET_NAME (default
// moltbot-data), and R2_ENDPOINT to point at any S3-compatible server
// instead (path-style). R2_PATH sets the key prefix.
//
// With none of them set it returns nil, nil: no replica is a normal mode.
// With some but not all it returns nil and the names of the missing ones.
func ReplicaConfigFromEnv(getenv func(string) string) (*ReplicaConfig, []string) {
	keyID, secret := getenv("R2_ACCESS_KEY_ID"), getenv("R2_SECRET_ACCESS_KEY")
	account, endpoint := getenv("CF_ACCOUNT_ID"), getenv("R2_ENDPOINT")
	if keyID == "" && secret == "" && account == "" && endpoint == "" {
		return nil, nil
	}
	var missing []string
	if keyID == "" {
		missing = append(missing, "R2_ACCESS_KEY_ID")
	}
	if secret == "" {
		missing = append(missing, "R2_SECRET_ACCESS_KEY")
	}
	if account == "" && endpoint == "" {
		missing = append(missing, "CF_ACCOUNT_ID")
	}
	if len(missing) > 0 {
		return nil, missing
	}
	if endpoint == "" {
		endpoint = "https://" + account + ".r2.cloudflarestorage.com"
	}
	c := &ReplicaConfig{
		Bucket:          getenv("R2_BUCKET_NAME"),
		Path:            getenv("R2_PATH"),
		Endpoint:        endpoint,
		Region:          "auto",
		AccessKeyID:     keyID,
		SecretAccessKey: secret,
		ForcePathStyle:  true,
		Source:          "env",
	}
	if c.Bucket == "" {
		c.Bucket = DefaultR2Bucket
	}
	c.setDefaults()
	return c, nil
}

// LoadReplicaConfigFile reads a litestream.yml in the stock Litestream
// CLI's schema (dbs[].replica with type s3, bucket, path, endpoint, region,
// access-key-id, secret-access-key, force-path-style, sync-interval; and a
// top-level snapshot.interval), expanding ${ENV} references. It takes the
// entry whose path names the same file as dbPath, or the only entry.
// Errors name the offending field.
func LoadReplicaConfigFile(path, dbPath string) (*ReplicaConfig, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read litestream config: %w", err)
	}
	c, err := ParseReplicaConfig(buf, dbPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Source = path
	return c, nil
}

// ParseReplicaConfig is LoadReplicaConfigFile on bytes.
func ParseReplicaConfig(buf []byte, dbPath string) (*ReplicaConfig, error) {
	buf = []byte(os.Expand(string(buf), os.Getenv))
	var doc map[string]any
	if err := yaml.Unmarshal(buf, &doc); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	top := yamlMap{m: doc}

	c := &ReplicaConfig{}
	// Top-level replica settings are defaults for every replica, as in the CLI.
	if err := top.fillS3(c); err != nil {
		return nil, err
	}
	snap, err := top.child("snapshot")
	if err != nil {
		return nil, err
	}
	if c.SnapshotInterval, err = snap.duration("interval"); err != nil {
		return nil, err
	}

	dbs, err := top.list("dbs")
	if err != nil {
		return nil, err
	}
	if len(dbs) == 0 {
		return nil, fmt.Errorf("dbs: at least one database is required")
	}
	db := dbs[0]
	if len(dbs) > 1 {
		db = yamlMap{}
		for _, d := range dbs {
			p, err := d.str("path")
			if err != nil {
				return nil, err
			}
			if sameFile(p, dbPath) {
				db = d
			}
		}
		if db.m == nil {
			return nil, fmt.Errorf("dbs: no entry has path %s", dbPath)
		}
	}

	rep, err := db.child("replica")
	if err != nil {
		return nil, err
	}
	if rep.m == nil {
		reps, err := db.list("replicas")
		if err != nil {
			return nil, err
		}
		if len(reps) == 0 {
			return nil, fmt.Errorf("%s: a replica is required", db.path)
		}
		rep = reps[0]
	}
	typ, err := rep.str("type")
	if err != nil {
		return nil, err
	}
	u, err := rep.str("url")
	if err != nil {
		return nil, err
	}
	if u != "" {
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "s3" {
			return nil, fmt.Errorf("%s.url: %q is not an s3:// URL", rep.path, u)
		}
		typ, c.Bucket, c.Path = "s3", pu.Host, strings.TrimPrefix(pu.Path, "/")
	}
	if typ != "" && typ != "s3" {
		return nil, fmt.Errorf("%s.type: %q is not supported (moltgate replicates to S3-compatible storage: type s3)", rep.path, typ)
	}
	if err := rep.fillS3(c); err != nil {
		return nil, err
	}
	if c.Bucket == "" {
		return nil, fmt.Errorf("%s.bucket: a bucket is required", rep.path)
	}
	c.setDefaults()
	return c, nil
}

// yamlMap is a decoded YAML mapping with its path in the document, so that
// every error can name the field it is about.
type yamlMap struct {
	path string
	m    map[string]any
}

func (y yamlMap) field(k string) string {
	if y.path == "" {
		return k
	}
	return y.path + "." + k
}

func (y yamlMap) str(k string) (string, error) {
	v, ok := y.m[k]
	if !ok || v == nil {
		return "", nil
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case int, float64, bool:
		return fmt.Sprint(v), nil
	}
	return "", fmt.Errorf("%s: expected a string", y.field(k))
}

func (y yamlMap) boolean(k string) (bool, bool, error) {
	v, ok := y.m[k]
	if !ok || v == nil {
		return false, false, nil
	}
	switch v := v.(type) {
	case bool:
		return v, true, nil
	case string:
		b, err := strconv.ParseBool(v)
		if err == nil {
			return b, true, nil
		}
	}
	return false, false, fmt.Errorf("%s: expected true or false, got %v", y.field(k), v)
}

func (y yamlMap) duration(k string) (time.Duration, error) {
	s, err := y.str(k)
	if err != nil || s == "" {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: %q is not a positive duration such as 1s or 5m", y.field(k), s)
	}
	return d, nil
}

func (y yamlMap) child(k string) (yamlMap, error) {
	v, ok := y.m[k]
	if !ok || v == nil {
		return yamlMap{path: y.field(k)}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return yamlMap{}, fmt.Errorf("%s: expected a mapping", y.field(k))
	}
	return yamlMap{path: y.field(k), m: m}, nil
}

func (y yamlMap) list(k string) ([]yamlMap, error) {
	v, ok := y.m[k]
	if !ok || v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected a list", y.field(k))
	}
	out := make([]yamlMap, len(l))
	for i, item := range l {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s[%d]: expected a mapping", y.field(k), i)
		}
		out[i] = yamlMap{path: fmt.Sprintf("%s[%d]", y.field(k), i), m: m}
	}
	return out, nil
}

// fillS3 copies the S3 settings present in y over c.
func (y yamlMap) fillS3(c *ReplicaConfig) error {
	for k, dst := range map[string]*string{
		"bucket": &c.Bucket, "path": &c.Path, "endpoint": &c.Endpoint, "region": &c.Region,
		"access-key-id": &c.AccessKeyID, "secret-access-key": &c.SecretAccessKey,
	} {
		if y.path == "" && k == "path" {
			continue // at the top level there is no replica path
		}
		v, err := y.str(k)
		if err != nil {
			return err
		}
		if v != "" {
			*dst = v
		}
	}
	if b, set, err := y.boolean("force-path-style"); err != nil {
		return err
	} else if set {
		c.ForcePathStyle = b
	}
	d, err := y.duration("sync-interval")
	if err != nil {
		return err
	}
	if d > 0 {
		c.SyncInterval = d
	}
	return nil
}

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	return strings.TrimPrefix(a, "./") == strings.TrimPrefix(b, "./")
}
