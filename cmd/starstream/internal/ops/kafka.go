package ops

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/segmentio/kafka-go"
)

// tp names a topic partition.
type tp struct {
	topic     string
	partition int
}

// committed returns the group's committed offsets (only partitions that have one).
func committed(ctx context.Context, c *kafka.Client, group string) (map[tp]int64, error) {
	res, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group})
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("fetch offsets of group %s: %w", group, res.Error)
	}
	out := map[tp]int64{}
	for topic, parts := range res.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return nil, fmt.Errorf("fetch offset of group %s on %s[%d]: %w", group, topic, p.Partition, p.Error)
			}
			if p.CommittedOffset >= 0 {
				out[tp{topic, p.Partition}] = p.CommittedOffset
			}
		}
	}
	return out, nil
}

// partitionsOf returns the partitions of each topic; topics that do not exist
// (any more) are left out.
func partitionsOf(ctx context.Context, c *kafka.Client, topics []string) (map[string][]int, error) {
	if len(topics) == 0 {
		return map[string][]int{}, nil
	}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	out := map[string][]int{}
	for _, t := range md.Topics {
		if t.Error != nil {
			if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
				continue
			}
			return nil, fmt.Errorf("metadata of %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			out[t.Name] = append(out[t.Name], p.ID)
		}
		sort.Ints(out[t.Name])
	}
	return out, nil
}

// bounds returns the first and the end (next to be written) offset of each partition.
func bounds(ctx context.Context, c *kafka.Client, parts map[string][]int) (first, end map[tp]int64, err error) {
	first, end = map[tp]int64{}, map[tp]int64{}
	if len(parts) == 0 {
		return first, end, nil
	}
	req := map[string][]kafka.OffsetRequest{}
	for topic, ids := range parts {
		for _, id := range ids {
			req[topic] = append(req[topic], kafka.FirstOffsetOf(id), kafka.LastOffsetOf(id))
		}
	}
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return nil, nil, fmt.Errorf("list offsets: %w", err)
	}
	for topic, pos := range res.Topics {
		for _, po := range pos {
			if po.Error != nil {
				return nil, nil, fmt.Errorf("list offsets of %s[%d]: %w", topic, po.Partition, po.Error)
			}
			first[tp{topic, po.Partition}] = po.FirstOffset
			end[tp{topic, po.Partition}] = po.LastOffset
		}
	}
	return first, end, nil
}

func topicNames[V any](m map[tp]V) []string {
	seen := map[string]bool{}
	var out []string
	for k := range m {
		if !seen[k.topic] {
			seen[k.topic] = true
			out = append(out, k.topic)
		}
	}
	sort.Strings(out)
	return out
}
