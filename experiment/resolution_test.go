package experiment

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// The ImageNet-10 runs of the paper (section 5.1, Tables 2 and 6) go through
// the same pipeline as CIFAR-10 at 64 or 128 px: the DAE sees the images
// area-averaged to 32x32, the dictionaries (8x8 filters) are learned and
// applied at the full resolution. These tests run the real backend (package
// nn, csc, defense, attack, dataset) end to end at both resolutions with
// tiny budgets: the shapes and the wiring are under test, not accuracy.

// tinyResolutionConfig returns a configuration with the smallest budgets
// that still exercise every stage of the Table 1 and Table 5 forms and the
// lambda sweep: one epoch, one cheap attack, two clusters, dictionaries of
// 8 filters of the paper's 8x8 size learned on 3 images for 2 iterations.
func tinyResolutionConfig(name, data string, resolution int) Config {
	cfg := DefaultConfig()
	cfg.Name, cfg.Data, cfg.Resolution = name, data, resolution
	cfg.Epochs, cfg.BatchSize = 1, 16
	cfg.Attacks, cfg.Baselines = []string{AttackFGSM008}, []string{"jpeg"}
	cfg.Clusters, cfg.Filters, cfg.FilterSize = 2, 8, 8
	cfg.DictImages, cfg.DictIterations, cfg.DAEEpochs = 3, 2, 1
	cfg.LambdaSweep, cfg.GridImages = []float64{0.1}, 3
	return cfg
}

