package ops

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// ReplayFlags are the options of `starstream replay`: exactly one of
// --to-earliest, --to-datetime, --to-offset and --shift-by, and --dry-run.
type ReplayFlags struct {
	Earliest bool
	Datetime string
	Offset   int64
	Shift    int64
	DryRun   bool

	fs *pflag.FlagSet
}

// Register adds the flags to fs.
func (f *ReplayFlags) Register(fs *pflag.FlagSet) {
	f.fs = fs
	fs.BoolVar(&f.Earliest, "to-earliest", false, "replay from the first offset still in each partition")
	fs.StringVar(&f.Datetime, "to-datetime", "", "replay from the first record at or after this time (RFC 3339, or 2006-01-02T15:04:05[.000] in UTC)")
	fs.Int64Var(&f.Offset, "to-offset", 0, "replay from this offset on every partition (clamped to what the log holds)")
	fs.Int64Var(&f.Shift, "shift-by", 0, "move every partition's offset by N records (negative: back)")
	fs.BoolVar(&f.DryRun, "dry-run", false, "print the plan (partition, current, new offset) without committing")
}

// Target returns the chosen target; it fails unless exactly one was given.
func (f *ReplayFlags) Target() (Target, error) {
	var chosen []Target
	var names []string
	changed := func(name string) bool { return f.fs != nil && f.fs.Changed(name) }
	if f.Earliest {
		chosen, names = append(chosen, ToEarliest()), append(names, "--to-earliest")
	}
	if changed("to-datetime") || f.Datetime != "" {
		t, err := ParseDatetime(f.Datetime)
		if err != nil {
			return Target{}, err
		}
		chosen, names = append(chosen, ToDatetime(t)), append(names, "--to-datetime")
	}
	if changed("to-offset") {
		chosen, names = append(chosen, ToOffset(f.Offset)), append(names, "--to-offset")
	}
	if changed("shift-by") {
		chosen, names = append(chosen, ShiftBy(f.Shift)), append(names, "--shift-by")
	}
	switch len(chosen) {
	case 0:
		return Target{}, errors.New("replay needs one of --to-earliest, --to-datetime T, --to-offset N, --shift-by N")
	case 1:
		return chosen[0], nil
	}
	return Target{}, fmt.Errorf("replay takes one target, not %s", strings.Join(names, " and "))
}

var datetimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04:05",
	"2006-01-02T15:04",
	"2006-01-02",
}

// ParseDatetime reads RFC 3339 ("2024-05-01T12:00:00Z", "…+02:00") or the
// same without a zone, taken as UTC ("2024-05-01T12:00:00.000", "2024-05-01").
func ParseDatetime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range datetimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("datetime %q: want RFC 3339 (2024-05-01T12:00:00Z) or 2024-05-01T12:00:00 (UTC)", s)
}
