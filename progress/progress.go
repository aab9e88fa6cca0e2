// Package progress carries how far long-running work has come from the
// libraries, which never print, to the command line, which renders it.
package progress

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Reporter is told how far a job has come. Libraries call Report once per
// iteration, batch or image; implementations must be safe for concurrent use
// and cheap enough to be called that often.
type Reporter interface {
	// Report says that done of total units of the named stage are complete.
	// total <= 0 means unknown. msg carries optional figures such as a loss.
	Report(stage string, done, total int, msg string)
}

// Nop is a Reporter that discards every report.
var Nop Reporter = nop{}

type nop struct{}

func (nop) Report(string, int, int, string) {}

// Or returns r, or Nop when r is nil, so that libraries can accept a nil
// Reporter.
func Or(r Reporter) Reporter {
	if r == nil {
		return Nop
	}
	return r
}

// Bar renders reports as a one-line terminal progress bar with rate and time
// left, redrawn at most every Interval. It is safe for concurrent use.
type Bar struct {
	W        io.Writer
	Interval time.Duration // default 200ms

	mu     sync.Mutex
	stage  string
	start  time.Time
	last   time.Time
	drawn  bool
}

// NewBar returns a Bar writing to w.
func NewBar(w io.Writer) *Bar { return &Bar{W: w, Interval: 200 * time.Millisecond} }

// Report implements Reporter.
func (b *Bar) Report(stage string, done, total int, msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if stage != b.stage {
		if b.drawn {
			fmt.Fprintln(b.W)
		}
		b.stage, b.start, b.last, b.drawn = stage, now, time.Time{}, false
	}
	final := total > 0 && done >= total
	if !final && now.Sub(b.last) < b.Interval {
		return
	}
	b.last = now
	el := now.Sub(b.start)
	line := fmt.Sprintf("\r%s %s", stage, Line(done, total, el))
	if msg != "" {
		line += " " + msg
	}
	fmt.Fprintf(b.W, "%-100s", line)
	b.drawn = true
	if final {
		fmt.Fprintln(b.W)
		b.drawn = false
		b.stage = ""
	}
}

// Line formats a bar, counts, rate and time left for done of total units
// after elapsed time.
func Line(done, total int, elapsed time.Duration) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	if total <= 0 {
		return fmt.Sprintf("%d (%.1f/s, %s)", done, rate, elapsed.Round(time.Second))
	}
	const width = 24
	f := float64(done) / float64(total)
	if f > 1 {
		f = 1
	}
	n := int(f * width)
	bar := make([]byte, width)
	for i := range bar {
		if i < n {
			bar[i] = '#'
		} else {
			bar[i] = '.'
		}
	}
	left := "?"
	if rate > 0 {
		left = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s] %d/%d %3.0f%% (%.1f/s, left %s)", bar, done, total, 100*f, rate, left)
}
