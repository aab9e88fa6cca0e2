package csc

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stl-defense/stl/admm"
	"github.com/stl-defense/stl/tensor"
)

func softf(v, t float64) float64 { return math.Copysign(math.Max(math.Abs(v)-t, 0), v) }

// TestIdentityDictionaryIsSoftThresholding: with delta filters, CBPDN is
// separable and its solution is soft thresholding of the image: same
// support exactly, values to float32 rounding of the FFTs.
func TestIdentityDictionaryIsSoftThresholding(t *testing.T) {
	cases := []struct {
		name   string
		c      int
		lambda float64
	}{
		{"gray", 1, 0.2},
		{"color", 3, 0.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Filter m is a delta on channel m.
			d := &Dictionary{M: tc.c, C: tc.c, R: 1, S: 1, Filters: make([]float32, tc.c*tc.c)}
			for m := 0; m < tc.c; m++ {
				d.Filters[m*tc.c+m] = 1
			}
			rng := rand.New(rand.NewPCG(7, uint64(tc.c)))
			img := tensor.New(1, tc.c, 9, 12)
			for i := range img.Data {
				img.Data[i] = float32(rng.NormFloat64())
			}
			opt := DefaultOptions()
			opt.Lambda = tc.lambda
			opt.ADMM.RelStopTol = 1e-5
			opt.ADMM.MaxIter = 1000
			coder, err := NewCoder(d, opt)
			if err != nil {
				t.Fatal(err)
			}
			r, err := coder.Solve(context.Background(), img, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !r.Converged {
				t.Fatalf("not converged in %d iterations", r.Iterations)
			}
			for i, v := range img.Data {
				want := softf(float64(v), tc.lambda)
				if got := float64(r.X.Data[i]); math.Abs(got-want) > 1e-6*(1+math.Abs(float64(v))) || (want == 0) != (got == 0) {
					t.Fatalf("x[%d] = %v, want soft(%v, %v) = %v", i, got, v, tc.lambda, want)
				}
			}
		})
	}
}

// TestAdjoint checks <D x, r> = <x, D^T r> for the Fourier-domain
// operators, and D x against the direct float64 circular convolution.
func TestAdjoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, c := range []int{1, 3} {
		d := randDict(rng, 4, c, 3, 5)
		h, w := 7, 10
		sp, err := newSpectrum(d, h, w)
		if err != nil {
			t.Fatal(err)
		}
		ws, _ := newWorkspace(sp)
		x := make([]float32, d.M*h*w)
		r := make([]float32, c*h*w)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		for i := range r {
			r[i] = float32(rng.NormFloat64())
		}
		dx := ws.apply(nil, x)
		dtr := ws.applyAdjoint(nil, r)
		direct := make([]float64, c*h*w)
		reconstruct(direct, d, h, w, x)
		var lhs, rhs float64
		for i := range dx {
			if math.Abs(float64(dx[i])-direct[i]) > 1e-4 {
				t.Fatalf("C=%d: Fourier D x [%d] = %v, direct %v", c, i, dx[i], direct[i])
			}
			lhs += float64(dx[i]) * float64(r[i])
		}
		for i := range dtr {
			rhs += float64(x[i]) * float64(dtr[i])
		}
		if math.Abs(lhs-rhs) > 1e-4*math.Abs(lhs) {
			t.Errorf("C=%d: <Dx,r> = %v, <x,D^T r> = %v", c, lhs, rhs)
		}
	}
}

// TestBatchIndependentOfWorkers: a batch's results do not depend on the
// number of workers, nor on the batch (each image alone gives the same).
func TestBatchIndependentOfWorkers(t *testing.T) {
	d := loadDict(t)
	img := loadImage(t, "img128_hi")
	// Four 32x32 tiles of the 128x128 highpass image.
	batch := tensor.New(4, 3, 32, 32)
	for i := 0; i < 4; i++ {
		for c := 0; c < 3; c++ {
			for y := 0; y < 32; y++ {
				copy(batch.Data[((i*3+c)*32+y)*32:][:32], img.Data[(c*128+y+32*i)*128+16*i:][:32])
			}
		}
	}
	// The active set reuses each worker's scratch memory from image to
	// image: that must not change its results either.
	for _, m := range []Method{MethodADMM, MethodActiveSet} {
		t.Run(m.String(), func(t *testing.T) {
			opt := DefaultOptions()
			opt.ADMM.MaxIter = 30
			opt.Method = m
			var ref []*Result
			for _, workers := range []int{1, 2, 3} {
				opt.Workers = workers
				coder, _ := NewCoder(d, opt)
				res, err := coder.SolveBatch(context.Background(), batch, nil)
				if err != nil {
					t.Fatal(err)
				}
				if ref == nil {
					ref = res
					// Also equal to solving one by one.
					for i := range res {
						one, _ := coder.Solve(context.Background(), batch.Sample(i), nil)
						if one.Objective != res[i].Objective {
							t.Fatalf("image %d: batch objective %v, alone %v", i, res[i].Objective, one.Objective)
						}
					}
					continue
				}
				for i := range res {
					if res[i].Objective != ref[i].Objective || res[i].Iterations != ref[i].Iterations {
						t.Fatalf("workers=%d image %d: objective %v (%d it), want %v (%d it)", workers, i,
							res[i].Objective, res[i].Iterations, ref[i].Objective, ref[i].Iterations)
					}
					for j := range res[i].X.Data {
						if res[i].X.Data[j] != ref[i].X.Data[j] {
							t.Fatalf("workers=%d image %d: coefficients differ", workers, i)
						}
					}
				}
			}
		})
	}
}

