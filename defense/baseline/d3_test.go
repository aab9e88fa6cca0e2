package baseline

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// unitAtoms returns a dictionary of the given atoms (rows), each scaled to
// unit norm, as patches of side p with one channel.
func unitAtoms(p int, atoms [][]float64) *D3Dictionary {
	d := &D3Dictionary{Patch: p, Channels: 1}
	for _, a := range atoms {
		var n float64
		for _, v := range a {
			n += v * v
		}
		for _, v := range a {
			d.Data = append(d.Data, float32(v/math.Sqrt(n)))
		}
	}
	return d
}

// orthogonalize removes from v its components along the orthonormal
// vectors of basis (Gram-Schmidt) and returns its remaining squared norm.
func orthogonalize(v []float64, basis [][]float64) float64 {
	for _, b := range basis {
		var p float64
		for t := range v {
			p += v[t] * b[t]
		}
		for t := range v {
			v[t] -= p * b[t]
		}
	}
	var n float64
	for _, e := range v {
		n += e * e
	}
	return n
}

// bestSparseFit returns the smallest ||x - D_S c||^2 over every support S
// of exactly k atoms, by enumerating them and solving each least-squares
// problem by Gram-Schmidt: the optimum OMP is held to.
func bestSparseFit(dict *D3Dictionary, x []float64, k int) float64 {
	best := math.Inf(1)
	var rec func(start int, chosen []int)
	rec = func(start int, chosen []int) {
		if len(chosen) == k {
			// Project x onto the span of the chosen atoms.
			var basis [][]float64
			for _, i := range chosen {
				v := make([]float64, len(x))
				for t, a := range dict.atom(i) {
					v[t] = float64(a)
				}
				n := orthogonalize(v, basis)
				if n < 1e-20 {
					return // dependent atoms: a smaller support covers it
				}
				for t := range v {
					v[t] /= math.Sqrt(n)
				}
				basis = append(basis, v)
			}
			r := append([]float64(nil), x...)
			best = min(best, orthogonalize(r, basis))
			return
		}
		for i := start; i < dict.Len(); i++ {
			rec(i+1, append(chosen, i))
		}
	}
	rec(0, nil)
	return best
}

// TestOMPKnownOptimum checks the patch denoiser on problems whose optimum
// over all supports is known and which OMP provably reaches: any
// dictionary with one atom per patch, an orthonormal basis (the best k
// terms are the k largest coefficients), and an exactly sparse patch over
// a dictionary of coherence 1/4 (identity plus Hadamard, where 2-sparse
// representations are recovered exactly). The residual must match the
// brute-force optimum.
func TestOMPKnownOptimum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	randVec := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return v
	}
	// An orthonormal basis of R^9 by Gram-Schmidt on random vectors.
	var ortho [][]float64
	for len(ortho) < 9 {
		v := randVec(9)
		n := orthogonalize(v, ortho)
		for i := range v {
			v[i] /= math.Sqrt(n)
		}
		ortho = append(ortho, v)
	}
	// Identity plus the normalized 16x16 Sylvester-Hadamard basis.
	var incoherent [][]float64
	for i := 0; i < 16; i++ {
		e := make([]float64, 16)
		e[i] = 1
		incoherent = append(incoherent, e)
	}
	for i := 0; i < 16; i++ {
		h := make([]float64, 16)
		for j := range h {
			h[j] = 1
			if bitsOdd(i & j) {
				h[j] = -1
			}
		}
		incoherent = append(incoherent, h)
	}
	sparse := make([]float64, 16)
	for j := range sparse {
		sparse[j] = 0.7*incoherent[20][j]/4 - 0.4*incoherent[5][j]
	}
	var random [][]float64
	for i := 0; i < 10; i++ {
		random = append(random, randVec(4))
	}
	cases := []struct {
		name   string
		p      int
		atoms  [][]float64
		x      []float64
		k      int
		wantLS float64 // the known optimum, -1 to take the brute-force one
	}{
		{"one atom of ten in R^4", 2, random, randVec(4), 1, -1},
		{"orthonormal, 1 term", 3, ortho, randVec(9), 1, -1},
		{"orthonormal, 3 terms", 3, ortho, randVec(9), 3, -1},
		{"orthonormal, all terms", 3, ortho, randVec(9), 9, 0},
		{"2-sparse over identity+Hadamard", 4, incoherent, sparse, 2, 0},
	}
	for _, c := range cases {
		dict := unitAtoms(c.p, c.atoms)
		want := bestSparseFit(dict, c.x, c.k)
		if c.wantLS >= 0 && math.Abs(want-c.wantLS) > 1e-9 {
			t.Fatalf("%s: brute force optimum %g, known %g", c.name, want, c.wantLS)
		}
		x := make([]float32, len(c.x))
		for i, v := range c.x {
			x[i] = float32(v)
		}
		approx := append([]float32(nil), x...)
		dict.omp(approx, 1, c.k)
		var got, energy float64
		for i := range x {
			d := float64(x[i] - approx[i])
			got += d * d
			energy += float64(x[i]) * float64(x[i])
		}
		if math.Abs(got-want) > 1e-5*energy {
			t.Errorf("%s: OMP residual %g, optimum %g", c.name, got, want)
		}
	}
}

