package capture

import (
	"fmt"
	"testing"
)

func TestTxSnapshotVisible(t *testing.T) {
	t.Parallel()
	const epoch = uint64(3) << 32
	s, err := parseTxSnapshot(fmt.Sprintf("%d:%d:%d,%d", epoch+100, epoch+110, epoch+103, epoch+107))
	if err != nil {
		t.Fatal(err)
	}
	if s.xmin != epoch+100 || s.xmax != epoch+110 || len(s.xip) != 2 {
		t.Fatalf("parsed %+v", s)
	}
	cases := map[uint32]bool{
		90:         true,  // below xmin: finished before the snapshot
		105:        true,  // between, not running
		103:        false, // running when the snapshot was taken
		107:        false,
		110:        false, // at xmax: started after
		190:        false,
		0xFFFFFFF0: true, // previous epoch, long finished
	}
	for xid, want := range cases {
		if got := s.visible(xid); got != want {
			t.Errorf("visible(%d) = %v, want %v", xid, got, want)
		}
	}
	if _, err := parseTxSnapshot("1:2"); err == nil {
		t.Error("a snapshot without xip list parsed")
	}
	if e, err := parseTxSnapshot("5:9:"); err != nil || len(e.xip) != 0 || !e.visible(6) || e.visible(9) {
		t.Errorf("empty xip: %+v %v", e, err)
	}
}

func TestKeyBody(t *testing.T) {
	t.Parallel()
	body := []byte{0x02, 0x04}
	soe := append([]byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}, body...)
	confluent := append([]byte{0, 0, 0, 0, 42}, body...)
	if string(keyBody(soe)) != string(body) || string(keyBody(confluent)) != string(body) {
		t.Fatalf("keyBody: %x %x", keyBody(soe), keyBody(confluent))
	}
}

func TestKeyString(t *testing.T) {
	t.Parallel()
	a := keyString(map[string]any{"a": int64(1), "b": "x"})
	b := keyString(map[string]any{"b": "x", "a": int64(1)})
	c := keyString(map[string]any{"a": "1", "b": "x"})
	if a != b || a == c {
		t.Fatalf("keyString: %q %q %q", a, b, c)
	}
}
