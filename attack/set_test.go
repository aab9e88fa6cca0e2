package attack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stl-defense/stl/npy"
)

// fixtureSet runs a (or BIM when a is nil) on the fixture and returns
// its set, the fixture and the result.
func fixtureSet(t *testing.T, a Attack) (*Set, *fixture, *Result) {
	t.Helper()
	f := getFixture(t)
	if a == nil {
		var err error
		if a, err = NewBIM(DefaultBIMOptions()); err != nil {
			t.Fatal(err)
		}
	}
	r, err := a.Run(context.Background(), f.m, f.x, f.labels)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(a, f.labels, r)
	if err != nil {
		t.Fatal(err)
	}
	return s, f, r
}

func TestSetRoundTrip(t *testing.T) {
	s, f, r := fixtureSet(t, nil)
	s.Meta.Model, s.Meta.Data = "mlp", "synthetic"
	dir := filepath.Join(t.TempDir(), "bim")
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	// Saving again over the same directory works.
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := LoadSet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !equalBits(got.Adv, r.Adv) {
		t.Error("adversarial images not bit-identical after reload")
	}
	if !reflect.DeepEqual(got.Labels, f.labels) {
		t.Error("labels differ after reload")
	}
	if !reflect.DeepEqual(got.Meta.Dissim, r.Dissim) || !reflect.DeepEqual(got.Meta.LInf, r.LInf) ||
		!reflect.DeepEqual(got.Meta.Success, r.Success) || !reflect.DeepEqual(got.Meta.AdvPred, r.AdvPred) {
		t.Error("per-image figures differ after reload")
	}
	if got.Meta.Attack != "BIM-0.04" || got.Meta.Budget != (Budget{Norm: L2Rel, Eps: 0.04}) || got.Meta.Model != "mlp" {
		t.Errorf("metadata %+v", got.Meta)
	}
	var o BIMOptions
	if err := json.Unmarshal(got.Meta.Options, &o); err != nil || o != DefaultBIMOptions() {
		t.Errorf("options %s decode to %+v (%v)", got.Meta.Options, o, err)
	}

	// Opened, its rows read apart are LoadSet's.
	opened, err := OpenSet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(opened.Labels, got.Labels) || !reflect.DeepEqual(opened.Meta, got.Meta) || !reflect.DeepEqual(opened.Shape, got.Adv.Shape) {
		t.Errorf("opened set: labels %v, shape %v; want %v, %v", opened.Labels, opened.Shape, got.Labels, got.Adv.Shape)
	}
	n := opened.Len()
	for _, r := range [][2]int{{0, n}, {1, 2}, {n - 1, n}} {
		rows, err := opened.ReadRows(r[0], r[1])
		if err != nil || !equalBits(rows, got.Adv.Batch(r[0], r[1])) {
			t.Errorf("rows %d..%d: %v, or other bits than LoadSet's", r[0], r[1], err)
		}
	}
	if _, err := opened.ReadRows(0, n+1); err == nil {
		t.Error("rows past the end read")
	}
	nan := got.Adv.Clone()
	nan.Data[len(nan.Data)-1] = float32(math.NaN())
	if err := npy.WriteFile(filepath.Join(dir, AdvFile), nan); err != nil {
		t.Fatal(err)
	}
	var se *SetError
	if _, err := opened.ReadRows(0, 1); err != nil {
		t.Errorf("finite first row: %v", err)
	}
	if _, err := opened.ReadRows(n-1, n); !errors.As(err, &se) {
		t.Errorf("a NaN row: %v, want *SetError", err)
	}

	// Inconsistent files are reported.
	if err := npy.WriteIntsFile(filepath.Join(dir, LabelsFile), f.labels[:3]); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{errOf(LoadSet(dir)), errOf(OpenSet(dir))} {
		if !errors.As(err, &se) {
			t.Errorf("short labels: %v, want *SetError", err)
		}
	}
	for _, err := range []error{errOf(LoadSet(t.TempDir())), errOf(OpenSet(t.TempDir()))} {
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("empty directory: %v, want os.ErrNotExist", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, MetaFile), []byte(`{"format":"other","version":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{errOf(LoadSet(dir)), errOf(OpenSet(dir))} {
		if !errors.As(err, &se) {
			t.Errorf("foreign meta.json: %v, want *SetError", err)
		}
	}
}

// errOf returns the error of a call returning a value and an error.
func errOf[T any](_ T, err error) error { return err }

// cancelAfter cancels its context once done reaches n images.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Report(_ string, done, _ int, _ string) {
	if done >= c.n {
		c.cancel()
	}
}

func TestRunBatchesResume(t *testing.T) {
	f := getFixture(t)
	a, err := NewBIM(DefaultBIMOptions())
	if err != nil {
		t.Fatal(err)
	}
	want, err := a.Run(context.Background(), f.m, f.x, f.labels)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ckpt")
	o := BatchOptions{Size: 25, CheckpointDir: dir, Key: "k1"}

	// Interrupted after the first batch.
	ctx, cancel := context.WithCancel(context.Background())
	o.Progress = &cancelAfter{n: 25, cancel: cancel}
	if _, err := RunBatches(ctx, a, f.m, f.x, f.labels, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	// Resumed: only the two remaining batches are computed.
	o.Progress = nil
	before := f.m.passes.Load()
	got, err := RunBatches(context.Background(), a, f.m, f.x, f.labels, o)
	if err != nil {
		t.Fatal(err)
	}
	if p := f.m.passes.Load() - before; p != 2*11 {
		t.Errorf("resumed run made %d passes, want 22 (2 batches of 10 steps + final forward)", p)
	}
	if !equalBits(got.Adv, want.Adv) || !reflect.DeepEqual(got.Dissim, want.Dissim) || !reflect.DeepEqual(got.Success, want.Success) {
		t.Error("resumed result differs from an uninterrupted run")
	}
	// Everything checkpointed: no pass at all; another key recomputes.
	before = f.m.passes.Load()
	if _, err := RunBatches(context.Background(), a, f.m, f.x, f.labels, o); err != nil {
		t.Fatal(err)
	}
	if p := f.m.passes.Load() - before; p != 0 {
		t.Errorf("fully checkpointed run made %d passes", p)
	}
	o.Key = "k2"
	before = f.m.passes.Load()
	if _, err := RunBatches(context.Background(), a, f.m, f.x, f.labels, o); err != nil {
		t.Fatal(err)
	}
	if p := f.m.passes.Load() - before; p != 3*11 {
		t.Errorf("run under a new key made %d passes, want 33", p)
	}
}

// TestSetFixture reads a set written by version 1 of the format.
func TestSetFixture(t *testing.T) {
	s, err := LoadSet("testdata/set-v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{0.45, 0.55, 0.3, 0.7}; !reflect.DeepEqual(s.Adv.Data, want) || !reflect.DeepEqual(s.Adv.Shape, []int{2, 1, 1, 2}) {
		t.Errorf("images %v %v, want %v", s.Adv.Shape, s.Adv.Data, want)
	}
	m := s.Meta
	if m.Attack != "FGSM-linf0.15" || m.Budget != (Budget{Norm: LInf, Eps: 0.15}) || !reflect.DeepEqual(s.Labels, []int{0, 1}) ||
		!reflect.DeepEqual(m.Indices, []int{4, 9}) || !reflect.DeepEqual(m.Success, []bool{true, false}) ||
		m.Dissim[0] != 0.2357022603955158 || m.Passes != 1 {
		t.Errorf("metadata %+v", m)
	}
	// Written before protocols were recorded: the text protocol, unrounded.
	if m.Protocol != "" || m.Protocol.String() != string(ProtocolText) || m.Round8 {
		t.Errorf("protocol %q, round8 %v; want none (text), false", m.Protocol, m.Round8)
	}
	var o FGSMOptions
	if err := json.Unmarshal(m.Options, &o); err != nil || o.Budget != m.Budget {
		t.Errorf("options %s: %+v, %v", m.Options, o, err)
	}
}

// FuzzLoadSet feeds arbitrary meta.json content next to valid arrays:
// LoadSet must return an error or a consistent set, never panic.
func FuzzLoadSet(f *testing.F) {
	seed, err := os.ReadFile("testdata/set-v1/meta.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"format":"stl-adversarial-set","version":1,"shape":[2,1,1,2]}`))
	f.Add([]byte(`{"format":"stl-adversarial-set","version":1,"protocol":"release","round8":true,"shape":[2,1,1,2]}`))
	f.Add([]byte(`{"format":"stl-adversarial-set","version":1,"shape":[-2,1,1,2],"dissim":[1,2]}`))
	adv, err := os.ReadFile("testdata/set-v1/adv.npy")
	if err != nil {
		f.Fatal(err)
	}
	labels, err := os.ReadFile("testdata/set-v1/labels.npy")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, meta []byte) {
		s, err := DecodeSet("fuzz", meta, bytes.NewReader(adv), bytes.NewReader(labels))
		if err != nil {
			return
		}
		n := s.Adv.Shape[0]
		if len(s.Labels) != n || len(s.Meta.Dissim) != n || len(s.Meta.Success) != n {
			t.Fatalf("inconsistent set accepted: %d images, %d labels", n, len(s.Labels))
		}
	})
}

