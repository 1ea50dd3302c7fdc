package ops

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestReplayFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string // Target.String, or the error's text
	}{
		{[]string{"--to-earliest"}, "--to-earliest"},
		{[]string{"--to-offset", "0"}, "--to-offset 0"},
		{[]string{"--shift-by=-100", "--dry-run"}, "--shift-by -100"},
		{[]string{"--to-datetime", "2024-05-01T12:00:00+02:00"}, "--to-datetime 2024-05-01T10:00:00.000Z"},
		{[]string{"--to-datetime", "2024-05-01T12:00:00.250"}, "--to-datetime 2024-05-01T12:00:00.250Z"},
		{[]string{"--to-datetime", "2024-05-01"}, "--to-datetime 2024-05-01T00:00:00.000Z"},
		{nil, "replay needs one of"},
		{[]string{"--to-earliest", "--shift-by", "3"}, "not --to-earliest and --shift-by"},
		{[]string{"--to-datetime", "yesterday"}, `datetime "yesterday"`},
	}
	for _, tc := range cases {
		var f ReplayFlags
		fs := pflag.NewFlagSet("replay", pflag.ContinueOnError)
		f.Register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		target, err := f.Target()
		got := target.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%v: got %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestParseDatetimeIsUTCWithoutZone(t *testing.T) {
	t.Parallel()
	got, err := ParseDatetime("2024-05-01T12:00:00")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