func bitsOdd(v int) bool {
	odd := false
	for ; v != 0; v &= v - 1 {
		odd = !odd
	}
	return odd
}

// TestReassembleExact checks that patches cut from an image and put back
// untouched rebuild it bit for bit, with and without overlap and with a
// grid whose last step is shortened to reach the border.
func TestReassembleExact(t *testing.T) {
	cases := []struct {
		name            string
		c, h, w, p, str int
		wantStartsW     []int
	}{
		{"overlap, flush last", 3, 13, 11, 4, 3, []int{0, 3, 6, 7}},
		{"no overlap", 1, 8, 8, 4, 4, []int{0, 4}},
		{"stride 1", 2, 6, 5, 3, 1, []int{0, 1, 2}},
		{"one patch", 3, 5, 5, 5, 2, []int{0}},
	}
	for _, c := range cases {
		x := baselineRandBatch(7, 1, c.c, c.h, c.w)
		ys, xs := patchStarts(c.h, c.p, c.str), patchStarts(c.w, c.p, c.str)
		if !slices.Equal(xs, c.wantStartsW) {
			t.Errorf("%s: starts %v, want %v", c.name, xs, c.wantStartsW)
		}
		patches := extractPatches(x.Data, c.c, c.h, c.w, c.p, ys, xs)
		got := make([]float32, len(x.Data))
		reassemble(got, patches, c.c, c.h, c.w, c.p, ys, xs)
		if !equalF32(got, x.Data) {
			t.Errorf("%s: reassembly of untouched patches differs from the image", c.name)
		}
	}
}

