package capture

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// commitTxn plays one transaction through the reader's history: the keys
// (ids) it changed in table rel, as an update leaving TOAST values out when
// unchanged.
func commitTxn(r *reader, xid uint32, rel *relation, unchanged bool, ids ...int64) {
	r.xid = xid
	r.commitLSN += 100
	for _, id := range ids {
		r.track(rel, unchanged, map[string]any{"id": id})
	}
	r.remember()
}

func keySet(ids ...int64) []string {
	var out []string
	for _, id := range ids {
		out = append(out, keyString(map[string]any{"id": id}))
	}
	slices.Sort(out)
	return out
}

// TestHistoryKeptWithoutJob: the reader keeps the bounded history of every
// captured table whether or not a backfill runs (review finding 4: kept only
// during a job, the first chunk of a job could publish a row older than a
// change logged before the job started but invisible to the chunk), and a
// chunk drops exactly the keys of its table changed by transactions its
// snapshot could not see, before its low watermark or inside its window.
func TestHistoryKeptWithoutJob(t *testing.T) {
	t.Parallel()
	a := &relation{name: "s.a"}
	b := &relation{name: "s.b"}
	r := &reader{bf: newBackfiller(nil)}

	// No job: transactions 100 (s.a 1, s.b 1) and 101 (s.a 2) are kept.
	commitTxn(r, 100, a, false, 1)
	r.track(b, false, map[string]any{"id": int64(1)})
	r.remember()
	commitTxn(r, 101, a, true, 2)
	if h, _ := r.history(); len(h) != 3 {
		t.Fatalf("history without a job: %d transactions, want 3", len(h))
	}

	// A chunk of s.a: low watermark, then 102 (s.a 3, seen by the chunk's
	// snapshot) and 104 (s.a 4, not seen), then the high watermark. 101
	// left TOAST values out, 104 did not. The
	// snapshot 101:104:101 sees 100 and 102, not 101 (still running for it)
	// nor 104.
	w := newWindow("s.a")
	r.bf.active.Store(w)
	w.lowSeen = true
	w.pre, _ = r.history()
	w.lowSeq = r.histSeq
	commitTxn(r, 102, a, false, 3)
	commitTxn(r, 104, a, false, 4)
	var err error
	if w.snap, err = parseTxSnapshot("101:104:101"); err != nil {
		t.Fatal(err)
	}
	drop, reread, err := r.dropped(w)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(drop)), keySet(2, 4); !slices.Equal(got, want) {
		t.Errorf("dropped %q, want %q (the keys of 101 and 104)", got, want)
	}
	// 101 left TOAST values out: its key is read again by the next chunk.
	if got, want := slices.Sorted(maps.Keys(reread)), keySet(2); !slices.Equal(got, want) {
		t.Errorf("read again %q, want %q (the key of 101)", got, want)
	}

	r.bf.active.Store(nil)

	// A transaction of more keys than the history keeps one: an unseen one
	// fails the chunk instead of publishing a row it may have changed.
	ids := make([]int64, histMaxTxnKeys+5)
	for i := range ids {
		ids[i] = int64(1000 + i)
	}
	commitTxn(r, 105, a, false, ids...)
	h, _ := r.history()
	if last := h[len(h)-1]; len(last.keys) != histMaxTxnKeys || !slices.Equal(last.overflow, []string{"s.a"}) {
		t.Fatalf("large transaction kept %d keys, overflow %v", len(last.keys), last.overflow)
	}
	w = newWindow("s.a")
	w.lowSeen, w.lowSeq = true, r.histSeq
	w.pre, _ = r.history()
	if w.snap, err = parseTxSnapshot("105:106:105"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.dropped(w); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("chunk that cannot see a large transaction: %v, want an error", err)
	}

	// A window longer than the history's bounds: it lost the window's first
	// transactions, so every key changed in the window goes, also those of
	// transactions the snapshot saw; and the history stays within bounds.
	w = newWindow("s.b")
	r.bf.active.Store(w)
	w.lowSeen, w.lowSeq = true, r.histSeq
	w.pre, _ = r.history()
	for i := 0; i < 2*histMaxTxns; i++ {
		commitTxn(r, uint32(200+i), b, false, int64(i))
	}
	if w.snap, err = parseTxSnapshot(fmt.Sprintf("%d:%d:", 300+2*histMaxTxns, 300+2*histMaxTxns)); err != nil {
		t.Fatal(err)
	}
	if drop, _, err = r.dropped(w); err != nil || len(drop) != 2*histMaxTxns {
		t.Errorf("dropped %d keys (%v) after the history lost the window, want all %d changed in it", len(drop), err, 2*histMaxTxns)
	}
	if h, _ := r.history(); len(h) != histMaxTxns || len(r.hist) > 2*histMaxTxns {
		t.Errorf("history of %d transactions (%d in its array), want %d", len(h), len(r.hist), histMaxTxns)
	}
}
