package streamtest

import (
	"testing"

	"github.com/starstream/starstream/stream"
)

func TestValidatorCatchesViolations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(v *Validator)
		want int
	}{
		{"in order", func(v *Validator) {
			v.Observe("t", 0, "1", stream.Position{LSN: 5})
			v.Marker("t", 0, 5)
			v.Observe("t", 0, "1", stream.Position{LSN: 6})
		}, 0},
		{"redelivery is fine", func(v *Validator) {
			v.Observe("t", 0, "1", stream.Position{LSN: 5})
			v.Observe("t", 0, "1", stream.Position{LSN: 5})
		}, 0},
		{"older after newer", func(v *Validator) {
			v.Observe("t", 0, "1", stream.Position{LSN: 6})
			v.Observe("t", 0, "1", stream.Position{LSN: 5})
		}, 1},
		{"below watermark", func(v *Validator) {
			v.Marker("t", 1, 9)
			v.Observe("t", 1, "2", stream.Position{LSN: 9, Seq: 3})
		}, 1},
		{"other partition unaffected", func(v *Validator) {
			v.Marker("t", 1, 9)
			v.Observe("t", 0, "2", stream.Position{LSN: 7})
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := NewValidator()
			tt.run(v)
			if got := len(v.Failures()); got != tt.want {
				t.Fatalf("failures %v, want %d", v.Failures(), tt.want)
			}
		})
	}
}
