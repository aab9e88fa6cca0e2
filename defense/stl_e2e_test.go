package defense

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/tensor"
)

// paperDictionary reads testdata/stl/dict-cifar10.npy, the paper's CIFAR-10
// dictionary (64 filters of 8x8x3, lambda 0.2) in SPORCO's layout.
func paperDictionary(t testing.TB) *csc.Dictionary {
	t.Helper()
	d, err := csc.ReadDictionary(filepath.Join("testdata", "stl", "dict-cifar10.npy"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// sampleImages returns the first n test images of the embedded CIFAR-10 sample.
func sampleImages(t testing.TB, n int) *tensor.Tensor {
	t.Helper()
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	return test.Head(n).Images
}

func norm2(a, b []float32) float64 {
	var s float64
	for i := range a {
		d := float64(a[i])
		if b != nil {
			d -= float64(b[i])
		}
		s += d * d
	}
	return math.Sqrt(s)
}

// The STL with the paper's dictionary keeps images recognisable and shrinks
// a perturbation of normalized L2 size 0.04 (the paper's BIM/DeepFool/CW
// budget, section 5.1) more than it changes the clean image.
func TestSTLPaperDictionary(t *testing.T) {
	x := sampleImages(t, 4)
	tr, err := NewSTL(mustProjector(t, paperDictionary(t)))
	if err != nil {
		t.Fatal(err)
	}
	// A checkerboard-sign perturbation, high frequency like FGSM's.
	adv := x.Clone()
	per := 3 * 32 * 32
	for i := 0; i < 4; i++ {
		img := x.Data[i*per : (i+1)*per]
		eps := float32(0.04 * norm2(img, nil) / math.Sqrt(float64(per)))
		for j := range img {
			s := float32(1)
			if (j/32+j%32)%2 == 1 {
				s = -1
			}
			adv.Data[i*per+j] = min(max(img[j]+s*eps, 0), 1)
		}
	}
	tx, err := tr.Apply(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	ta, err := tr.Apply(context.Background(), adv)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		s := i * per
		clean, pert := x.Data[s:s+per], adv.Data[s:s+per]
		before := norm2(pert, clean)
		after := norm2(ta.Data[s:s+per], tx.Data[s:s+per])
		mse := math.Pow(norm2(tx.Data[s:s+per], clean), 2) / float64(per)
		psnr := 10 * math.Log10(1/mse)
		t.Logf("image %d: perturbation %.3f -> %.3f, PSNR(T(x), x) %.1f dB", i, before, after, psnr)
		if after > 0.5*before {
			t.Errorf("image %d: STL kept %.0f%% of the perturbation, want < 50%%", i, 100*after/before)
		}
		if psnr < 22 {
			t.Errorf("image %d: PSNR(T(x), x) = %.1f dB, want >= 22", i, psnr)
		}
	}
}

func mustProjector(t testing.TB, dict *csc.Dictionary) Projector {
	t.Helper()
	p, err := CSCProjector(dict, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// BenchmarkSTLProjection measures the STL projection of 32x32 CIFAR-10
// images with the paper's dictionary (64 filters 8x8, lambda 0.2); the
// images/s figure is what "stl defend" reaches on one batch.
func BenchmarkSTLProjection(b *testing.B) {
	x := sampleImages(b, 16)
	tr, err := NewSTL(mustProjector(b, paperDictionary(b)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tr.Apply(context.Background(), x); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(16*b.N)/b.Elapsed().Seconds(), "images/s")
}

// End to end on real images: nn's DAE, PCA, k-means, csc's projector,
// saved and loaded, applied through both transforms.
func TestTrainEndToEnd(t *testing.T) {
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	train := test.Head(64).Images
	opt := DefaultTrainOptions()
	opt.DAEEpochs, opt.Clusters, opt.KNN, opt.PCAComponents, opt.KMeansRestarts = 1, 2, 3, 16, 2
	opt.Filters, opt.DictImages, opt.DictIterations = 16, 8, 5
	opt.CheckpointDir = t.TempDir()
	d, err := Train(context.Background(), train, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Deterministic under the seed: a second training from scratch gives
	// the same clusters and dictionaries.
	opt.CheckpointDir = t.TempDir()
	again, err := Train(context.Background(), train, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Labels, again.Labels) || !slices.Equal(d.Universal.Filters, again.Universal.Filters) || !slices.Equal(d.Dictionaries[1].Filters, again.Dictionaries[1].Filters) {
		t.Error("two trainings with the same seed differ")
	}
	dir := filepath.Join(t.TempDir(), "def")
	if err := Save(dir, d); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Manifest.LatentDim != 512 || back.Manifest.PCAComponents != 16 || back.Manifest.EncoderFormat != NNDAEFormat || back.Manifest.Filters != 16 {
		t.Errorf("manifest %+v", back.Manifest)
	}
	uni, strat, err := back.Transforms(CSCProjector)
	if err != nil {
		t.Fatal(err)
	}
	x := test.Images.Sample(100).Clone()
	for _, tr := range []Transform{uni, strat} {
		y, err := tr.Apply(context.Background(), x)
		if err != nil {
			t.Fatalf("%s: %v", tr.Name(), err)
		}
		if e := norm2(y.Data, x.Data) / norm2(x.Data, nil); e > 0.2 || e == 0 {
			t.Errorf("%s: relative change %.3f of a clean image, want in (0, 0.2]", tr.Name(), e)
		}
	}
}
