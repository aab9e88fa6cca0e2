package nn_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

var _ attack.Model = (*nn.Classifier)(nil)

func smallConfig(arch string, px int) nn.ClassifierConfig {
	c := nn.DefaultClassifierConfig()
	c.Arch, c.Height, c.Width, c.Threads = arch, px, px, 2
	return c
}

func randImages(seed uint64, shape ...int) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, 1))
	t := tensor.New(shape...)
	for i := range t.Data {
		t.Data[i] = rng.Float32()
	}
	return t
}

func TestClassifierShapes(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		arch string
		px   int
	}{
		{nn.ArchVGGSmall, 32}, {nn.ArchVGGSmall, 64}, {nn.ArchVGGSmall, 128},
		{nn.ArchResNet20, 32}, {nn.ArchResNet20, 64}, {nn.ArchResNet20, 128},
	}
	for _, c := range cases {
		if testing.Short() && c.px == 128 {
			continue
		}
		m, err := nn.NewClassifier(smallConfig(c.arch, c.px))
		if err != nil {
			t.Fatal(err)
		}
		x := randImages(1, 2, 3, c.px, c.px)
		y, err := m.Logits(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		if !tensor.SameShape(y, tensor.New(2, 10)) {
			t.Errorf("%s %d px: logits shape %v", c.arch, c.px, y.Shape)
		}
		if err := y.Validate(); err != nil {
			t.Errorf("%s %d px: %v", c.arch, c.px, err)
		}
	}
}

func TestClassifierConfigErrors(t *testing.T) {
	bad := []struct {
		name string
		mod  func(*nn.ClassifierConfig)
	}{
		{"arch", func(c *nn.ClassifierConfig) { c.Arch = "vgg-16" }},
		{"size", func(c *nn.ClassifierConfig) { c.Height = 30 }},
		{"classes", func(c *nn.ClassifierConfig) { c.Classes = 1 }},
		{"mean", func(c *nn.ClassifierConfig) { c.Mean = c.Mean[:2] }},
		{"std", func(c *nn.ClassifierConfig) { c.Std = []float32{1, 0, 1} }},
		{"threads", func(c *nn.ClassifierConfig) { c.Threads = 0 }},
	}
	for _, b := range bad {
		c := nn.DefaultClassifierConfig()
		b.mod(&c)
		var ce *nn.ConfigError
		if _, err := nn.NewClassifier(c); !errors.As(err, &ce) {
			t.Errorf("%s: error %v, want *ConfigError", b.name, err)
		}
	}
	m, _ := nn.NewClassifier(smallConfig(nn.ArchResNet20, 8))
	var se *tensor.ShapeError
	if _, err := m.Logits(context.Background(), tensor.New(2, 3, 16, 16)); !errors.As(err, &se) {
		t.Errorf("wrong input size: %v, want *tensor.ShapeError", err)
	}
	x := tensor.New(1, 3, 8, 8)
	x.Data[5] = float32(math.NaN())
	if _, err := m.Logits(context.Background(), x); err == nil {
		t.Error("NaN input accepted")
	}
}

