package eventlog

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/benbjohnson/litestream"
	lss3 "github.com/benbjohnson/litestream/s3"
	moltgate "github.com/moltgate/moltgate"
	"github.com/moltgate/moltgate/internal/watermark"
)

// maxSyncBackoff caps the wait between failed syncs; a SyncNow or a critical
// append always tries at once.
const maxSyncBackoff = 10 * time.Second

// Status is the replication state of the log, as the admin and /api/status
// show it. It never contains credentials.
type Status = moltgate.StorageStatus

// replicator streams the log's SQLite file to the replica with an embedded
// Litestream and keeps track, in event seqs, of what the replica holds: a
// sync that starts after seq N was committed leaves the replica holding N.
type replicator struct {
	log *Log
	cfg ReplicaConfig

	db      *litestream.DB
	replica *litestream.Replica
	store   *litestream.Store
	opened  bool

	syncMu sync.Mutex // one sync at a time: ours and Litestream's own share the file
	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup

	replicated *watermark.Watermark // the seq the replica is known to hold

	mu             sync.Mutex
	lastSync       time.Time
	lastSnapshot   time.Time
	lastErr        string
	lastErrAt      time.Time
	consecutiveErr int
}

func newReplicator(l *Log, cfg ReplicaConfig) *replicator {
	return &replicator{log: l, cfg: cfg, kick: make(chan struct{}, 1), replicated: watermark.New(0)}
}

// newS3Client builds Litestream's S3 client for cfg.
func newS3Client(cfg ReplicaConfig) *lss3.ReplicaClient {
	useSystemCABundle()
	c := lss3.NewReplicaClient()
	c.Bucket, c.Path = cfg.Bucket, cfg.Path
	c.Endpoint, c.Region = cfg.Endpoint, cfg.Region
	c.AccessKeyID, c.SecretAccessKey = cfg.AccessKeyID, cfg.SecretAccessKey
	c.ForcePathStyle = cfg.ForcePathStyle
	if c.Region == "" {
		c.Region = "auto" // R2's region; also avoids a network lookup at Init
	}
	return c
}

// useSystemCABundle works around an AWS SDK limitation: with AWS_CA_BUNDLE
// set, LoadDefaultConfig refuses the custom *http.Client that Litestream
// passes ("unable to add custom RootCAs"). Go's TLS stack reads the same
// bundle from SSL_CERT_FILE, so the variable is moved there.
func useSystemCABundle() {
	bundle := os.Getenv("AWS_CA_BUNDLE")
	if bundle == "" {
		return
	}
	if os.Getenv("SSL_CERT_FILE") == "" {
		os.Setenv("SSL_CERT_FILE", bundle)
	}
	os.Unsetenv("AWS_CA_BUNDLE")
}

// open starts the sync loop, which attaches Litestream to the file on its
// first pass and retries that until it works. Open never waits for the
// bucket: a dead one only delays replication, and Status says why.
func (r *replicator) open() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.loop(ctx) }()
}

func (r *replicator) openStore(ctx context.Context) error {
	if err := ensureBucket(ctx, r.cfg, r.log.Logger); err != nil {
		r.recordErr(ctx, err)
		return err
	}
	db := litestream.NewDB(r.log.Path)
	db.MonitorInterval = r.cfg.SyncInterval
	db.Logger = r.log.Logger.With("component", "litestream")
	replica := litestream.NewReplicaWithClient(db, newS3Client(r.cfg))
	// Our loop drives replica syncs so that it knows which seq they cover.
	replica.MonitorEnabled = false
	replica.SyncInterval = r.cfg.SyncInterval
	db.Replica = replica
	store := litestream.NewStore([]*litestream.DB{db}, litestream.CompactionLevels{
		{Level: 0},
		{Level: 1, Interval: 30 * time.Second},
		{Level: 2, Interval: 5 * time.Minute},
		{Level: 3, Interval: time.Hour},
	})
	store.SnapshotInterval = r.cfg.SnapshotInterval
	// Close makes our own final sync, bounded by its context; Litestream's
	// 30-second retry loop on top of it would keep a sleeping container up.
	store.SetShutdownSyncTimeout(0)
	store.Logger = db.Logger
	if err := store.Open(ctx); err != nil {
		r.recordErr(ctx, fmt.Errorf("cannot start replication: %w", err))
		return err
	}
	r.db, r.replica, r.store, r.opened = db, replica, store, true
	r.readLastSnapshot(ctx)
	return nil
}

// stopLoop stops background syncs, interrupting one in flight, so that the
// final sync at Close starts at once and is bounded by Close's context.
func (r *replicator) stopLoop() {
	r.cancel()
	r.wg.Wait()
}

// close detaches Litestream; the caller has made the final sync and closed
// its own connections (Litestream must close last).
func (r *replicator) close(ctx context.Context) error {
	if !r.opened {
		return nil
	}
	if err := r.store.Close(ctx); err != nil {
		return fmt.Errorf("cannot close replication: %w", err)
	}
	return nil
}

