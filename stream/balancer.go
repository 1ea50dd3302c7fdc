package stream

import (
	"encoding/binary"
	"sort"

	"github.com/segmentio/kafka-go"
)

// activeStandby assigns every partition of a group to one member, the one that
// joined first, and nothing to the others, which stand by and take over when it
// leaves. A pipeline's watermark is the minimum over all of its input
// partitions, and its state (the order of a sale and its items, say) spans
// partitions, so one active member per pipeline keeps both correct; more
// instances give fail-over, and separate processes per pipeline give scale-out.
type activeStandby struct{ joined int64 }

// ProtocolName names the assignment strategy in the group protocol.
func (activeStandby) ProtocolName() string { return "starstream-active-standby" }

// UserData tells the leader when this member joined.
func (b activeStandby) UserData() ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(b.joined)), nil
}

// AssignGroups gives everything to the earliest member (ties by member id).
func (activeStandby) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	if len(members) == 0 {
		return out
	}
	joined := func(m kafka.GroupMember) uint64 {
		if len(m.UserData) != 8 {
			return ^uint64(0)
		}
		return binary.BigEndian.Uint64(m.UserData)
	}
	sorted := append([]kafka.GroupMember(nil), members...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := joined(sorted[i]), joined(sorted[j])
		if a != b {
			return a < b
		}
		return sorted[i].ID < sorted[j].ID
	})
	for _, m := range sorted {
		out[m.ID] = map[string][]int{}
	}
	active := out[sorted[0].ID]
	for _, p := range partitions {
		active[p.Topic] = append(active[p.Topic], p.ID)
	}
	return out
}
