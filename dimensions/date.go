package dimensions

import (
	"context"
	"fmt"
	"time"

	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// DateName is the generated calendar dimension.
const DateName = "dim_date"

// DateFrom and DateTo bound the generated calendar.
var (
	DateFrom = time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	DateTo   = time.Date(2035, 12, 31, 0, 0, 0, 0, time.UTC)
)

// DateTable is dim_date's warehouse table.
func DateTable() sinks.Table {
	c := func(n string, t sinks.Type, d string) sinks.Column {
		return sinks.Column{Name: n, Type: t, Description: d}
	}
	return sinks.Table{Name: DateName, Description: "Generated calendar; static, so its watermark is +∞.",
		PrimaryKey: []string{"date_key"}, Columns: []sinks.Column{
			c("date_key", sinks.Int64, "yyyymmdd"), c("date", sinks.Date, "the day"),
			c("year", sinks.Int64, ""), c("quarter", sinks.Int64, "1-4"), c("month", sinks.Int64, "1-12"),
			c("month_name", sinks.String, ""), c("day_of_month", sinks.Int64, ""), c("day_of_week", sinks.Int64, "1 = Monday … 7 = Sunday"),
			c("day_name", sinks.String, ""), c("iso_week", sinks.Int64, ""), c("is_weekend", sinks.Bool, ""),
		}}
}

// DateKey is the dim_date key of a time's UTC day.
func DateKey(t time.Time) int64 {
	t = t.UTC()
	return int64(t.Year()*10000 + int(t.Month())*100 + t.Day())
}

// DatePipeline writes the calendar once; it never changes, so it has no input
// and its watermark is MaxLSN.
type DatePipeline struct{ env Env }

// NewDatePipeline returns the calendar pipeline.
func NewDatePipeline(env Env) (*DatePipeline, error) {
	if err := env.Validate(); err != nil {
		return nil, err
	}
	return &DatePipeline{env: env}, nil
}

// Name returns "dim_date".
func (p *DatePipeline) Name() string { return DateName }

// Stats reports the calendar's constant watermark.
func (p *DatePipeline) Stats() stream.Stats { return stream.Stats{Watermark: stream.MaxLSN} }

// Run writes the calendar (idempotently) and waits for ctx.
func (p *DatePipeline) Run(ctx context.Context) error {
	if err := p.env.Sink.EnsureTable(ctx, DateTable()); err != nil {
		return fmt.Errorf("dim_date: ensure table: %w", err)
	}
	var rows []sinks.Row
	for d := DateFrom; !d.After(DateTo); d = d.AddDate(0, 0, 1) {
		dow := int64(d.Weekday())
		if dow == 0 {
			dow = 7
		}
		_, week := d.ISOWeek()
		rows = append(rows, sinks.Row{Op: sinks.Upsert, Values: map[string]any{
			"date_key": DateKey(d), "date": d, "year": int64(d.Year()), "quarter": int64((int(d.Month())-1)/3 + 1),
			"month": int64(d.Month()), "month_name": d.Month().String(), "day_of_month": int64(d.Day()),
			"day_of_week": dow, "day_name": d.Weekday().String(), "iso_week": int64(week), "is_weekend": dow >= 6,
		}})
	}
	if _, err := p.env.Sink.Write(ctx, DateName, rows); err != nil {
		return fmt.Errorf("dim_date: %w", err)
	}
	p.env.Logger.Info("calendar written", "pipeline", DateName, "rows", len(rows))
	<-ctx.Done()
	return nil
}