// TestInputGradFiniteDifferences checks dL/dx of the whole network (in
// inference mode) for L = sum_k w_k logits_k against central differences.
func TestInputGradFiniteDifferences(t *testing.T) {
	for _, arch := range []string{nn.ArchVGGSmall, nn.ArchResNet20} {
		m, err := nn.NewClassifier(smallConfig(arch, 8))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		x := randImages(3, 2, 3, 8, 8)
		w := []float32{0.3, -1, 0.5, 2, 0, 0.1, -0.4, 1, 0.2, -0.7}
		seed := func(logits, g *tensor.Tensor) {
			for i := range g.Data {
				g.Data[i] = w[i%10]
			}
		}
		_, grad, err := m.InputGrad(ctx, x, seed)
		if err != nil {
			t.Fatal(err)
		}
		f := func() float64 {
			y, _ := m.Logits(ctx, x)
			var s float64
			for i, v := range y.Data {
				s += float64(v) * float64(w[i%10])
			}
			return s
		}
		// Single-coordinate central differences at several step sizes: a
		// step crossing a ReLU or max-pool kink spoils one step size, float32
		// rounding the smallest ones, rarely all. A wrong gradient fails
		// (nearly) every coordinate; we ask 90% to agree within 2% of the
		// largest gradient entry.
		var maxG float64
		for _, g := range grad.Data {
			maxG = math.Max(maxG, math.Abs(float64(g)))
		}
		rng := rand.New(rand.NewPCG(4, 4))
		bad := 0
		const trials = 40
		for trial := 0; trial < trials; trial++ {
			i := rng.IntN(len(x.Data))
			old := x.Data[i]
			ok := false
			var nums []float64
			for _, eps := range []float32{1e-2, 3e-3, 1e-3, 3e-4} {
				x.Data[i] = old + eps
				fp := f()
				x.Data[i] = old - eps
				fm := f()
				x.Data[i] = old
				num := (fp - fm) / float64(2*eps)
				nums = append(nums, num)
				ok = ok || math.Abs(num-float64(grad.Data[i])) <= 0.02*maxG
			}
			if !ok {
				bad++
				t.Logf("%s: coordinate %d: differences %v, analytic %g", arch, i, nums, grad.Data[i])
			}
		}
		if maxG == 0 || bad > trials/10 {
			t.Errorf("%s: %d of %d input-gradient coordinates disagree with finite differences", arch, bad, trials)
		}
	}
}

// TestInputGradChunked: a batch larger than ChunkSize gives the same
// logits and gradients as its images one by one.
func TestInputGradChunked(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	m, _ := nn.NewClassifier(smallConfig(nn.ArchResNet20, 8))
	ctx := context.Background()
	n := nn.ChunkSize + 3
	x := randImages(5, n, 3, 8, 8)
	seed := func(logits, g *tensor.Tensor) {
		k := g.Shape[1]
		for i := 0; i < g.Shape[0]; i++ {
			g.Data[i*k+i%k] = 1
		}
	}
	logits, grad, err := m.InputGrad(ctx, x, seed)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 7, nn.ChunkSize, n - 1} {
		xi := x.Sample(i)
		li, gi, err := m.InputGrad(ctx, xi, func(l, g *tensor.Tensor) { g.Data[i%10] = 1 })
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range li.Data {
			if math.Abs(float64(v-logits.Data[i*10+j])) > 1e-4 {
				t.Fatalf("image %d: logit %d %g vs %g", i, j, v, logits.Data[i*10+j])
			}
		}
		per := len(gi.Data)
		for j, v := range gi.Data {
			if math.Abs(float64(v-grad.Data[i*per+j])) > 1e-4 {
				t.Fatalf("image %d: grad %d %g vs %g", i, j, v, grad.Data[i*per+j])
			}
		}
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	m, _ := nn.NewClassifier(smallConfig(nn.ArchResNet20, 8))
	m.Meta.Dataset, m.Meta.TestAccuracy = "unit", 0.5
	// Make the BN buffers non-trivial so that they are checked too.
	for _, p := range m.Params() {
		if p.Buffer {
			for i := range p.W {
				p.W[i] = 0.5 + float32(i%3)
			}
		}
	}
	if err := nn.Save(dir, m); err != nil {
		t.Fatal(err)
	}
	m2, err := nn.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Meta.Dataset != "unit" || m2.Config().Arch != nn.ArchResNet20 {
		t.Errorf("metadata %+v config %+v", m2.Meta, m2.Config())
	}
	x := randImages(6, 3, 3, 8, 8)
	a, _ := m.Logits(ctx, x)
	b, _ := m2.Logits(ctx, x)
	for i := range a.Data {
		if a.Data[i] != b.Data[i] {
			t.Fatalf("logit %d: %g after load, %g before", i, b.Data[i], a.Data[i])
		}
	}
	if _, err := nn.LoadDAE(dir); !errors.Is(err, nn.ErrWrongKind) {
		t.Errorf("LoadDAE of a classifier: %v", err)
	}
	// A weights file from another architecture gives a *MismatchError.
	other := t.TempDir()
	v, _ := nn.NewClassifier(smallConfig(nn.ArchVGGSmall, 8))
	if err := nn.Save(other, v); err != nil {
		t.Fatal(err)
	}
	w, _ := os.ReadFile(filepath.Join(other, nn.WeightsFile))
	os.WriteFile(filepath.Join(dir, nn.WeightsFile), w, 0o644)
	var me *nn.MismatchError
	if _, err := nn.Load(dir); !errors.As(err, &me) {
		t.Errorf("mismatched weights: %v, want *MismatchError", err)
	} else {
		t.Log(err)
	}
	// Same architecture, wider input: a dense-layer shape mismatch.
	big, _ := nn.NewClassifier(smallConfig(nn.ArchVGGSmall, 16))
	if err := nn.Save(other, big); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(other, nn.WeightsFile), w, 0o644)
	if _, err := nn.Load(other); !errors.As(err, &me) || me.Got == nil || me.Want == nil {
		t.Errorf("dense shape mismatch: %v", err)
	} else {
		t.Log(err)
	}
	os.WriteFile(filepath.Join(other, nn.WeightsFile), w[:100], 0o644)
	if _, err := nn.Load(other); err == nil {
		t.Error("truncated weights accepted")
	}
}