// checkResolutionRun checks a finished run at side x side pixels: the data
// shape in the results, the defense built (DAE at 32x32, dictionaries of
// 8x8 filters learned at side px, refusing other sizes), every transformed
// set at side px and not degenerate, the Table 1 and Table 5 forms with the
// rows No Defense, STL, STL (cluster) and JPEG and the columns Clean and
// FGSM-0.08 (no paper numbers: the paper's are CIFAR-10's), the lambda
// sweep's point and the report files.
func checkResolutionRun(t *testing.T, dir string, res *report.Results, side, ntrain, ntest, nsub int, clean *tensor.Tensor) {
	t.Helper()
	if d := res.Data; d.Channels != 3 || d.Height != side || d.Width != side || d.Test != ntest || d.AttackSubset != nsub {
		t.Errorf("data = %+v, want 3x%dx%[2]d, %d test images, %d attacked", d, side, ntest, nsub)
	}

	// The defense: DAE on 32x32 downsampled images, dictionaries at side px.
	defDir := filepath.Join(dir, StagesDir, stageDefense)
	m, err := defense.ReadManifest(defDir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Resolution != side || m.Channels != 3 || m.EncoderResolution != 32 || m.FilterSize != 8 || m.Filters != 8 || m.Clusters != 2 {
		t.Errorf("defense manifest: resolution %d, channels %d, encoder resolution %d, %d filters of %dx%[5]d, %d clusters; want %d, 3, 32, 8 of 8x8, 2",
			m.Resolution, m.Channels, m.EncoderResolution, m.Filters, m.FilterSize, m.Clusters, side)
	}
	dae, err := nn.LoadDAE(filepath.Join(defDir, "dae"))
	if err != nil {
		t.Fatal(err)
	}
	if c := dae.Config(); c.Channels != 3 || c.Height != 32 || c.Width != 32 {
		t.Errorf("DAE input %dx%dx%d, want 3x32x32", c.Channels, c.Height, c.Width)
	}
	d, err := defense.Load(defDir)
	if err != nil {
		t.Fatal(err)
	}
	for i, dict := range append([]*csc.Dictionary{d.Universal}, d.Dictionaries...) {
		if got, want := []int{dict.R, dict.S, dict.C, dict.M}, []int{8, 8, 3, 8}; !slices.Equal(got, want) {
			t.Errorf("dictionary %d: shape (R, S, C, M) %v, want %v", i, got, want)
		}
	}
	stl, stlc, err := d.Transforms(defense.CSCProjector)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []defense.Transform{stl, stlc} {
		if _, err := tr.Apply(context.Background(), tensor.New(1, 3, 32, 32)); err == nil {
			t.Errorf("%s built at %d px accepted 32x32 images", tr.Name(), side)
		}
	}

	// Every transformed set is at side px, in [0,1], close to its input
	// but changed by the transform.
	for _, c := range []struct {
		stage string
		n     int
	}{
		{"transform-stl-test", ntest}, {"transform-stl-cluster-test", ntest}, {"transform-jpeg-test", ntest},
		{"transform-stl-fgsm-0-08", nsub}, {"transform-stl-cluster-fgsm-0-08", nsub}, {"transform-jpeg-fgsm-0-08", nsub},
		{"transform-stl-train", ntrain}, {"transform-stl-cluster-train", ntrain},
	} {
		x := readNPY(t, filepath.Join(dir, StagesDir, c.stage, "images.npy"))
		if len(x.Shape) != 4 || x.Shape[0] != c.n || x.Shape[1] != 3 || x.Shape[2] != side || x.Shape[3] != side {
			t.Errorf("%s: shape %v, want (%d, 3, %d, %[3]d)", c.stage, x.Shape, c.n, side)
			continue
		}
		lo, hi := slices.Min(x.Data), slices.Max(x.Data)
		if lo < 0 || hi > 1 || hi-lo < 0.2 {
			t.Errorf("%s: pixels in [%g, %g], want a spread within [0, 1]", c.stage, lo, hi)
		}
	}
	for _, stage := range []string{"transform-stl-test", "transform-stl-cluster-test"} {
		x := readNPY(t, filepath.Join(dir, StagesDir, stage, "images.npy"))
		if !tensor.SameShape(x, clean) {
			continue // reported above
		}
		if p := psnr(x.Data, clean.Data); !(p > 15 && p < 60) {
			t.Errorf("%s: PSNR %.1f dB against the clean images, want a projection near them but not equal", stage, p)
		}
	}

	// The Table 1 and Table 5 forms.
	if len(res.Tables) != 2 {
		t.Fatalf("%d tables, want the Table 1 and Table 5 forms", len(res.Tables))
	}
	rows := []string{NoDefense, RowSTL, RowSTLCluster, "JPEG"}
	for _, tb := range res.Tables {
		if want := []string{report.ColClean, AttackFGSM008}; !slices.Equal(tb.Columns, want) {
			t.Errorf("%s: columns %q, want %q", tb.ID, tb.Columns, want)
		}
		if tb.PaperRef != "" {
			t.Errorf("%s: paper numbers %q attached to a %d px run", tb.ID, tb.PaperRef, side)
		}
		var names []string
		for _, row := range tb.Rows {
			names = append(names, row.Defense)
			for j, c := range row.Cells {
				if tb.ID == "table1" && row.Defense == "JPEG" {
					if c.Acc != nil || c.Missing == "" {
						t.Errorf("table1 JPEG column %d = %+v, want missing (baselines are not retrained)", j, c)
					}
					continue
				}
				want := ntest
				if j > 0 {
					want = nsub
				}
				if c.Acc == nil || c.Acc.N != want {
					t.Errorf("%s %s column %d: %+v, want an accuracy on %d images", tb.ID, row.Defense, j, c, want)
				}
			}
		}
		if !slices.Equal(names, rows) {
			t.Errorf("%s: rows %q, want %q", tb.ID, names, rows)
		}
	}
	if len(res.Sweep) != 1 || res.Sweep[0].Lambda != 0.1 || res.Sweep[0].Clean.N != nsub {
		t.Errorf("lambda sweep = %+v, want one point at 0.1 on %d images", res.Sweep, nsub)
	}
	for _, f := range []string{"report.html", "report.md", "results.json", "figures/grid.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestRunImageNet10At64 runs the real pipeline on the shipped 64 px
// ImageNet-10 sample (sample:imagenet10) with tiny budgets: 20 training
// images, 10 test images of which 5 are attacked. About 2 s of CPU in the
// default build, 10 s in the pure-Go one.
func TestRunImageNet10At64(t *testing.T) {
	cfg := tinyResolutionConfig("in10-64", "sample:imagenet10", 0)
	cfg.Limit, cfg.TestLimit, cfg.AttackSubset = 20, 10, 5
	dir := t.TempDir()
	res, err := Run(context.Background(), cfg, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Data.Train != 20 || res.Data.Classes != 10 {
		t.Errorf("data = %+v, want 20 training images of 10 classes", res.Data)
	}
	// The clean test images, chosen as the run chooses them.
	_, test, err := loadData(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if test, err = test.BalancedSubset(cfg.TestLimit, cfg.Seed); err != nil {
		t.Fatal(err)
	}
	checkResolutionRun(t, dir, res, 64, 20, 10, 5, test.Images)
}

// TestRunImageFolderAt128 runs the real pipeline at 128 px on an image
// folder like the Imagenette download (imagenette2-160: JPEGs whose
// shorter side is 160 px), generated here: 160x160 images and 213 px wide
// or tall ones whose margins, which the centre crop must remove, are pure
// red. The loaded images must be 128x128 and each keep the mean of its
// centred 160x160 square (exact area averaging preserves means).
//
// About 4 s of CPU in the default build and 17 s in the pure-Go one, where
// it is skipped with -short.
func TestRunImageFolderAt128(t *testing.T) {
	if pureGoBuild && testing.Short() {
		t.Skip("trains three classifiers at 128 px with pure-Go kernels; skipped with -short")
	}
	root := t.TempDir()
	want := writeSyntheticFolder(t, root, []string{"bars", "rings"}, 5, 2)
	cfg := tinyResolutionConfig("folder-128", root, 128)
	cfg.AttackSubset = 2

	train, test, err := loadData(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		name  string
		x     *tensor.Tensor
		means [][3]float64
	}{{"train", train.Images, want["train"]}, {"val", test.Images, want["val"]}} {
		if !slices.Equal(s.x.Shape, []int{len(s.means), 3, 128, 128}) {
			t.Fatalf("%s: shape %v, want (%d, 3, 128, 128)", s.name, s.x.Shape, len(s.means))
		}
		for i, m := range s.means {
			for c := 0; c < 3; c++ {
				plane := s.x.Data[(i*3+c)*128*128 : (i*3+c+1)*128*128]
				var sum float64
				for _, v := range plane {
					sum += float64(v)
				}
				if got := sum / float64(len(plane)); math.Abs(got-m[c]) > 1e-3 {
					t.Errorf("%s image %d channel %d: mean %.4f, want %.4f (its centred square)", s.name, i, c, got, m[c])
				}
			}
		}
	}

	dir := t.TempDir()
	res, err := Run(context.Background(), cfg, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Data.Train != 10 || res.Data.Classes != 2 {
		t.Errorf("data = %+v, want 10 training images of 2 classes", res.Data)
	}
	checkResolutionRun(t, dir, res, 128, 10, 4, 2, test.Images)
}

// writeSyntheticFolder writes root/{train,val}/<class>/<i>.png, perTrain
// and perVal images per class, and returns each split's expected per-image
// channel means after the centre crop, in the loader's order (class, then
// file name). Each class has its own pattern (bars, rings, stripes) with a
// random phase, period and colours and pixel noise, so that nothing is
// constant; the second and third of every three images are 213 px wide
// or tall, pure red outside their centred 160 px square.
func writeSyntheticFolder(t *testing.T, root string, classes []string, perTrain, perVal int) map[string][][3]float64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 128))
	means := map[string][][3]float64{}
	for _, split := range []struct {
		name string
		n    int
	}{{"train", perTrain}, {"val", perVal}} {
		for k, class := range classes {
			if err := os.MkdirAll(filepath.Join(root, split.name, class), 0o755); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < split.n; i++ {
				w, h := 160, 160
				switch i % 3 {
				case 1:
					w = 213
				case 2:
					h = 213
				}
				img, m := syntheticImage(rng, k, w, h)
				f, err := os.Create(filepath.Join(root, split.name, class, fmt.Sprintf("%02d.png", i)))
				if err != nil {
					t.Fatal(err)
				}
				if err := png.Encode(f, img); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				means[split.name] = append(means[split.name], m)
			}
		}
	}
	return means
}

// syntheticImage draws a w x h image of class k's pattern in its centred
// 160x160 square, pure red outside it, and returns the square's channel
// means in [0,1].
func syntheticImage(rng *rand.Rand, k, w, h int) (*image.RGBA, [3]float64) {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	x0, y0 := (w-160)/2, (h-160)/2
	period := 8 + rng.Float64()*24
	phase := rng.Float64() * 2 * math.Pi
	var fg, bg [3]float64
	for c := range fg {
		fg[c], bg[c] = 0.5+0.5*rng.Float64(), 0.4*rng.Float64()
	}
	var sum [3]float64
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			u, v := x-x0, y-y0
			if u < 0 || v < 0 || u >= 160 || v >= 160 {
				img.SetRGBA(x, y, color.RGBA{255, 0, 0, 255})
				continue
			}
			var s float64
			switch k % 3 {
			case 0: // vertical bars
				s = math.Sin(2*math.Pi*float64(u)/period + phase)
			case 1: // rings about the centre
				s = math.Sin(2*math.Pi*math.Hypot(float64(u)-80, float64(v)-80)/period + phase)
			default: // diagonal stripes
				s = math.Sin(2*math.Pi*float64(u+v)/period + phase)
			}
			a := 0.5 + 0.5*s
			var px [3]uint8
			for c := range px {
				p := a*fg[c] + (1-a)*bg[c] + 0.05*rng.NormFloat64()
				px[c] = uint8(math.Round(255 * math.Min(1, math.Max(0, p))))
				sum[c] += float64(px[c]) / 255
			}
			img.SetRGBA(x, y, color.RGBA{px[0], px[1], px[2], 255})
		}
	}
	for c := range sum {
		sum[c] /= 160 * 160
	}
	return img, sum
}

func readNPY(t *testing.T, path string) *tensor.Tensor {
	t.Helper()
	x, err := npy.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// psnr is the peak signal-to-noise ratio of a against b in dB, peak 1.
func psnr(a, b []float32) float64 {
	var se float64
	for i := range a {
		d := float64(a[i] - b[i])
		se += d * d
	}
	return 10 * math.Log10(float64(len(a))/se)
}
