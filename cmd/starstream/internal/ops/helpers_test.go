package ops

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// toolRow is one partition line of kafka-consumer-groups --describe.
type toolRow struct {
	current, end, lag string // as printed: "-" for none
}

// kafkaTool runs one of Kafka's own command-line tools from the local stack.
func kafkaTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.mod) not found above the test's directory")
		}
		dir = parent
	}
	bin := filepath.Join(dir, "deploy", "local", "kafka", "bin", name)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s\n(Kafka's tools come with the local stack: run `make up`)", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// describeGroups runs kafka-consumer-groups --describe on the groups and
// returns its rows keyed by group, topic and partition.
func describeGroups(t *testing.T, brokers []string, groups ...string) map[string]toolRow {
	t.Helper()
	args := []string{"--bootstrap-server", brokers[0], "--describe"}
	for _, g := range groups {
		args = append(args, "--group", g)
	}
	out := kafkaTool(t, "kafka-consumer-groups", args...)
	rows := map[string]toolRow{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[0] == "GROUP" {
			continue
		}
		if _, err := strconv.Atoi(f[2]); err != nil {
			continue
		}
		rows[key(f[0], f[1], f[2])] = toolRow{current: f[3], end: f[4], lag: f[5]}
	}
	return rows
}

func key(group, topic, partition string) string { return group + " " + topic + " " + partition }

// newTopic creates a topic with the given partitions, deleted after the test.
func newTopic(t *testing.T, brokers []string, partitions int) string {
	t.Helper()
	topic := streamtest.Name(t, "ops")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := stream.NewAdmin(brokers, nil).EnsureTopic(ctx, topic, stream.TopicConfig{Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	streamtest.DeleteTopics(t, brokers, topic)
	return topic
}

// produce writes n records to one partition, record i stamped at(i).
func produce(t *testing.T, brokers []string, topic string, partition, n int, at func(i int) time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := make([]kafka.Record, n)
	for i := range recs {
		recs[i] = kafka.Record{Time: at(i), Value: kafka.NewBytes([]byte("record " + strconv.Itoa(i)))}
	}
	for {
		// A new topic's leaders take a moment to be known everywhere.
		res, err := newClient(brokers, nil).Produce(ctx, &kafka.ProduceRequest{Topic: topic, Partition: partition,
			RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs...)})
		if err == nil {
			err = res.Error
		}
		if err == nil {
			return
		}
		var ke kafka.Error
		if !errors.As(err, &ke) || !ke.Temporary() || ctx.Err() != nil {
			t.Fatalf("produce to %s[%d]: %v", topic, partition, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newGroup returns a group name that is deleted after the test.
func newGroup(t *testing.T, brokers []string) string {
	t.Helper()
	g := streamtest.Name(t, "ops") + ".starstream.dim_test"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = newClient(brokers, nil).DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{g}})
	})
	return g
}

// commitOffsets commits offsets for a group that has no members, the way an
// administrator does, checking every partition's error.
func commitOffsets(t *testing.T, brokers []string, group, topic string, offsets map[int]int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cs []kafka.OffsetCommit
	for p, o := range offsets {
		cs = append(cs, kafka.OffsetCommit{Partition: p, Offset: o})
	}
	res, err := newClient(brokers, nil).OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{topic: cs}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				t.Fatalf("commit %s[%d]: %v", topic, p.Partition, p.Error)
			}
		}
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}
