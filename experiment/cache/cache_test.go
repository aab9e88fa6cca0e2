package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestNewKey(t *testing.T) {
	type cfg struct {
		A int     `json:"a"`
		B float64 `json:"b"`
	}
	base, err := NewKey("train", cfg{1, 0.2})
	if err != nil {
		t.Fatal(err)
	}
	dep, _ := NewKey("data", map[string]int{"n": 1})
	tests := []struct {
		name   string
		stage  string
		config any
		deps   []Key
		same   bool
	}{
		{"identical", "train", cfg{1, 0.2}, nil, true},
		{"map with the same fields", "train", map[string]any{"b": 0.2, "a": 1}, nil, true},
		{"other value", "train", cfg{2, 0.2}, nil, false},
		{"other float", "train", cfg{1, 0.25}, nil, false},
		{"other stage", "eval", cfg{1, 0.2}, nil, false},
		{"with a dependency", "train", cfg{1, 0.2}, []Key{dep}, false},
	}
	for _, tc := range tests {
		k, err := NewKey(tc.stage, tc.config, tc.deps...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if (k == base) != tc.same {
			t.Errorf("%s: key equal to base = %v, want %v", tc.name, k == base, tc.same)
		}
		if len(k) != 64 {
			t.Errorf("%s: key %q is not 64 hex digits", tc.name, k)
		}
	}
	if _, err := NewKey("x", func() {}); err == nil {
		t.Error("NewKey accepted a config that cannot be encoded")
	}
}

func TestDoCachesAndRecomputes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	build := func(content string) BuildFunc {
		return func(ctx context.Context, dir string) error {
			runs++
			return os.WriteFile(filepath.Join(dir, "out.txt"), []byte(content), 0o644)
		}
	}
	k1, _ := NewKey("s", 1)
	k2, _ := NewKey("s", 2)
	steps := []struct {
		key        Key
		content    string
		wantCached bool
		wantRuns   int
		wantOut    string
	}{
		{k1, "one", false, 1, "one"},
		{k1, "ignored", true, 1, "one"},
		{k2, "two", false, 2, "two"},
		{k2, "ignored", true, 2, "two"},
		{k1, "one again", false, 3, "one again"},
	}
	for i, st := range steps {
		dir, cached, err := s.Do(ctx, "s", st.key, map[string]int{"v": i}, nil, build(st.content))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if cached != st.wantCached || runs != st.wantRuns {
			t.Errorf("step %d: cached=%v runs=%d, want %v %d", i, cached, runs, st.wantCached, st.wantRuns)
		}
		b, err := os.ReadFile(filepath.Join(dir, "out.txt"))
		if err != nil || string(b) != st.wantOut {
			t.Errorf("step %d: out.txt = %q, %v; want %q", i, b, err, st.wantOut)
		}
	}
	tm := s.Timings()
	if len(tm) != len(steps) || !tm[1].Cached || tm[0].Cached {
		t.Errorf("timings = %+v", tm)
	}
	names, err := s.Stages()
	if err != nil || len(names) != 1 || names[0] != "s" {
		t.Errorf("Stages() = %v, %v", names, err)
	}
}

func TestDoFailureKeepsNothing(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	k1, _ := NewKey("s", 1)
	k2, _ := NewKey("s", 2)
	ok := func(ctx context.Context, d string) error {
		return os.WriteFile(filepath.Join(d, "x"), []byte("1"), 0o644)
	}
	if _, _, err := s.Do(context.Background(), "s", k1, nil, nil, ok); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	_, _, err := s.Do(context.Background(), "s", k2, nil, nil, func(ctx context.Context, d string) error {
		os.WriteFile(filepath.Join(d, "x"), []byte("partial"), 0o644)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if _, ok := s.Lookup("s", k2); ok {
		t.Error("failed stage is found under its key")
	}
	if !s.Stale("s", k2) {
		t.Error("old output under another key is not reported stale")
	}
	if _, ok := s.Lookup("s", k1); !ok {
		t.Error("failed build removed the previous complete output")
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, _, err = s.Do(ctx, "s", k2, nil, nil, func(ctx context.Context, d string) error {
		cancel()
		return nil // a build that ignores cancellation is still not published
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "s" && e.Name() != LockFile {
			t.Errorf("left behind %s", e.Name())
		}
	}
}

func TestOpenRemovesTemporaries(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, ".tmp-s-123"), 0o755)
	os.MkdirAll(filepath.Join(dir, "half"), 0o755) // no manifest: unfinished
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".tmp-s-123")); !os.IsNotExist(err) {
		t.Error("temporary directory survived Open")
	}
	k, _ := NewKey("half", 0)
	if _, ok := s.Lookup("half", k); ok {
		t.Error("directory without manifest found as finished")
	}
	names, _ := s.Stages()
	if len(names) != 0 {
		t.Errorf("Stages() = %v, want none", names)
	}
}

func TestCorruptManifestIsRecomputed(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	k, _ := NewKey("s", 0)
	os.MkdirAll(filepath.Join(dir, "s"), 0o755)
	os.WriteFile(filepath.Join(dir, "s", ManifestFile), []byte(`{"key": "`+string(k)), 0o644)
	_, cached, err := s.Do(context.Background(), "s", k, nil, nil, func(context.Context, string) error { return nil })
	if err != nil || cached {
		t.Errorf("Do = cached %v, %v; want a recompute", cached, err)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := Open(""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	s, _ := Open(t.TempDir())
	var ne *NameError
	for _, name := range []string{"", "../x", "a/b", ".hidden"} {
		_, _, err := s.Do(context.Background(), name, "k", nil, nil, func(context.Context, string) error { return nil })
		if !errors.As(err, &ne) {
			t.Errorf("Do(%q): err = %v, want *NameError", name, err)
		}
	}
}

func TestOpenLocks(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var le *LockedError
	if _, err := Open(dir); !errors.As(err, &le) {
		t.Errorf("second Open: err = %v, want *LockedError", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
	names, _ := s2.Stages()
	if len(names) != 0 {
		t.Errorf("the lock file is listed as a stage: %v", names)
	}
}
