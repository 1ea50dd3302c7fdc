package ops

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/stream/streamtest"
)

// TestReplayEachTarget resets four groups, one per target, and checks with
// kafka-consumer-groups that Kafka sees the offsets the plans promised.
func TestReplayEachTarget(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	ctx := testCtx(t)
	topic := newTopic(t, brokers, 2)
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Minute) }
	produce(t, brokers, topic, 0, 10, at)
	produce(t, brokers, topic, 1, 10, at)

	cases := []struct {
		name string
		to   Target
		want [2]int64
	}{
		{"earliest", ToEarliest(), [2]int64{0, 0}},
		{"datetime", ToDatetime(at(5).Add(-time.Second)), [2]int64{5, 5}},
		{"offset", ToOffset(3), [2]int64{3, 3}},
		{"offset past the end", ToOffset(100), [2]int64{10, 10}},
		{"shift back", ShiftBy(-2), [2]int64{5, 7}},
		{"shift before the start", ShiftBy(-50), [2]int64{0, 0}},
	}
	var groups []string
	wantRows := map[string]toolRow{}
	for _, tc := range cases {
		group := newGroup(t, brokers)
		groups = append(groups, group)
		commitOffsets(t, brokers, group, topic, map[int]int64{0: 7, 1: 9})

		dry, err := Replay(ctx, brokers, nil, group, tc.to, true)
		if err != nil {
			t.Fatalf("%s: dry run: %v", tc.name, err)
		}
		if dry.Applied {
			t.Errorf("%s: dry run says it applied", tc.name)
		}
		checkPlan(t, tc.name+" (dry run)", dry, tc.want)
		if got, err := committed(ctx, newClient(brokers, nil), group); err != nil || got[tp{topic, 0}] != 7 || got[tp{topic, 1}] != 9 {
			t.Fatalf("%s: dry run changed the offsets: %v %v", tc.name, got, err)
		}

		plan, err := Replay(ctx, brokers, nil, group, tc.to, false)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !plan.Applied {
			t.Errorf("%s: not applied", tc.name)
		}
		checkPlan(t, tc.name, plan, tc.want)
		for p, off := range tc.want {
			wantRows[key(group, topic, strconv.Itoa(p))] = toolRow{current: strconv.FormatInt(off, 10), end: "10",
				lag: strconv.FormatInt(10-off, 10)}
		}
	}
	got := describeGroups(t, brokers, groups...)
	for k, want := range wantRows {
		if got[k] != want {
			t.Errorf("kafka-consumer-groups %s: %+v, want %+v", k, got[k], want)
		}
	}
}

func checkPlan(t *testing.T, name string, plan Plan, want [2]int64) {
	t.Helper()
	if len(plan.Partitions) != 2 {
		t.Fatalf("%s: plan has %d partitions: %+v", name, len(plan.Partitions), plan.Partitions)
	}
	for i, pp := range plan.Partitions {
		cur := []int64{7, 9}[i]
		if pp.Partition != i || pp.Current != cur || pp.New != want[i] || pp.First != 0 || pp.End != 10 {
			t.Errorf("%s: partition %d: %+v, want current %d new %d", name, i, pp, cur, want[i])
		}
	}
	var b strings.Builder
	if err := plan.Print(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "CURRENT") || !strings.Contains(b.String(), plan.Target.String()) {
		t.Errorf("%s: printed plan:\n%s", name, b.String())
	}
}

// TestKafkaToolResetIsSeenByLag runs the reset from the operations guide with
// Kafka's own tool and reads the result back through Lag.
func TestKafkaToolResetIsSeenByLag(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	ctx := testCtx(t)
	topic := newTopic(t, brokers, 2)
	now := func(int) time.Time { return time.Now() }
	produce(t, brokers, topic, 0, 6, now)
	produce(t, brokers, topic, 1, 4, now)
	group := newGroup(t, brokers)
	commitOffsets(t, brokers, group, topic, map[int]int64{0: 6, 1: 4})

	kafkaTool(t, "kafka-consumer-groups", "--bootstrap-server", brokers[0], "--reset-offsets",
		"--group", group, "--topic", topic, "--to-earliest", "--execute")

	lags, err := Lag(ctx, brokers, nil, []string{group})
	if err != nil {
		t.Fatal(err)
	}
	if len(lags) != 2 || lags[0].Committed != 0 || lags[0].Lag != 6 || lags[1].Committed != 0 || lags[1].Lag != 4 {
		t.Errorf("after kafka-consumer-groups --reset-offsets --to-earliest: %+v", lags)
	}
	for _, l := range lags {
		if l.LagSeconds <= 0 || l.LagSeconds > 60 {
			t.Errorf("partition %d: lag %.1fs, want a few seconds", l.Partition, l.LagSeconds)
		}
	}
}