func (r *replicator) loop(ctx context.Context) {
	ticker := time.NewTicker(r.cfg.SyncInterval)
	defer ticker.Stop()
	var next time.Time // with failures, the earliest time for the next try
	sync := func() {
		if r.syncNow(ctx) != nil {
			r.mu.Lock()
			backoff := min(r.cfg.SyncInterval<<min(r.consecutiveErr, 8), maxSyncBackoff)
			r.mu.Unlock()
			next = time.Now().Add(backoff)
		} else {
			next = time.Time{}
		}
	}
	sync()
	for {
		kicked := false
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-r.kick:
			kicked = true
		}
		if !kicked && time.Now().Before(next) {
			continue
		}
		sync()
	}
}

// readLastSnapshot learns when the newest snapshot in the replica was taken.
func (r *replicator) readLastSnapshot(ctx context.Context) {
	info, err := r.replica.MaxLTXFileInfo(ctx, litestream.SnapshotLevel)
	if err == nil && !info.CreatedAt.IsZero() {
		r.mu.Lock()
		r.lastSnapshot = info.CreatedAt
		r.mu.Unlock()
	}
}

// syncNow ships everything committed so far to the replica.
func (r *replicator) syncNow(ctx context.Context) error {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	if !r.opened {
		if err := r.openStore(ctx); err != nil {
			return err
		}
	}
	seq := r.log.LastSeq()
	err := r.db.Sync(ctx)
	if err == nil {
		err = r.replica.Sync(ctx)
	}
	if err != nil {
		r.recordErr(ctx, fmt.Errorf("replica sync failed: %w", err))
		return err
	}
	r.replicated.Advance(seq)
	r.mu.Lock()
	r.lastSync = time.Now()
	r.consecutiveErr = 0
	r.lastErr = ""
	r.mu.Unlock()
	return nil
}

// snapshotNow syncs, then writes a full snapshot to the replica.
func (r *replicator) snapshotNow(ctx context.Context) error {
	if err := r.syncNow(ctx); err != nil {
		return err
	}
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	info, err := r.db.Snapshot(ctx)
	if err != nil {
		r.recordErr(ctx, fmt.Errorf("snapshot failed: %w", err))
		return err
	}
	r.mu.Lock()
	r.lastSnapshot = info.CreatedAt
	if r.lastSnapshot.IsZero() {
		r.lastSnapshot = time.Now()
	}
	r.mu.Unlock()
	return nil
}

// recordErr keeps err for Status and logs it (the first of a run of
// failures, then every 30th). A failure caused by stopping the loop is not
// one.
func (r *replicator) recordErr(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastErr, r.lastErrAt = err.Error(), time.Now()
	r.consecutiveErr++
	if r.consecutiveErr == 1 || r.consecutiveErr%30 == 0 {
		r.log.Logger.Error("replication error", "error", err, "consecutive", r.consecutiveErr)
	}
}

// waitFor asks for one immediate sync and waits until the replica holds
// seq. Later tries follow the loop's schedule (and its backoff), so many
// waiters on a dead bucket do not turn into a storm of requests.
func (r *replicator) waitFor(ctx context.Context, seq int64) error {
	select {
	case r.kick <- struct{}{}:
	default:
	}
	if err := r.replicated.Wait(ctx, seq); err != nil {
		return fmt.Errorf("replica has not confirmed seq %d: %w", seq, err)
	}
	return nil
}

// Status reports local and replicated positions, lag and the last errors.
func (l *Log) Status(ctx context.Context) Status {
	s := Status{LocalSeq: l.LastSeq()}
	if l.replicator == nil {
		return s
	}
	r := l.replicator
	r.mu.Lock()
	s.Configured = true
	s.Replica, s.Source = r.cfg.String(), r.cfg.Source
	s.ReplicatedSeq = r.replicated.Get()
	s.LastSyncAt, s.LastSnapshotAt = r.lastSync, r.lastSnapshot
	s.LastError, s.LastErrorAt = r.lastErr, r.lastErrAt
	r.mu.Unlock()
	s.LagEvents = max(s.LocalSeq-s.ReplicatedSeq, 0)
	if s.LagEvents > 0 {
		if e, err := l.GetSeq(ctx, s.ReplicatedSeq+1); err == nil {
			s.LagSeconds = time.Since(e.RecordedAt).Seconds()
		}
	}
	return s
}

// ErrNoReplica is returned by replica operations when none is configured.
var ErrNoReplica = moltgate.Errorf(moltgate.EUNAVAILABLE, "no replica is configured: set R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and CF_ACCOUNT_ID (or R2_ENDPOINT), or MOLTGATE_LITESTREAM_CONFIG")

// SyncNow ships every committed event to the replica and returns when it
// holds them.
func (l *Log) SyncNow(ctx context.Context) error {
	if l.replicator == nil {
		return ErrNoReplica
	}
	return l.replicator.syncNow(ctx)
}

// SnapshotNow syncs and then writes a full snapshot to the replica.
func (l *Log) SnapshotNow(ctx context.Context) error {
	if l.replicator == nil {
		return ErrNoReplica
	}
	return l.replicator.snapshotNow(ctx)
}
