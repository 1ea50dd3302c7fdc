package dimensions

import (
	"testing"
	"time"

	"github.com/starstream/starstream/stream"
)

func pos(lsn, seq uint64) stream.Position { return stream.Position{LSN: stream.LSN(lsn), Seq: seq} }

func customer(id int64, city, tier, email string) map[string]any {
	return map[string]any{"customer_id": id, "city": city, "state": "S", "country": "FR", "segment": "consumer",
		"loyalty_tier": tier, "email": email, "full_name": "Ada", "phone": nil, "created_at": time.Unix(0, 0).UTC()}
}

func TestSCD(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		changes  []Change
		versions int    // versions of customer 1 afterwards
		current  string // city of the current version, "" if none
		touched  int    // versions the last change rewrote
	}{
		{"insert opens a version", []Change{{Row: customer(1, "Lyon", "gold", "a@x"), Pos: pos(10, 0)}}, 1, "Lyon", 1},
		{"type 2 change opens another", []Change{
			{Row: customer(1, "Lyon", "gold", "a@x"), Pos: pos(10, 0)},
			{Row: customer(1, "Paris", "gold", "a@x"), Pos: pos(20, 0)}}, 2, "Paris", 2},
		{"type 1 change rewrites every version", []Change{
			{Row: customer(1, "Lyon", "gold", "a@x"), Pos: pos(10, 0)},
			{Row: customer(1, "Paris", "gold", "a@x"), Pos: pos(20, 0)},
			{Row: customer(1, "Paris", "gold", "b@x"), Pos: pos(30, 0)}}, 2, "Paris", 2},
		{"no change touches nothing", []Change{
			{Row: customer(1, "Lyon", "gold", "a@x"), Pos: pos(10, 0)},
			{Row: customer(1, "Lyon", "gold", "a@x"), Pos: pos(20, 0)}}, 1, "Lyon", 0},
		{"delete closes the current version", []Change{
			{Row: customer(1, "Lyon", "gold", "a@x"), Pos: pos(10, 0)},
			{Row: map[string]any{"customer_id": int64(1)}, Pos: pos(20, 0), Deleted: true}}, 1, "", 1},
		{"re-insert after delete opens a version", []Change{
			{Row: customer(1, "Lyon", "gold", "a@x"), Pos: pos(10, 0)},
			{Row: map[string]any{"customer_id": int64(1)}, Pos: pos(20, 0), Deleted: true},
			{Row: customer(1, "Lyon", "gold", "a@x"), Pos: pos(30, 0)}}, 2, "Lyon", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := NewState(Customer)
			var last Applied
			for _, c := range tt.changes {
				a, ok := st.Apply(c)
				if !ok {
					t.Fatalf("change at %s skipped", c.Pos)
				}
				last = a
			}
			e := st.ents[NaturalKey(int64(1))]
			if len(e.versions) != tt.versions {
				t.Fatalf("%d versions, want %d", len(e.versions), tt.versions)
			}
			city := ""
			if cur := e.current(); cur != nil {
				city = cur.Type2["city"].(string)
			}
			if city != tt.current {
				t.Fatalf("current city %q, want %q", city, tt.current)
			}
			if len(last.Versions) != tt.touched {
				t.Fatalf("last change touched %d versions, want %d", len(last.Versions), tt.touched)
			}
			for _, r := range st.Rows(last) {
				if r.Values["email"] != tt.changes[len(tt.changes)-1].Row["email"] && !tt.changes[len(tt.changes)-1].Deleted {
					t.Fatalf("row email %v not overwritten", r.Values["email"])
				}
			}
		})
	}
}

func TestPointInTimeLookupAndKeys(t *testing.T) {
	t.Parallel()
	st := NewState(Customer)
	st.Apply(Change{Row: customer(1, "Lyon", "gold", "a@x"), Pos: pos(100, 7), Snapshot: true})
	st.Apply(Change{Row: customer(1, "Paris", "gold", "a@x"), Pos: pos(200, 1)})
	nk := NaturalKey(int64(1))
	for _, tt := range []struct {
		at   stream.Position
		city string
		ok   bool
	}{
		{pos(99, 0), "", false},
		{pos(100, 0), "Lyon", true}, // snapshot versions are valid from the start of their snapshot
		{pos(200, 0), "Lyon", true},
		{pos(200, 1), "Paris", true},
		{pos(300, 0), "Paris", true},
	} {
		v, attrs, ok := st.Lookup(nk, tt.at)
		if ok != tt.ok || (ok && attrs["city"] != tt.city) {
			t.Errorf("at %s: %v %v, want %q %v", tt.at, attrs["city"], ok, tt.city, tt.ok)
		}
		if ok && v.Key != SurrogateKey("dim_customer", nk, v.ValidFrom) {
			t.Errorf("at %s: key %d is not the deterministic key", tt.at, v.Key)
		}
	}
	if _, ok := st.Apply(Change{Row: customer(1, "Rome", "gold", "a@x"), Pos: pos(200, 1)}); ok {
		t.Fatal("a re-delivered change was applied again")
	}
}

func TestUnchangedToastKeepsPreviousValue(t *testing.T) {
	t.Parallel()
	spec := Spec{Name: "dim_p", Source: "p", Key: "p_key", NaturalKey: []Col{{"id", "INT64"}},
		Type2: []Col{{"price", "STRING"}}, Type1: []Col{{"description", "STRING"}}}
	st := NewState(spec)
	st.Apply(Change{Row: map[string]any{"id": int64(1), "price": "1", "description": "long text"}, Pos: pos(1, 0)})
	a, _ := st.Apply(Change{Row: map[string]any{"id": int64(1), "price": "2"}, Unchanged: []string{"description"}, Pos: pos(2, 0)})
	for _, r := range st.Rows(a) {
		if r.Values["description"] != "long text" {
			t.Fatalf("unchanged TOAST column became %v", r.Values["description"])
		}
	}
}

func TestSurrogateKeysAreDeterministicAndPositive(t *testing.T) {
	t.Parallel()
	a := SurrogateKey("dim_customer", "1", pos(1, 2))
	if a != SurrogateKey("dim_customer", "1", pos(1, 2)) || a <= 0 {
		t.Fatalf("key %d", a)
	}
	if a == SurrogateKey("dim_customer", "1", pos(1, 3)) || a == SurrogateKey("dim_product", "1", pos(1, 2)) {
		t.Fatal("different versions share a key")
	}
}
