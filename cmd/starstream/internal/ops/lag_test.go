package ops

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starstream/starstream/stream/streamtest"
)

func TestLagAgreesWithKafkaTool(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	ctx := testCtx(t)
	topic := newTopic(t, brokers, 3)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Minute) }
	produce(t, brokers, topic, 0, 10, at)
	produce(t, brokers, topic, 1, 20, at)
	produce(t, brokers, topic, 2, 5, at)
	group := newGroup(t, brokers)
	commitOffsets(t, brokers, group, topic, map[int]int64{0: 4, 1: 20, 2: 0})

	lags, err := Lag(ctx, brokers, nil, []string{group})
	if err != nil {
		t.Fatal(err)
	}
	if len(lags) != 3 {
		t.Fatalf("got %d partitions, want 3: %+v", len(lags), lags)
	}
	tool := describeGroups(t, brokers, group)
	for _, l := range lags {
		row, ok := tool[key(group, topic, strconv.Itoa(l.Partition))]
		if !ok {
			t.Fatalf("kafka-consumer-groups shows no row for %s[%d]: %v", topic, l.Partition, tool)
		}
		got := toolRow{current: strconv.FormatInt(l.Committed, 10), end: strconv.FormatInt(l.End, 10), lag: strconv.FormatInt(l.Lag, 10)}
		if got != row {
			t.Errorf("partition %d: ours %+v, kafka-consumer-groups %+v", l.Partition, got, row)
		}
	}
	// Seconds: the age of the record at the committed offset, 0 when caught up.
	want := map[int]time.Time{0: at(4), 1: {}, 2: at(0)}
	for _, l := range lags {
		if !l.Oldest.Equal(want[l.Partition]) {
			t.Errorf("partition %d: oldest unconsumed record at %v, want %v", l.Partition, l.Oldest, want[l.Partition])
		}
		wantSec := 0.0
		if !want[l.Partition].IsZero() {
			wantSec = time.Since(want[l.Partition]).Seconds()
		}
		if math.Abs(l.LagSeconds-wantSec) > 30 {
			t.Errorf("partition %d: lag %.1fs, want about %.1fs", l.Partition, l.LagSeconds, wantSec)
		}
	}

	var b strings.Builder
	if err := PrintLag(&b, lags); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "LAG-SECONDS") || !strings.Contains(b.String(), topic) {
		t.Errorf("PrintLag:\n%s", b.String())
	}

	prefix := strings.TrimSuffix(group, "dim_test")
	groups, err := Groups(ctx, brokers, nil, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(groups, []string{group}) {
		t.Errorf("Groups(%q) = %v, want [%s]", prefix, groups, group)
	}
}

func TestLagOfUnknownGroupIsEmpty(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	lags, err := Lag(testCtx(t), brokers, nil, []string{streamtest.Name(t, "nogroup")})
	if err != nil {
		t.Fatal(err)
	}
	if len(lags) != 0 {
		t.Errorf("got %+v, want nothing", lags)
	}
}
