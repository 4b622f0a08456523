package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/benbjohnson/litestream"
	moltgate "github.com/moltgate/moltgate"
)

// RestorePoint is a snapshot in the replica.
type RestorePoint = moltgate.RestorePoint

// BucketUsage is what the replica occupies in its bucket.
type BucketUsage = moltgate.BucketUsage

// RestorePoints lists the snapshots in the replica, oldest first.
func (l *Log) RestorePoints(ctx context.Context) ([]RestorePoint, error) {
	if l.replicator == nil {
		return nil, ErrNoReplica
	}
	client := newS3Client(l.replicator.cfg)
	if err := client.Init(ctx); err != nil {
		return nil, err
	}
	itr, err := client.LTXFiles(ctx, litestream.SnapshotLevel, 0, false)
	if err != nil {
		return nil, fmt.Errorf("cannot list snapshots: %w", err)
	}
	defer itr.Close()
	var out []RestorePoint
	for itr.Next() {
		info := itr.Item()
		out = append(out, RestorePoint{TXID: uint64(info.MaxTXID), CreatedAt: info.CreatedAt, Bytes: info.Size})
	}
	return out, itr.Err()
}

// BucketUsage counts the replica's objects and bytes with the S3 API.
func (l *Log) BucketUsage(ctx context.Context) (BucketUsage, error) {
	if l.replicator == nil {
		return BucketUsage{}, ErrNoReplica
	}
	cfg := l.replicator.cfg
	client := newS3API(cfg)
	var usage BucketUsage
	prefix := strings.TrimSuffix(cfg.Path, "/") + "/"
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(cfg.Bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return usage, fmt.Errorf("cannot list the bucket: %w", err)
		}
		for _, o := range page.Contents {
			usage.Objects++
			usage.Bytes += aws.ToInt64(o.Size)
		}
	}
	return usage, nil
}

// newS3API returns a plain S3 client for cfg, for the calls Litestream does
// not make: bucket checks and usage.
func newS3API(cfg ReplicaConfig) *s3.Client {
	opts := s3.Options{
		Region:       cfg.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		UsePathStyle: cfg.ForcePathStyle,
	}
	if opts.Region == "" {
		opts.Region = "auto"
	}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	return s3.New(opts)
}

// bucketMissingError says that the replica's bucket does not exist and
// could not be created: the credentials may use the bucket but not make it.
type bucketMissingError struct {
	Bucket   string
	Endpoint string
	Err      error // why CreateBucket failed
}

func (e *bucketMissingError) Error() string {
	return fmt.Sprintf("the bucket %s does not exist at %s, and these credentials may not create it (%v); "+
		"create it with `wrangler r2 bucket create %s` (Cloudflare R2) or in your S3 provider's console, then start again",
		e.Bucket, e.Endpoint, e.Err, e.Bucket)
}

func (e *bucketMissingError) Unwrap() error { return e.Err }

// ensureBucket creates the replica's bucket when the endpoint says it does
// not exist. A new deployment then needs no manual step, and when the keys
// may not create buckets the error says what to do, in its first words. An
// endpoint that does not answer is an error too; any other answer (refused
// keys…) is left to the restore or sync that follows, which reports it with
// the details Litestream gives.
func ensureBucket(ctx context.Context, cfg ReplicaConfig, logger *slog.Logger) error {
	client := newS3API(cfg)
	_, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)})
	switch httpStatus(err) {
	case http.StatusNotFound:
	case 0:
		if err != nil {
			return fmt.Errorf("cannot reach the bucket %s at %s: %w", cfg.Bucket, cfg.endpoint(), err)
		}
		return nil
	default:
		return nil
	}
	in := &s3.CreateBucketInput{Bucket: aws.String(cfg.Bucket)}
	if r := cfg.Region; r != "" && r != "auto" && r != "us-east-1" {
		// AWS wants the region named outside us-east-1; R2 wants nothing.
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(r)}
	}
	_, err = client.CreateBucket(ctx, in)
	code := errorCode(err)
	switch {
	case err == nil:
		logger.Info("created the replica's bucket, which did not exist", "bucket", cfg.Bucket, "endpoint", cfg.endpoint())
		return nil
	case code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists":
		return nil // created meanwhile
	case code == "":
		return fmt.Errorf("the bucket %s does not exist at %s, and creating it failed: %w", cfg.Bucket, cfg.endpoint(), err)
	}
	return &bucketMissingError{Bucket: cfg.Bucket, Endpoint: cfg.endpoint(), Err: errors.New(code)}
}

// httpStatus returns the HTTP status of an S3 error, or 0.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// errorCode returns the S3 error code (AccessDenied, …) of err, or "".
func errorCode(err error) string {
	var api interface{ ErrorCode() string }
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}
