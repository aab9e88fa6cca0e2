package nn_test

import (
	"context"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

var update = flag.Bool("update", false, "rewrite testdata fixtures")

// TestFixtureDAE loads a tiny DAE saved by an earlier version
// (testdata/dae-tiny) and checks its codes of a fixed input against the
// stored ones, so that a change of the file format or of the network's
// layer order is noticed.
func TestFixtureDAE(t *testing.T) {
	dir := filepath.Join("testdata", "dae-tiny")
	x := tensor.New(2, 3, 8, 8)
	for i := range x.Data {
		x.Data[i] = float32(i%17) / 16
	}
	if *update {
		c := nn.DefaultDAEConfig()
		c.Height, c.Width, c.Filters, c.Levels, c.Threads = 8, 8, 2, 1, 1
		d, err := nn.NewDAE(c)
		if err != nil {
			t.Fatal(err)
		}
		d.Meta.Notes = "unit-test fixture"
		if err := nn.Save(dir, d); err != nil {
			t.Fatal(err)
		}
		z, _ := d.Encode(context.Background(), x)
		b, _ := json.Marshal(z.Data)
		if err := os.WriteFile(filepath.Join(dir, "codes.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := nn.LoadDAE(dir)
	if err != nil {
		t.Fatal(err)
	}
	var want []float32
	b, err := os.ReadFile(filepath.Join(dir, "codes.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	z, err := d.Encode(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if len(z.Data) != len(want) || len(want) != 2*2*4*4 {
		t.Fatalf("codes %v, want %d values", z.Shape, len(want))
	}
	for i := range want {
		if math.Abs(float64(z.Data[i]-want[i])) > 1e-5 {
			t.Fatalf("code %d = %g, fixture %g", i, z.Data[i], want[i])
		}
	}
}

// FuzzReadWeights feeds corrupted weight files to the decoder: it must
// return an error or fill the parameters, never panic.
func FuzzReadWeights(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("testdata", "dae-tiny", nn.WeightsFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	// One model's parameters serve every input: building a model per
	// input would spend the fuzzer's time in the constructor.
	c := nn.DefaultDAEConfig()
	c.Height, c.Width, c.Filters, c.Levels, c.Threads = 8, 8, 2, 1, 1
	d, err := nn.NewDAE(c)
	if err != nil {
		f.Fatal(err)
	}
	params := d.Params()
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = nn.ReadWeights(data, "fuzz", params)
	})
}
