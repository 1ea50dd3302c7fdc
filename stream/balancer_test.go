package stream

import (
	"encoding/binary"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestActiveStandbyGivesEverythingToTheEarliestMember(t *testing.T) {
	t.Parallel()
	at := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
	members := []kafka.GroupMember{{ID: "b", UserData: at(20)}, {ID: "a", UserData: at(30)}, {ID: "c", UserData: at(10)}}
	parts := []kafka.Partition{{Topic: "x", ID: 0}, {Topic: "x", ID: 1}, {Topic: "y", ID: 0}}
	got := activeStandby{}.AssignGroups(members, parts)
	if len(got["c"]["x"]) != 2 || len(got["c"]["y"]) != 1 {
		t.Fatalf("earliest member got %v", got["c"])
	}
	if len(got["a"]) != 0 || len(got["b"]) != 0 {
		t.Fatalf("standbys got partitions: a=%v b=%v", got["a"], got["b"])
	}
}

func TestCheckpointCoverage(t *testing.T) {
	t.Parallel()
	committed := Offsets{"a": {0: 10, 1: -2}}
	for _, tt := range []struct {
		ck   Offsets
		want bool
	}{
		{Offsets{"a": {0: 10, 1: 0}}, true},
		{Offsets{"a": {0: 4, 1: 0}}, true},
		{Offsets{"a": {0: 11, 1: 0}}, false},
		{Offsets{"a": {0: 4, 1: 3}}, false},
		{Offsets{"a": {0: 4}}, false}, // silent about partition 1
		{Offsets{}, false},
	} {
		if got := covered(tt.ck, committed); got != tt.want {
			t.Errorf("covered(%v, %v) = %v, want %v", tt.ck, committed, got, tt.want)
		}
	}
}