// TestReplayRefusesActiveGroup joins the group with a kafka-go consumer and
// checks that Replay refuses, naming the member, until it leaves.
func TestReplayRefusesActiveGroup(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	ctx := testCtx(t)
	topic := newTopic(t, brokers, 2)
	produce(t, brokers, topic, 0, 5, func(int) time.Time { return time.Now() })
	group := newGroup(t, brokers)
	commitOffsets(t, brokers, group, topic, map[int]int64{0: 5, 1: 0})

	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{ID: group, Brokers: brokers, Topics: []string{topic},
		HeartbeatInterval: 500 * time.Millisecond, SessionTimeout: 6 * time.Second, RebalanceTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	joined := make(chan *kafka.Generation, 1)
	go func() {
		gen, err := cg.Next(ctx)
		if err == nil {
			joined <- gen
		}
	}()
	select {
	case <-joined:
	case <-ctx.Done():
		t.Fatal("the test consumer never joined the group")
	}
	c := newClient(brokers, nil)
	_, members, err := describe(ctx, c, group)
	if err != nil || len(members) != 1 {
		t.Fatalf("describe: %v %+v", err, members)
	}

	_, err = Replay(ctx, brokers, nil, group, ToEarliest(), false)
	if !errors.Is(err, ErrGroupActive) {
		t.Fatalf("replay of an active group: %v, want ErrGroupActive", err)
	}
	if !strings.Contains(err.Error(), members[0].ID) || !strings.Contains(err.Error(), group) {
		t.Errorf("the error should name the group and its member %s: %v", members[0].ID, err)
	}
	dry, err := Replay(ctx, brokers, nil, group, ToEarliest(), true)
	if err != nil {
		t.Fatalf("dry run of an active group: %v", err)
	}
	if len(dry.Members) != 1 || dry.Members[0].ID != members[0].ID || len(dry.Partitions) != 2 {
		t.Errorf("dry run plan: %+v", dry)
	}
	var b strings.Builder
	_ = dry.Print(&b)
	if !strings.Contains(b.String(), members[0].ID) || !strings.Contains(b.String(), "stop them") {
		t.Errorf("printed dry run should warn about the member:\n%s", b.String())
	}
	if got, _ := committed(ctx, c, group); got[tp{topic, 0}] != 5 {
		t.Errorf("offsets changed while refusing: %v", got)
	}
	// Had a member joined between the check and the commit, the broker refuses
	// each partition (UNKNOWN_MEMBER_ID) while the call succeeds: commit says so.
	if err := commit(ctx, c, group, dry.Partitions); err == nil || !strings.Contains(err.Error(), "Unknown Member ID") {
		t.Errorf("administrative commit into an active group: %v, want the partitions' UNKNOWN_MEMBER_ID", err)
	}

	if err := cg.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, ms, err := describe(ctx, c, group)
		if err == nil && len(ms) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the member did not leave: %+v %v", ms, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	plan, err := Replay(ctx, brokers, nil, group, ToEarliest(), false)
	if err != nil || !plan.Applied {
		t.Fatalf("replay after the member left: %v", err)
	}
}

// TestCommitChecksEveryPartition shows why commit reads partition errors: a
// commit with generation 0 fails per partition while the call itself succeeds.
func TestCommitChecksEveryPartition(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	ctx := testCtx(t)
	topic := newTopic(t, brokers, 2)
	group := newGroup(t, brokers)
	commitOffsets(t, brokers, group, topic, map[int]int64{0: 0, 1: 0})
	c := newClient(brokers, nil)
	res, err := c.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: 0,
		Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: 0, Offset: 0}, {Partition: 1, Offset: 0}}}})
	if err != nil {
		t.Fatalf("the call itself fails (%v): the trap this test documents is gone", err)
	}
	failed := 0
	for _, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				failed++
			}
		}
	}
	if failed != 2 {
		t.Errorf("generation 0: %d partitions failed, want 2 (FINDINGS: ILLEGAL_GENERATION per partition)", failed)
	}
	// Our commit, with generation -1, succeeds and is read back.
	if err := commit(context.Background(), c, group, []PlanPartition{{Topic: topic, Partition: 0, New: 0}, {Topic: topic, Partition: 1, New: 0}}); err != nil {
		t.Fatal(err)
	}
}
