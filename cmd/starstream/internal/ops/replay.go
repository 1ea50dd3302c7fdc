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

	"github.com/starstream/starstream/stream"
)

type targetKind int

const (
	toEarliest targetKind = iota + 1
	toDatetime
	toOffset
	shiftBy
)

// Target is where Replay moves a group's offsets: ToEarliest, ToDatetime,
// ToOffset or ShiftBy, the same choices as kafka-consumer-groups --reset-offsets.
type Target struct {
	kind targetKind
	at   time.Time
	n    int64
}

// ToEarliest moves every partition to its first offset still in the log.
func ToEarliest() Target { return Target{kind: toEarliest} }

// ToDatetime moves every partition to its first record with a timestamp at or
// after t (the log end where there is none).
func ToDatetime(t time.Time) Target { return Target{kind: toDatetime, at: t} }

// ToOffset moves every partition to offset n.
func ToOffset(n int64) Target { return Target{kind: toOffset, n: n} }

// ShiftBy moves every partition by n records (negative: back, to re-read them).
func ShiftBy(n int64) Target { return Target{kind: shiftBy, n: n} }

// String describes the target as the matching kafka-consumer-groups option.
func (t Target) String() string {
	switch t.kind {
	case toEarliest:
		return "--to-earliest"
	case toDatetime:
		return "--to-datetime " + t.at.UTC().Format("2006-01-02T15:04:05.000Z")
	case toOffset:
		return "--to-offset " + strconv.FormatInt(t.n, 10)
	case shiftBy:
		return "--shift-by " + strconv.FormatInt(t.n, 10)
	}
	return "no target"
}

// PlanPartition is one partition of a replay plan. New is always within [First, End].
type PlanPartition struct {
	Topic     string
	Partition int
	Current   int64 // committed offset, or -1 when nothing was committed
	New       int64
	First     int64
	End       int64
}

// Member is an active member of a consumer group.
type Member struct {
	ID       string
	ClientID string
	Host     string
}

func (m Member) String() string {
	return fmt.Sprintf("%s (client %s, host %s)", m.ID, m.ClientID, m.Host)
}

// Plan is what Replay did, or would do on a dry run.
type Plan struct {
	Group      string
	Target     Target
	DryRun     bool
	State      string   // the group's state as the broker reports it (Empty, Stable, …)
	Members    []Member // active members; a real run refuses when there are any
	Partitions []PlanPartition
	Applied    bool // the new offsets were committed and read back
}

