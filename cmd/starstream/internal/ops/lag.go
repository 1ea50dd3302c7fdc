package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/starstream/starstream/stream"
)

// PartitionLag is how far one consumer group is behind on one partition.
type PartitionLag struct {
	Group     string
	Topic     string
	Partition int
	// Committed is the group's committed offset (the next record it will read),
	// or -1 when it committed nothing on this partition yet.
	Committed int64
	First     int64 // first offset still in the log
	End       int64 // log-end offset: the offset the next record will get
	// Lag is End − Committed, as kafka-consumer-groups computes it; without a
	// commit it is End − First, since starstream consumers start at the earliest offset.
	Lag int64
	// Oldest is the timestamp of the oldest unconsumed record (the one at the
	// committed offset); zero when caught up.
	Oldest time.Time
	// LagSeconds is the age of that record when Lag was measured; 0 when caught up.
	LagSeconds float64
}

// Groups lists the consumer groups whose id starts with prefix, sorted. The
// pipelines' groups are "<namespace>starstream.<pipeline>".
func Groups(ctx context.Context, brokers []string, sec *stream.Security, prefix string) ([]string, error) {
	c := newClient(brokers, sec)
	// kafka-go broadcasts ListGroups to the brokers of the cluster metadata; when
	// that metadata cannot be read (authentication failed, TLS mismatch) it asks
	// no broker and answers "no groups". Read the metadata first, for its error.
	if _, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}}); err != nil {
		return nil, fmt.Errorf("list consumer groups: %w", err)
	}
	res, err := c.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list consumer groups: %w", err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("list consumer groups: %w", res.Error)
	}
	var out []string
	for _, g := range res.Groups {
		if strings.HasPrefix(g.GroupID, prefix) {
			out = append(out, g.GroupID)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Lag returns the lag of every partition the groups committed an offset on or
// have assigned to a member, sorted by group, topic and partition. Partitions of
// topics that no longer exist are left out. The records figure agrees with
// kafka-consumer-groups --describe; the seconds figure reads the timestamp of
// the record at the committed offset.
func Lag(ctx context.Context, brokers []string, sec *stream.Security, groups []string) ([]PartitionLag, error) {
	c := newClient(brokers, sec)
	var out []PartitionLag
	var topics []string
	seen := map[string]bool{}
	for _, g := range groups {
		offs, err := committed(ctx, c, g)
		if err != nil {
			return nil, err
		}
		assigned, err := assignedPartitions(ctx, c, g)
		if err != nil {
			return nil, err
		}
		for k := range assigned {
			if _, ok := offs[k]; !ok {
				offs[k] = noOffset
			}
		}
		for k, off := range offs {
			out = append(out, PartitionLag{Group: g, Topic: k.topic, Partition: k.partition, Committed: off})
			if !seen[k.topic] {
				seen[k.topic] = true
				topics = append(topics, k.topic)
			}
		}
	}
	parts, err := partitionsOf(ctx, c, topics)
	if err != nil {
		return nil, err
	}
	first, end, err := bounds(ctx, c, parts)
	if err != nil {
		return nil, err
	}
	kept := out[:0]
	for _, l := range out {
		k := tp{l.Topic, l.Partition}
		e, ok := end[k]
		if !ok {
			continue // deleted topic or partition
		}
		l.First, l.End = first[k], e
		if l.Committed == noOffset {
			l.Lag = max(e-l.First, 0)
		} else {
			l.Lag = max(e-l.Committed, 0)
		}
		kept = append(kept, l)
	}
	out = kept
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	if err := oldest(ctx, c, out); err != nil {
		return nil, err
	}
	now := time.Now()
	for i := range out {
		if !out[i].Oldest.IsZero() {
			out[i].LagSeconds = max(now.Sub(out[i].Oldest).Seconds(), 0)
		}
	}
	return out, nil
}

// assignedPartitions returns the partitions assigned to the group's members.
func assignedPartitions(ctx context.Context, c *kafka.Client, group string) (map[tp]bool, error) {
	res, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", group, err)
	}
	out := map[tp]bool{}
	for _, g := range res.Groups {
		if g.Error != nil {
			return nil, fmt.Errorf("describe group %s: %w", group, g.Error)
		}
		for _, m := range g.Members {
			for _, t := range m.MemberAssignments.Topics {
				for _, p := range t.Partitions {
					out[tp{t.Topic, p}] = true
				}
			}
		}
	}
	return out, nil
}

// oldest sets Oldest of every lagging partition from the record at its
// committed offset (or the first offset, where nothing was committed or the
// committed record was deleted by retention).
func oldest(ctx context.Context, c *kafka.Client, lags []PartitionLag) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range lags {
		l := &lags[i]
		if l.Lag <= 0 {
			continue
		}
		g.Go(func() error {
			at := max(l.Committed, l.First)
			t, err := recordTime(ctx, c, l.Topic, l.Partition, at, l.End)
			if err != nil {
				return fmt.Errorf("read %s[%d]@%d for the lag of %s: %w", l.Topic, l.Partition, at, l.Group, err)
			}
			l.Oldest = t
			return nil
		})
	}
	return g.Wait()
}

// recordTime returns the timestamp of the first record at or after offset.
// Fetches return whole batches, which may start before offset, and offsets may
// be missing (compaction, transaction markers), hence the loop.
func recordTime(ctx context.Context, c *kafka.Client, topic string, partition int, offset, end int64) (time.Time, error) {
	for tries := 0; tries < 3 && offset < end; tries++ {
		res, err := c.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: offset,
			MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond})
		if err != nil {
			return time.Time{}, err
		}
		if res.Error != nil {
			return time.Time{}, res.Error
		}
		read := false
		for {
			r, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return time.Time{}, err
			}
			closeBytes(r)
			read = true
			if r.Offset >= offset {
				return r.Time, nil
			}
		}
		if !read {
			break
		}
		offset++ // the batch ended before offset: that record is gone
	}
	return time.Time{}, nil // nothing readable: nothing to age
}

func closeBytes(r *kafka.Record) {
	if r.Key != nil {
		r.Key.Close()
	}
	if r.Value != nil {
		r.Value.Close()
	}
}

// PrintLag writes lags as a table, one partition a line, like
// kafka-consumer-groups --describe plus the lag in seconds.
func PrintLag(w io.Writer, lags []PartitionLag) error {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tTOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tLAG-SECONDS")
	for _, l := range lags {
		c := "-"
		if l.Committed != noOffset {
			c = strconv.FormatInt(l.Committed, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%s\n", l.Group, l.Topic, l.Partition, c, l.End, l.Lag,
			strconv.FormatFloat(l.LagSeconds, 'f', 1, 64))
	}
	return tw.Flush()
}
