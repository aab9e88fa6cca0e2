package cache

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestPartialRoundTripAndKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p")
	p, err := OpenPartial(dir, "k1")
	if err != nil {
		t.Fatal(err)
	}
	vals := []float32{0, -1.5, 3.25e-8, 1}
	ints := []int32{3, 0, -2}
	if err := p.Save(2, vals, ints); err != nil {
		t.Fatal(err)
	}
	gv, gi := make([]float32, 4), make([]int32, 3)
	tests := []struct {
		name   string
		i      int
		nv, ni int
		want   bool
	}{
		{"saved chunk", 2, 4, 3, true},
		{"absent chunk", 1, 4, 3, false},
		{"other value count", 2, 5, 3, false},
		{"other int count", 2, 4, 2, false},
	}
	for _, tc := range tests {
		ok, err := p.Load(tc.i, make([]float32, tc.nv), make([]int32, tc.ni))
		if err != nil || ok != tc.want {
			t.Errorf("%s: Load = %v, %v; want %v, nil", tc.name, ok, err, tc.want)
		}
	}
	if ok, _ := p.Load(2, gv, gi); !ok || !slices.Equal(gv, vals) || !slices.Equal(gi, ints) {
		t.Fatalf("Load = %v %v %v, want %v %v", ok, gv, gi, vals, ints)
	}
	// Reopening under the same key keeps the chunk, another key drops it.
	if p, err = OpenPartial(dir, "k1"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := p.Load(2, gv, gi); !ok {
		t.Error("chunk lost on reopening under the same key")
	}
	if p, err = OpenPartial(dir, "k2"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := p.Load(2, gv, gi); ok {
		t.Error("chunk of key k1 served under key k2")
	}
	if err := p.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Remove left %s: %v", dir, err)
	}
}

func TestPartialDamagedChunkReadsAbsent(t *testing.T) {
	p, err := OpenPartial(t.TempDir(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Save(0, []float32{1, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	path := p.path(0)
	b, _ := os.ReadFile(path)
	for _, off := range []int{0, len(chunkMagic) + 16, len(b) - 1} {
		c := slices.Clone(b)
		c[off] ^= 0x40
		if err := os.WriteFile(path, c, 0o644); err != nil {
			t.Fatal(err)
		}
		if ok, err := p.Load(0, make([]float32, 3), nil); ok || err != nil {
			t.Errorf("byte %d flipped: Load = %v, %v; want false, nil", off, ok, err)
		}
	}
	if err := os.WriteFile(path, b[:len(b)-3], 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, _ := p.Load(0, make([]float32, 3), nil); ok {
		t.Error("truncated chunk read as present")
	}
}

func TestOpenPartialFailsEarlyOnReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes into read-only directories")
	}
	ro := t.TempDir()
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(ro, 0o755)
	if _, err := OpenPartial(filepath.Join(ro, "p"), "k"); err == nil {
		t.Error("OpenPartial in a read-only directory succeeded")
	}
}

func TestPartialFill(t *testing.T) {
	calls := 0
	fill := func(v []float32) func() error {
		return func() error { calls++; v[0] = 7; return nil }
	}
	// A nil Partial only computes.
	var none *Partial
	v := make([]float32, 1)
	if re, err := none.Fill(0, v, nil, fill(v)); re || err != nil || calls != 1 || v[0] != 7 {
		t.Fatalf("nil Partial: reloaded %v, err %v, %d calls, %v", re, err, calls, v)
	}
	p, err := OpenPartial(t.TempDir(), "k")
	if err != nil {
		t.Fatal(err)
	}
	v = make([]float32, 1)
	if re, err := p.Fill(3, v, nil, fill(v)); re || err != nil || calls != 2 {
		t.Fatalf("first Fill: reloaded %v, err %v, %d calls", re, err, calls)
	}
	w := make([]float32, 1)
	if re, err := p.Fill(3, w, nil, fill(w)); !re || err != nil || calls != 2 || w[0] != 7 {
		t.Fatalf("second Fill: reloaded %v, err %v, %d calls, %v", re, err, calls, w)
	}
}
