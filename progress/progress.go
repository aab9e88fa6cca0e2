// Package progress carries how far long-running work has come from the
// libraries, which never print, to the command line, which renders it.
package progress

import (
	"fmt"
	"io"
	"os"
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
// left, redrawn at most every Interval. With Lines set it writes one line
// per report instead of redrawing (for logs and pipes, where carriage
// returns would pile up). It is safe for concurrent use.
type Bar struct {
	W        io.Writer
	Interval time.Duration // default 200ms on a terminal, 30s with Lines
	Lines    bool

	mu    sync.Mutex
	stage string
	start time.Time
	last  time.Time
	drawn bool
}

// NewBar returns a Bar writing to w: a redrawn bar when w is a terminal,
// and one line every 30 seconds (and at the end of each stage) when w is a
// file or a pipe, so that logs of long jobs stay readable.
func NewBar(w io.Writer) *Bar {
	if f, ok := w.(*os.File); ok && !isTerminal(f) {
		return &Bar{W: w, Interval: 30 * time.Second, Lines: true}
	}
	return &Bar{W: w, Interval: 200 * time.Millisecond}
}

// isTerminal reports whether f is a character device (a terminal; also
// /dev/null, where the choice does not matter).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Report implements Reporter.
func (b *Bar) Report(stage string, done, total int, msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if stage != b.stage {
		if b.drawn && !b.Lines {
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
	line := fmt.Sprintf("%s %s", stage, Line(done, total, el))
	if msg != "" {
		line += " " + msg
	}
	if b.Lines {
		fmt.Fprintln(b.W, line)
		if final {
			b.stage = ""
		}
		return
	}
	fmt.Fprintf(b.W, "\r%-100s", line)
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