func TestSameSeedSameModel(t *testing.T) {
	a, _ := nn.NewClassifier(smallConfig(nn.ArchVGGSmall, 8))
	b, _ := nn.NewClassifier(smallConfig(nn.ArchVGGSmall, 8))
	c := smallConfig(nn.ArchVGGSmall, 8)
	c.Seed = 2
	d, _ := nn.NewClassifier(c)
	pa, pb, pd := a.Params(), b.Params(), d.Params()
	differ := false
	for i := range pa {
		for j := range pa[i].W {
			if pa[i].W[j] != pb[i].W[j] {
				t.Fatalf("%s differs between equal seeds", pa[i].Name)
			}
			differ = differ || pa[i].W[j] != pd[i].W[j]
		}
	}
	if !differ {
		t.Error("different seeds gave the same weights")
	}
}

// TestBackendsAgreeOnModel: the same network computes the same logits and
// input gradients with every convolution backend.
func TestBackendsAgreeOnModel(t *testing.T) {
	ctx := context.Background()
	x := randImages(8, 3, 3, 16, 16)
	seed := func(logits, g *tensor.Tensor) {
		for i := range g.Data {
			g.Data[i] = float32(i%7) - 3
		}
	}
	var ref, refGrad *tensor.Tensor
	for _, b := range nn.ConvBackends() {
		c := smallConfig(nn.ArchResNet20, 16)
		c.ConvBackend = b
		m, err := nn.NewClassifier(c)
		if err != nil {
			t.Fatal(err)
		}
		y, g, err := m.InputGrad(ctx, x, seed)
		if err != nil {
			t.Fatal(err)
		}
		if ref == nil {
			ref, refGrad = y, g
			continue
		}
		for i := range y.Data {
			if math.Abs(float64(y.Data[i]-ref.Data[i])) > 1e-3*math.Max(1, math.Abs(float64(ref.Data[i]))) {
				t.Fatalf("%s: logit %d = %g, %s gives %g", b, i, y.Data[i], nn.ConvBackends()[0], ref.Data[i])
			}
		}
		for i := range g.Data {
			if math.Abs(float64(g.Data[i]-refGrad.Data[i])) > 1e-3*math.Max(1, math.Abs(float64(refGrad.Data[i]))) {
				t.Fatalf("%s: grad %d = %g, %s gives %g", b, i, g.Data[i], nn.ConvBackends()[0], refGrad.Data[i])
			}
		}
	}
}
