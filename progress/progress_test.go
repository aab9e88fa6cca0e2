package progress

import (
	"bytes"
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
