package eventlog

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
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
	client := s3.New(opts)
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
