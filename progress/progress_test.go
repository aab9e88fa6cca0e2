package progress

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	got := Line(5, 10, 5*time.Second)
	for _, want := range []string{"5/10", " 50%", "1.0/s", "left 5s"} {
		if !strings.Contains(got, want) {
			t.Errorf("Line = %q, missing %q", got, want)
		}
	}
	if got := Line(3, 0, time.Second); !strings.HasPrefix(got, "3 ") {
		t.Errorf("Line unknown total = %q", got)
	}
}

func TestBarFinalLine(t *testing.T) {
	var buf bytes.Buffer
	b := NewBar(&buf)
	b.Report("train", 1, 2, "")
	b.Report("train", 2, 2, "loss 0.5")
	out := buf.String()
	if !strings.Contains(out, "2/2") || !strings.Contains(out, "loss 0.5") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("bar output %q", out)
	}
	Or(nil).Report("x", 1, 1, "") // must not panic
}

// TestBarLines checks the log mode: one line per shown report, no carriage
// returns, reports inside the interval dropped except each stage's last.
func TestBarLines(t *testing.T) {
	var buf bytes.Buffer
	b := &Bar{W: &buf, Interval: time.Hour, Lines: true}
	for i := 1; i <= 5; i++ {
		b.Report("stage a", i, 5, "")
	}
	b.Report("stage b", 1, 3, "x")
	b.Report("stage b", 3, 3, "y")
	out := buf.String()
	if strings.Contains(out, "\r") {
		t.Fatalf("carriage return in log mode: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{"stage a", "stage a", "stage b", "stage b"}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %q", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w+" ") {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[1], "5/5") || !strings.Contains(lines[3], "3/3") || !strings.HasSuffix(lines[3], " y") {
		t.Errorf("final lines %q", lines)
	}
}

// TestNewBarOnFile checks that a bar on a regular file uses the log mode.
func TestNewBarOnFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b := NewBar(f); !b.Lines || b.Interval < time.Second {
		t.Errorf("bar on a file: Lines %v, Interval %v", b.Lines, b.Interval)
	}
	if b := NewBar(&bytes.Buffer{}); b.Lines {
		t.Error("bar on a buffer is in log mode")
	}
}