func TestRecorderSeesDecreasingObjective(t *testing.T) {
	d := loadDict(t)
	coder, _ := NewCoder(d, DefaultOptions())
	var st []admm.Stats
	r, err := coder.Solve(context.Background(), loadImage(t, "img32_hi"), admm.RecorderFunc(func(s admm.Stats) { st = append(st, s) }))
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != r.Iterations {
		t.Fatalf("recorded %d stats for %d iterations", len(st), r.Iterations)
	}
	last := st[len(st)-1]
	if math.Abs(last.Objective-r.Objective) > 1e-12 {
		t.Errorf("last recorded objective %v, result %v", last.Objective, r.Objective)
	}
	if !(last.Objective < st[0].Objective) {
		t.Errorf("objective did not decrease: %v -> %v", st[0].Objective, last.Objective)
	}
}

func TestCancel(t *testing.T) {
	d := loadDict(t)
	coder, _ := NewCoder(d, DefaultOptions())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := coder.Solve(ctx, loadImage(t, "img32_hi"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	batch := tensor.New(3, 3, 32, 32)
	if _, err := coder.SolveBatch(ctx, batch, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("batch err = %v, want context.Canceled", err)
	}
}

func TestBadInput(t *testing.T) {
	d := loadDict(t)
	good := loadImage(t, "img32_hi")
	nanImg := good.Clone()
	nanImg.Data[100] = float32(math.NaN())
	nanDict := d.Clone()
	nanDict.Filters[5] = float32(math.Inf(1))
	cases := []struct {
		name   string
		dict   *Dictionary
		lambda float64
		img    *tensor.Tensor
		want   any // pointer to the wanted error type
	}{
		{"channel mismatch", d, 0.2, tensor.New(1, 1, 32, 32), new(*tensor.ShapeError)},
		{"lambda zero", d, 0, good, new(*OptionError)},
		{"lambda negative", d, -1, good, new(*OptionError)},
		{"lambda NaN", d, math.NaN(), good, new(*OptionError)},
		{"NaN image", d, 0.2, nanImg, new(*InputError)},
		{"Inf dictionary", nanDict, 0.2, good, new(*tensor.NonFiniteError)},
		{"empty image", d, 0.2, tensor.New(1, 3, 0, 32), new(*tensor.ShapeError)},
		{"empty batch", d, 0.2, tensor.New(0, 3, 32, 32), new(*tensor.ShapeError)},
		{"filter larger than image", d, 0.2, tensor.New(1, 3, 7, 32), new(*tensor.ShapeError)},
		{"wrong rank", d, 0.2, tensor.New(3, 32), new(*tensor.ShapeError)},
		{"data shorter than shape", d, 0.2, &tensor.Tensor{Shape: []int{1, 3, 32, 32}, Data: make([]float32, 10)}, new(*tensor.ShapeError)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opt := DefaultOptions()
			opt.Lambda = c.lambda
			coder, err := NewCoder(c.dict, opt)
			if err == nil {
				_, err = coder.SolveBatch(context.Background(), c.img, nil)
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.As(err, c.want) {
				t.Fatalf("err = %v (%T), want %T", err, err, c.want)
			}
		})
	}
}

func TestProject(t *testing.T) {
	d := loadDict(t)
	img := loadImage(t, "img32")
	opt := DefaultProjectOptions()
	opt.CSC.Workers = 2
	p, err := NewProjection(d, opt)
	if err != nil {
		t.Fatal(err)
	}
	batch := tensor.New(2, 3, 32, 32)
	copy(batch.Data, img.Data)
	copy(batch.Data[len(img.Data):], img.Data)
	for i := len(img.Data); i < len(batch.Data); i++ {
		batch.Data[i] = 1 - batch.Data[i] // a second, different image
	}
	out := tensor.New(2, 3, 32, 32)
	stats, err := p.ProjectBatch(context.Background(), out, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out.Data {
		if v < 0 || v > 1 {
			t.Fatalf("out[%d] = %v outside [0,1]", i, v)
		}
	}
	// The projection is close to the image but not equal: the l1 term
	// removes part of the highpass detail.
	var mse, hiEnergy float64
	hi := loadImage(t, "img32_hi")
	for i := range img.Data {
		e := float64(out.Data[i] - img.Data[i])
		mse += e * e
		hiEnergy += float64(hi.Data[i]) * float64(hi.Data[i])
	}
	t.Logf("squared error %.4f, highpass energy %.4f, stats %+v", mse, hiEnergy, stats[0])
	if mse == 0 || mse > hiEnergy {
		t.Errorf("squared error %v not in (0, highpass energy %v)", mse, hiEnergy)
	}
	// Its coding objective is the reference problem's.
	if math.Abs(stats[0].Objective-sporcoDefault32) > 1e-4 {
		t.Errorf("objective of the highpass coding %v, want about %v", stats[0].Objective, sporcoDefault32)
	}
	// In place gives the same result.
	inPlace := batch.Sample(1).Clone()
	if err := p.Project(context.Background(), inPlace, inPlace); err != nil {
		t.Fatal(err)
	}
	for i := range inPlace.Data {
		if out.Sample(1).Data[i] != inPlace.Data[i] {
			t.Fatal("in-place projection differs")
		}
	}
	if err := p.Project(context.Background(), tensor.New(1, 3, 32, 32), batch); err == nil {
		t.Error("no error for a destination of another shape")
	}
	// ProjectFinite, which skips the scan for NaN, gives the same result
	// and still checks shapes; Project refuses NaN with an *InputError
	// wrapping the *tensor.NonFiniteError.
	fin := tensor.New(2, 3, 32, 32)
	if err := p.ProjectFinite(context.Background(), fin, batch); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fin.Data, out.Data) {
		t.Error("ProjectFinite differs from ProjectBatch")
	}
	if err := p.ProjectFinite(context.Background(), fin, tensor.New(2, 1, 32, 32)); err == nil {
		t.Error("ProjectFinite: no error for images of another channel count")
	}
	nan := batch.Clone()
	nan.Data[len(img.Data)+7] = float32(math.NaN())
	var ie *InputError
	var ne *tensor.NonFiniteError
	if err := p.Project(context.Background(), fin, nan); !errors.As(err, &ie) || !errors.As(err, &ne) || ie.Index != 1 {
		t.Errorf("NaN in image 1: err = %v, want *InputError for image 1 wrapping *tensor.NonFiniteError", err)
	}
}

// TestGrayDictionaryOnColorImage: a single-channel dictionary codes each
// channel of a colour image separately, as SPORCO does.
func TestGrayDictionaryOnColorImage(t *testing.T) {
	full := loadDict(t)
	// Channel 1 of every filter, renormalized, as a gray dictionary.
	gray := &Dictionary{M: full.M, C: 1, R: full.R, S: full.S, Filters: make([]float32, full.M*64)}
	for m := 0; m < full.M; m++ {
		copy(gray.Filters[m*64:(m+1)*64], full.Filters[(m*3+1)*64:(m*3+2)*64])
	}
	project(gray, true)
	img := loadImage(t, "img32_hi")
	opt := DefaultOptions()
	opt.ADMM.MaxIter = 40
	coder, err := NewCoder(gray, opt)
	if err != nil {
		t.Fatal(err)
	}
	r, err := coder.Solve(context.Background(), img, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{3, gray.M, 32, 32}; !tensor.SameShape(r.X, &tensor.Tensor{Shape: want}) {
		t.Fatalf("X shape %v, want %v", r.X.Shape, want)
	}
	sum := 0.0
	for c := 0; c < 3; c++ {
		one, err := coder.Solve(context.Background(), &tensor.Tensor{Shape: []int{1, 32, 32}, Data: img.Data[c*1024 : (c+1)*1024]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sum += one.Objective
		for i, v := range one.X.Data {
			if r.X.Data[c*gray.M*1024+i] != v {
				t.Fatalf("channel %d differs from coding it alone", c)
			}
		}
	}
	if math.Abs(sum-r.Objective) > 1e-9*sum {
		t.Errorf("objective %v, sum over channels %v", r.Objective, sum)
	}
	// The projection works channel by channel too.
	p, err := NewProjection(gray, DefaultProjectOptions())
	if err != nil {
		t.Fatal(err)
	}
	src := loadImage(t, "img32")
	out := tensor.New(src.Shape...)
	if err := p.Project(context.Background(), out, src); err != nil {
		t.Fatal(err)
	}
	mse := 0.0
	for i := range src.Data {
		e := float64(out.Data[i] - src.Data[i])
		mse += e * e
	}
	if mse/float64(len(src.Data)) > 1e-2 {
		t.Errorf("projection far from the image: mse %v", mse/float64(len(src.Data)))
	}
}