// Replay moves the committed offsets of group on every partition of every topic
// it has committed offsets on. It refuses while the group has members (stop
// the pipeline first). A dry run computes and returns the plan — also while the
// group is active, with Members set — and commits nothing.
//
// Replaying is safe for starstream pipelines: on start a pipeline restores its
// state from the newest checkpoint at or before the committed offsets, so it
// re-derives the same rows from there (DESIGN §6).
func Replay(ctx context.Context, brokers []string, sec *stream.Security, group string, to Target, dryRun bool) (Plan, error) {
	plan := Plan{Group: group, Target: to, DryRun: dryRun}
	if to.kind == 0 {
		return plan, errors.New("replay: no target (to-earliest, to-datetime, to-offset or shift-by)")
	}
	c := newClient(brokers, sec)
	state, members, err := describe(ctx, c, group)
	if err != nil {
		return plan, err
	}
	plan.State, plan.Members = state, members
	if len(members) > 0 && !dryRun {
		names := make([]string, len(members))
		for i, m := range members {
			names[i] = m.String()
		}
		return plan, fmt.Errorf("%w: group %s is %s with %d member(s): %s; stop them (the pipeline's processes) before replaying",
			ErrGroupActive, group, state, len(members), strings.Join(names, ", "))
	}
	offs, err := committed(ctx, c, group)
	if err != nil {
		return plan, err
	}
	if len(offs) == 0 {
		return plan, fmt.Errorf("%w: group %s (it never ran, or its offsets expired; a new group starts at the earliest offset anyway)",
			ErrNoOffsets, group)
	}
	parts, err := partitionsOf(ctx, c, topicNames(offs))
	if err != nil {
		return plan, err
	}
	first, end, err := bounds(ctx, c, parts)
	if err != nil {
		return plan, err
	}
	var byTime map[tp]int64
	if to.kind == toDatetime {
		if byTime, err = offsetsAt(ctx, c, parts, to.at); err != nil {
			return plan, err
		}
	}
	for topic, ids := range parts {
		for _, id := range ids {
			k := tp{topic, id}
			cur, ok := offs[k]
			if !ok {
				cur = noOffset
			}
			pp := PlanPartition{Topic: topic, Partition: id, Current: cur, First: first[k], End: end[k]}
			switch to.kind {
			case toEarliest:
				pp.New = pp.First
			case toDatetime:
				pp.New = byTime[k]
			case toOffset:
				pp.New = to.n
			case shiftBy:
				base := cur
				if cur == noOffset {
					base = pp.First // starstream consumers start at the earliest offset
				}
				pp.New = base + to.n
			}
			pp.New = min(max(pp.New, pp.First), pp.End)
			plan.Partitions = append(plan.Partitions, pp)
		}
	}
	sort.Slice(plan.Partitions, func(i, j int) bool {
		a, b := plan.Partitions[i], plan.Partitions[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	if dryRun {
		return plan, nil
	}
	if err := commit(ctx, c, group, plan.Partitions); err != nil {
		return plan, err
	}
	plan.Applied = true
	return plan, nil
}

// describe returns the group's state and members.
func describe(ctx context.Context, c *kafka.Client, group string) (string, []Member, error) {
	res, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return "", nil, fmt.Errorf("describe group %s: %w", group, err)
	}
	for _, g := range res.Groups {
		if g.GroupID != group {
			continue
		}
		if g.Error != nil {
			return "", nil, fmt.Errorf("describe group %s: %w", group, g.Error)
		}
		var ms []Member
		for _, m := range g.Members {
			ms = append(ms, Member{ID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost})
		}
		return g.GroupState, ms, nil
	}
	return "", nil, fmt.Errorf("describe group %s: not in the broker's answer", group)
}

// offsetsAt returns, per partition, the first offset whose record has a
// timestamp at or after t, or the log end where no record is that recent.
func offsetsAt(ctx context.Context, c *kafka.Client, parts map[string][]int, t time.Time) (map[tp]int64, error) {
	req := map[string][]kafka.OffsetRequest{}
	for topic, ids := range parts {
		for _, id := range ids {
			req[topic] = append(req[topic], kafka.TimeOffsetOf(id, t))
		}
	}
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return nil, fmt.Errorf("list offsets at %s: %w", t.Format(time.RFC3339), err)
	}
	out := map[tp]int64{}
	for topic, pos := range res.Topics {
		for _, po := range pos {
			if po.Error != nil {
				return nil, fmt.Errorf("list offsets of %s[%d] at %s: %w", topic, po.Partition, t.Format(time.RFC3339), po.Error)
			}
			off := int64(-1)
			for o := range po.Offsets { // one entry: the offset found, or -1 for none
				off = o
			}
			if off < 0 {
				off = 1<<63 - 1 // no record that recent: clamped to the log end
			}
			out[tp{topic, po.Partition}] = off
		}
	}
	return out, nil
}

// commit writes the plan's offsets as an administrative commit (generation -1,
// no member id), which the broker accepts only while the group has no members,
// and checks every partition's error: the top-level error is nil even when each
// partition was refused (FINDINGS: ILLEGAL_GENERATION with generation 0). It then
// reads the offsets back.
func commit(ctx context.Context, c *kafka.Client, group string, parts []PlanPartition) error {
	req := map[string][]kafka.OffsetCommit{}
	for _, p := range parts {
		req[p.Topic] = append(req[p.Topic], kafka.OffsetCommit{Partition: p.Partition, Offset: p.New})
	}
	res, err := c.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, MemberID: "", Topics: req})
	if err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", group, err)
	}
	var errs []error
	answered := map[tp]bool{}
	for topic, ps := range res.Topics {
		for _, p := range ps {
			answered[tp{topic, p.Partition}] = true
			if p.Error != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", topic, p.Partition, p.Error))
			}
		}
	}
	for _, p := range parts {
		if !answered[tp{p.Topic, p.Partition}] {
			errs = append(errs, fmt.Errorf("%s[%d]: no answer from the broker", p.Topic, p.Partition))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", group, err)
	}
	got, err := committed(ctx, c, group)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if o := got[tp{p.Topic, p.Partition}]; o != p.New {
			return fmt.Errorf("commit offsets of group %s: %s[%d] reads back %d, not %d (did a member join meanwhile?)",
				group, p.Topic, p.Partition, o, p.New)
		}
	}
	return nil
}

// Print writes the plan as a table of partition, current and new offsets.
func (p Plan) Print(w io.Writer) error {
	verb := "committed"
	if p.DryRun {
		verb = "dry run, nothing committed"
	}
	fmt.Fprintf(w, "replay group %s %s (%s)\n", p.Group, p.Target, verb)
	if len(p.Members) > 0 {
		fmt.Fprintf(w, "group is %s with %d active member(s): stop them before replaying\n", p.State, len(p.Members))
		for _, m := range p.Members {
			fmt.Fprintf(w, "  %s\n", m)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCURRENT\tNEW\tFIRST\tEND")
	for _, pp := range p.Partitions {
		cur := "-"
		if pp.Current != noOffset {
			cur = strconv.FormatInt(pp.Current, 10)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\n", pp.Topic, pp.Partition, cur, pp.New, pp.First, pp.End)
	}
	return tw.Flush()
}
