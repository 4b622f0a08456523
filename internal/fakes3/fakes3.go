// Package fakes3 runs an in-process S3-compatible server (gofakes3) on
// loopback for replication tests, with switches that make it fail the way a
// real bucket fails: unreachable, or refusing the credentials.
package fakes3

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/moltgate/moltgate/eventlog"
)

// Credentials the server accepts.
const (
	AccessKeyID     = "fake-access-key"
	SecretAccessKey = "fake-secret-key"
)

// Server is a running fake S3.
type Server struct {
	URL     string
	Bucket  string
	Backend *s3mem.Backend

	down         atomic.Bool
	refuse       atomic.Bool
	refuseCreate atomic.Bool
	srv          *httptest.Server
}

// New starts a server with one bucket and stops it when the test ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	s := NewEmpty(tb)
	if err := s.Backend.CreateBucket(s.Bucket); err != nil {
		tb.Fatal(err)
	}
	return s
}

// NewEmpty starts a server on which the bucket (s.Bucket) does not exist
// yet, as on a new R2 account.
func NewEmpty(tb testing.TB) *Server {
	tb.Helper()
	tb.Setenv("AWS_CA_BUNDLE", "") // see the architecture doc's known traps
	backend := s3mem.New()
	s := &Server{Bucket: "moltbot-data", Backend: backend}
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	inner := faker.Server()
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.down.Load():
			// Like a dead endpoint: drop the connection without an answer.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		case s.refuse.Load() || !strings.Contains(r.Header.Get("Authorization"), "Credential="+AccessKeyID+"/"):
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>`))
		case s.refuseCreate.Load() && r.Method == http.MethodPut && strings.Trim(r.URL.Path, "/") == s.Bucket:
			// What R2 answers a CreateBucket made with an object-only token.
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`))
		default:
			inner.ServeHTTP(w, r)
		}
	}))
	s.URL = s.srv.URL
	tb.Cleanup(s.srv.Close)
	return s
}

// SetDown makes the endpoint drop every connection (true) or serve again.
func (s *Server) SetDown(down bool) { s.down.Store(down) }

// SetRefuseCredentials makes the endpoint answer 403 InvalidAccessKeyId.
func (s *Server) SetRefuseCredentials(refuse bool) { s.refuse.Store(refuse) }

// SetRefuseCreateBucket makes CreateBucket fail with 403 AccessDenied, as
// it does for keys that may use a bucket but not make one.
func (s *Server) SetRefuseCreateBucket(refuse bool) { s.refuseCreate.Store(refuse) }

// BucketExists says whether the bucket has been created.
func (s *Server) BucketExists() bool {
	ok, err := s.Backend.BucketExists(s.Bucket)
	return err == nil && ok
}

// Config returns a replica config pointing at this server under prefix.
func (s *Server) Config(prefix string) eventlog.ReplicaConfig {
	return eventlog.ReplicaConfig{
		Bucket: s.Bucket, Path: prefix, Endpoint: s.URL, Region: "auto",
		AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, ForcePathStyle: true,
		SyncInterval: eventlog.DefaultSyncInterval, SnapshotInterval: eventlog.DefaultSnapshotInterval,
		Source: "test",
	}
}

// Env returns Moltworker-style variables that point at this server.
func (s *Server) Env(prefix string) map[string]string {
	return map[string]string{
		"R2_ACCESS_KEY_ID": AccessKeyID, "R2_SECRET_ACCESS_KEY": SecretAccessKey,
		"R2_ENDPOINT": s.URL, "R2_BUCKET_NAME": s.Bucket, "R2_PATH": prefix,
	}
}

// ObjectCount lists the objects under prefix.
func (s *Server) ObjectCount(ctx context.Context, prefix string) (int, error) {
	res, err := s.Backend.ListBucket(s.Bucket, &gofakes3.Prefix{HasPrefix: true, Prefix: prefix}, gofakes3.ListBucketPage{})
	if err != nil {
		return 0, err
	}
	return len(res.Contents), nil
}