// TestD3CompleteDictionary checks the whole transform against a case with
// a known answer: with the standard basis as dictionary and as many atoms
// per patch as pixels, every patch is reproduced and so is the image.
func TestD3CompleteDictionary(t *testing.T) {
	var basis [][]float64
	for i := 0; i < 9; i++ {
		e := make([]float64, 9)
		e[i] = 1
		basis = append(basis, e)
	}
	d3, err := NewD3(unitAtoms(3, basis), D3Options{Stride: 2, Sparsity: 9})
	if err != nil {
		t.Fatal(err)
	}
	x := baselineRandBatch(5, 2, 1, 10, 7)
	y, err := d3.Apply(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x.Data {
		if math.Abs(float64(y.Data[i]-x.Data[i])) > 1e-6 {
			t.Fatalf("pixel %d: %v, want %v", i, y.Data[i], x.Data[i])
		}
	}
}

// TestD3Deterministic builds dictionaries from clean CIFAR-10 images and
// checks that the same seed gives the same dictionary and another seed
// another, that D3's output does not depend on the number of workers, and
// that it stays close to a clean image it denoises (sparse fits of
// natural patches) while moving it.
func TestD3Deterministic(t *testing.T) {
	ctx := context.Background()
	train := loadBaselineStrip(t, "cifar-train16.png")
	o := DefaultD3DictionaryOptions()
	o.Atoms = 2000
	a, err := BuildD3Dictionary(ctx, train, o)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := BuildD3Dictionary(ctx, train, o)
	o.Seed = 2
	c, _ := BuildD3Dictionary(ctx, train, o)
	if a.Len() != 2000 || a.Patch != 8 || a.Channels != 3 || !equalF32(a.Data, b.Data) || equalF32(a.Data, c.Data) {
		t.Fatalf("dictionaries: %d atoms; same seed equal %v, other seed equal %v", a.Len(), equalF32(a.Data, b.Data), equalF32(a.Data, c.Data))
	}
	for i := 0; i < a.Len(); i++ {
		if n := math.Sqrt(dot32(a.atom(i), a.atom(i))); math.Abs(n-1) > 1e-5 {
			t.Fatalf("atom %d has norm %v", i, n)
		}
	}
	d3, err := NewD3(a, DefaultD3Options())
	if err != nil {
		t.Fatal(err)
	}
	test := loadBaselineStrip(t, "cifar4.png")
	y1, err := d3.Apply(ctx, test)
	if err != nil {
		t.Fatal(err)
	}
	prev := runtime.GOMAXPROCS(1)
	y2, err := d3.Apply(ctx, test)
	runtime.GOMAXPROCS(prev)
	if err != nil || !equalF32(y1.Data, y2.Data) {
		t.Fatalf("output depends on the number of workers (%v)", err)
	}
	var mse float64
	for i, v := range y1.Data {
		if v < 0 || v > 1 {
			t.Fatalf("pixel %d = %v outside [0,1]", i, v)
		}
		d := float64(v - test.Data[i])
		mse += d * d
	}
	mse /= float64(len(y1.Data))
	if mse < 1e-5 || mse > 0.01 {
		t.Errorf("mean squared change %g of clean images, want in [1e-5, 0.01]", mse)
	}
	t.Logf("D3 (2000 atoms, 5 per 8x8 patch, stride 4) changes clean CIFAR-10 images by MSE %.5f", mse)
}

func TestD3Errors(t *testing.T) {
	dict := unitAtoms(2, [][]float64{{1, 0, 0, 0}, {0, 1, 1, 0}, {1, 1, 1, 1}})
	cases := []struct {
		name string
		dict *D3Dictionary
		opts D3Options
		want error
	}{
		{"no dictionary", nil, DefaultD3Options(), ErrNoD3Dictionary},
		{"empty dictionary", &D3Dictionary{Patch: 2, Channels: 1}, DefaultD3Options(), ErrNoD3Dictionary},
		{"stride 0", dict, D3Options{Stride: 0, Sparsity: 1}, nil},
		{"stride above patch", dict, D3Options{Stride: 3, Sparsity: 1}, nil},
		{"more atoms than the dictionary", dict, D3Options{Stride: 1, Sparsity: 4}, nil},
	}
	for _, c := range cases {
		_, err := NewD3(c.dict, c.opts)
		var pe *ParamError
		if c.want != nil && !errors.Is(err, c.want) || c.want == nil && !errors.As(err, &pe) {
			t.Errorf("%s: error %v", c.name, err)
		}
	}
	d3, err := NewD3(dict, D3Options{Stride: 1, Sparsity: 2})
	if err != nil {
		t.Fatal(err)
	}
	var ce *ChannelsError
	if _, err := d3.Apply(context.Background(), baselineRandBatch(1, 1, 3, 4, 4)); !errors.As(err, &ce) {
		t.Errorf("3 channels for a 1-channel dictionary: %v", err)
	}
	var pe *ParamError
	if _, err := d3.Apply(context.Background(), baselineRandBatch(1, 1, 1, 1, 4)); !errors.As(err, &pe) {
		t.Errorf("image smaller than a patch: %v", err)
	}
	if _, err := BuildD3Dictionary(context.Background(), tensor.New(2, 1, 8, 8), D3DictionaryOptions{Patch: 4, Atoms: 3, Stride: 1, Seed: 1}); !errors.As(err, &pe) {
		t.Errorf("all-black training images: %v", err)
	}
}

func TestD3DictionaryCodec(t *testing.T) {
	dict := unitAtoms(2, [][]float64{{1, 0, 0, 0}, {0, 1, 1, 0}, {1, 1, 1, 1}})
	var buf bytes.Buffer
	if err := dict.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	enc := buf.Bytes()
	back, err := DecodeD3Dictionary(bytes.NewReader(enc))
	if err != nil || back.Patch != 2 || back.Channels != 1 || !equalF32(back.Data, dict.Data) {
		t.Fatalf("round trip: %v", err)
	}
	corrupt := func(f func([]byte)) []byte {
		b := append([]byte(nil), enc...)
		f(b)
		return b
	}
	cases := []decodeCase{
		{"empty", nil, io.ErrUnexpectedEOF},
		{"short header", enc[:10], io.ErrUnexpectedEOF},
		{"truncated values", enc[:len(enc)-3], io.ErrUnexpectedEOF},
		{"bad magic", corrupt(func(b []byte) { b[0] = 'X' }), ErrD3DictionaryFormat},
		{"patch 1", corrupt(func(b []byte) { b[8] = 1 }), ErrD3DictionaryFormat},
		{"no channels", corrupt(func(b []byte) { b[12] = 0 }), ErrD3DictionaryFormat},
		{"huge count", corrupt(func(b []byte) { b[23] = 0x7f }), ErrD3DictionaryFormat},
		{"atom not of unit norm", corrupt(func(b []byte) { copy(b[24:], []byte{0, 0, 0, 0x40}) }), ErrD3DictionaryFormat},
		{"NaN value", corrupt(func(b []byte) { copy(b[24:], []byte{0, 0, 0xc0, 0x7f}) }), ErrD3DictionaryFormat},
	}
	checkDecodeErrors(t, DecodeD3Dictionary, cases)
	fix := checkSaveLoad(t, "dict.d3d", dict.Save, LoadD3Dictionary, func(b *D3Dictionary) bool { return equalF32(b.Data, dict.Data) }, "tiny.d3d")
	if fix.Patch != 8 || fix.Channels != 3 || fix.Len() != 20 {
		t.Errorf("fixture: patch %d, channels %d, %d atoms; want 8, 3, 20", fix.Patch, fix.Channels, fix.Len())
	}
}

func FuzzDecodeD3Dictionary(f *testing.F) {
	fuzzRoundTrip(f, "tiny.d3d", 40, d3DictMagic, DecodeD3Dictionary)
}
