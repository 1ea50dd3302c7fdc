package pgdecode

import (
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestDecodeDecimal(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"0", "-0.01", "1234567890.12", "123456789012345678", "1234567890123456789.5",
		"-99999999999999999999999.999", "0.000000000000000001", "42.", "1e5"} {
		got, err := decodeDecimal([]byte(s))
		want, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("bad case %s", s)
		}
		if err != nil || got.(*big.Rat).Cmp(want) != 0 {
			t.Errorf("decodeDecimal(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	// The fast path builds the reduced fraction itself: same value, same
	// normal form as parsing.
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		digits := strconv.FormatInt(r.Int64N(1e18)>>r.IntN(60), 10)
		if k := r.IntN(len(digits) + 1); k < len(digits) {
			digits = digits[:k] + "." + digits[k:]
		}
		if r.IntN(2) == 0 {
			digits = "-" + digits
		}
		got, err := decodeDecimal([]byte(digits))
		want, _ := new(big.Rat).SetString(digits)
		if err != nil || got.(*big.Rat).Cmp(want) != 0 || got.(*big.Rat).String() != want.String() {
			t.Fatalf("decodeDecimal(%q) = %v, %v; want %v", digits, got, err, want)
		}
	}
	if _, err := decodeDecimal([]byte("NaN")); err != ErrNotANumber {
		t.Errorf("NaN: %v", err)
	}
}

func TestSplitArray(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]string{
		`{}`:                      {},
		`{1,NULL,3}`:              {"1", "<nil>", "3"},
		`{"a,b","say \"hi\"",""}`: {"a,b", `say "hi"`, ""},
		`{{1,2},{3,4}}`:           {"1", "2", "3", "4"},
		`[0:1]={7,8}`:             {"7", "8"},
		`{"NULL",NULL}`:           {"NULL", "<nil>"},
	} {
		items, err := splitArray([]byte(in), ',')
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if len(items) != len(want) {
			t.Fatalf("%s: %d items, want %d", in, len(items), len(want))
		}
		for i, it := range items {
			s := "<nil>"
			if it != nil {
				s = string(it)
			}
			if s != want[i] {
				t.Errorf("%s item %d: %q, want %q", in, i, s, want[i])
			}
		}
	}
}

func TestNumericTypmod(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p, s int
	}{{12, 2}, {38, 10}, {5, 0}, {5, -2}} {
		typmod := int32((tc.p<<16)|(tc.s&0x7ff)) + 4
		p, s := NumericTypmod(typmod)
		if p != tc.p || s != tc.s {
			t.Errorf("typmod of numeric(%d,%d) read as (%d,%d)", tc.p, tc.s, p, s)
		}
	}
}