// TestSetProtocol checks how a set records its protocol and rounding: a
// rounded attack's set says so, both survive a reload, an unknown protocol
// is a *SetError, a set without a protocol merges with a text one, and
// sets of different protocols or roundings do not merge.
func TestSetProtocol(t *testing.T) {
	f := getFixture(t)
	a, err := NewFGSM(FGSMOptions{Budget: Budget{Norm: LInf, Eps: Release8}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Rounded(a).Run(context.Background(), f.m, eightBit(f), f.labels)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(Rounded(a), f.labels, r)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Meta.Round8 || s.Meta.Attack != a.Name()+" (8-bit)" {
		t.Errorf("set of a rounded attack: round8 %v, attack %q", s.Meta.Round8, s.Meta.Attack)
	}
	var o FGSMOptions
	if err := json.Unmarshal(s.Meta.Options, &o); err != nil || o.Budget != a.Budget() {
		t.Errorf("options of a rounded attack %s: %+v, %v; want the attack's own", s.Meta.Options, o, err)
	}
	s.Meta.Protocol = ProtocolRelease
	dir := filepath.Join(t.TempDir(), "release")
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := LoadSet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Meta.Protocol != ProtocolRelease || !got.Meta.Round8 {
		t.Errorf("reloaded: protocol %q, round8 %v", got.Meta.Protocol, got.Meta.Round8)
	}

	js, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(js), `"protocol": "release"`, `"protocol": "paper"`, 1)
	if bad == string(js) {
		t.Fatal("meta.json records no protocol")
	}
	var se *SetError
	if _, err := DecodeSet(dir, []byte(bad), bytes.NewReader(nil), bytes.NewReader(nil)); !errors.As(err, &se) || !strings.Contains(err.Error(), `"paper"`) {
		t.Errorf("unknown protocol: %v, want a *SetError naming it", err)
	}

	with := func(p Protocol, round8 bool) *Set {
		c := *got
		c.Meta.Protocol, c.Meta.Round8 = p, round8
		return &c
	}
	for _, tc := range []struct {
		name string
		a, b *Set
		err  string // "" when they merge
	}{
		{"same", got, got, ""},
		{"none and text", with("", false), with(ProtocolText, false), ""},
		{"release and text", with(ProtocolRelease, true), with(ProtocolText, true), "set 2 was made under protocol text with 8-bit rounding, set 1 under release with 8-bit rounding"},
		{"rounded or not", with(ProtocolText, false), with("", true), "set 2 was made under protocol text with 8-bit rounding, set 1 under text without rounding"},
		{"guo and text", with(ProtocolGuo, false), with("", false), "under guo"},
	} {
		m, err := MergeSets([]*Set{tc.a, tc.b})
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err == "" && (m.Meta.Protocol != tc.a.Meta.Protocol || m.Adv.Shape[0] != 2*got.Adv.Shape[0]):
			t.Errorf("%s: merged protocol %q, %d images", tc.name, m.Meta.Protocol, m.Adv.Shape[0])
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.err)
		}
	}
}
