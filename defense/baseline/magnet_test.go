package baseline

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// trainTestDAE trains a reformer on the 16 training fixtures.
func trainTestDAE(t *testing.T, epochs int) (*MagNetDAE, *MagNetTrainResult) {
	t.Helper()
	o := DefaultMagNetDAEOptions()
	o.Epochs, o.BatchSize, o.LR, o.Threads = epochs, 8, 1e-2, 1
	d, err := NewMagNetDAE(o)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Train(context.Background(), loadBaselineStrip(t, "cifar-train16.png"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return d, res
}

func TestMagNetTrainsAndReforms(t *testing.T) {
	d, res := trainTestDAE(t, 40)
	first, last := res.EpochLoss[0], res.EpochLoss[len(res.EpochLoss)-1]
	t.Logf("MSE epoch 1 %.5f, epoch %d %.5f", first, len(res.EpochLoss), last)
	if !(last < first/2) {
		t.Errorf("training loss %.5f -> %.5f, want at least halved", first, last)
	}
	m, err := NewMagNet(d)
	if err != nil {
		t.Fatal(err)
	}
	x := loadBaselineStrip(t, "cifar4.png")
	y, err := m.Apply(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if !tensor.SameShape(x, y) {
		t.Fatalf("shape %v", y.Shape)
	}
	// The reconstruction of held-out images is close to them and better
	// than the untrained network's.
	fresh, _ := NewMagNetDAE(d.Options())
	y0, _ := fresh.Reconstruct(context.Background(), x)
	if p, p0 := baselinePSNR(x.Data, y.Data), baselinePSNR(x.Data, y0.Data); p < p0+3 || p < 15 {
		t.Errorf("held-out PSNR %.2f dB (untrained %.2f dB)", p, p0)
	} else {
		t.Logf("held-out PSNR %.2f dB (untrained %.2f dB)", p, p0)
	}
	// Any image size works (fully convolutional).
	z, err := m.Apply(context.Background(), baselineRandBatch(1, 2, 3, 20, 12))
	if err != nil || !tensor.SameShape(z, &tensor.Tensor{Shape: []int{2, 3, 20, 12}}) {
		t.Fatalf("20x12 batch: %v %v", err, z)
	}
}

func TestMagNetDeterministicTraining(t *testing.T) {
	a, _ := trainTestDAE(t, 2)
	b, _ := trainTestDAE(t, 2)
	pa, pb := a.params(), b.params()
	for i := range pa {
		for k := range pa[i].W {
			if pa[i].W[k] != pb[i].W[k] {
				t.Fatalf("param %d value %d differs between two trainings under one seed", i, k)
			}
		}
	}
}

func TestMagNetEncodeDecode(t *testing.T) {
	d, _ := trainTestDAE(t, 1)
	var buf bytes.Buffer
	if err := d.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	enc := buf.Bytes()
	back, err := DecodeMagNetDAE(bytes.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	x := baselineRandBatch(3, 2, 3, 8, 8)
	y1, _ := d.Reconstruct(context.Background(), x)
	y2, _ := back.Reconstruct(context.Background(), x)
	for i := range y1.Data {
		if y1.Data[i] != y2.Data[i] {
			t.Fatalf("decoded network differs at %d", i)
		}
	}
	path := filepath.Join(t.TempDir(), "magnet.dae")
	if err := d.Save(path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMagNetDAE(path); err != nil {
		t.Fatal(err)
	}
	nan := append([]byte(nil), enc...)
	copy(nan[20:], []byte{0, 0, 0xc0, 0x7f})
	layers := append([]byte(nil), enc...)
	layers[16] = 1
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.ErrUnexpectedEOF},
		{"truncated", enc[:len(enc)-1], io.ErrUnexpectedEOF},
		{"bad magic", append([]byte("XXXXXXXX"), enc[8:]...), ErrMagNetFormat},
		{"one layer", layers, ErrMagNetFormat},
		{"NaN weight", nan, ErrMagNetFormat},
	} {
		if _, err := DecodeMagNetDAE(bytes.NewReader(c.in)); !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
	}
}

func TestMagNetErrors(t *testing.T) {
	if _, err := NewMagNet(nil); !errors.Is(err, ErrNoReformer) {
		t.Errorf("nil DAE: %v", err)
	}
	mod := func(f func(*MagNetDAEOptions)) MagNetDAEOptions { o := DefaultMagNetDAEOptions(); f(&o); return o }
	for _, c := range []struct {
		field string
		opts  MagNetDAEOptions
	}{
		{"Channels", mod(func(o *MagNetDAEOptions) { o.Channels = 0 })},
		{"Filters", mod(func(o *MagNetDAEOptions) { o.Filters = 0 })},
		{"Layers", mod(func(o *MagNetDAEOptions) { o.Layers = 1 })},
		{"Noise", mod(func(o *MagNetDAEOptions) { o.Noise = math.NaN() })},
		{"Epochs", mod(func(o *MagNetDAEOptions) { o.Epochs = -1 })},
		{"BatchSize", mod(func(o *MagNetDAEOptions) { o.BatchSize = 0 })},
		{"LR", mod(func(o *MagNetDAEOptions) { o.LR = 0 })},
		{"Threads", mod(func(o *MagNetDAEOptions) { o.Threads = -1 })},
	} {
		var pe *ParamError
		if _, err := NewMagNetDAE(c.opts); !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("%s: error %v, want *ParamError on %s", c.field, err, c.field)
		}
	}
	d, _ := NewMagNetDAE(DefaultMagNetDAEOptions())
	var ce *ChannelsError
	if _, err := d.Reconstruct(context.Background(), tensor.New(1, 1, 8, 8)); !errors.As(err, &ce) {
		t.Errorf("grey batch: %v, want *ChannelsError", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Train(ctx, baselineRandBatch(1, 4, 3, 8, 8), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled training: %v", err)
	}
}

// TestMagNetVJP checks the vector-jacobian product against central
// differences of <gy, g(x)> along random directions.
func TestMagNetVJP(t *testing.T) {
	ctx := context.Background()
	d, _ := trainTestDAE(t, 3)
	m, _ := NewMagNet(d)
	x := baselineRandBatch(21, 2, 3, 6, 5)
	for i := range x.Data { // keep x +- h inside [0,1]
		x.Data[i] = 0.1 + 0.8*x.Data[i]
	}
	gy := baselineRandBatch(22, 2, 3, 6, 5)
	for i := range gy.Data {
		gy.Data[i] -= 0.5
	}
	gyBefore := gy.Clone()
	gx, err := m.VJP(ctx, x, gy)
	if err != nil {
		t.Fatal(err)
	}
	for i := range gy.Data {
		if gy.Data[i] != gyBefore.Data[i] {
			t.Fatalf("VJP modified the caller's gy at %d", i)
		}
	}
	f := func(z *tensor.Tensor) float64 {
		y, err := d.Reconstruct(ctx, z)
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for i, v := range y.Data {
			s += float64(v) * float64(gy.Data[i])
		}
		return s
	}
	const h = 1e-2
	for trial := 0; trial < 5; trial++ {
		dir := baselineRandBatch(uint64(30+trial), 2, 3, 6, 5)
		var want float64
		plus, minus := x.Clone(), x.Clone()
		for i := range dir.Data {
			v := dir.Data[i] - 0.5
			plus.Data[i] += h * v
			minus.Data[i] -= h * v
			want += float64(gx.Data[i]) * float64(v)
		}
		got := (f(plus) - f(minus)) / (2 * h)
		if math.Abs(got-want) > 1e-3*math.Max(1, math.Abs(want)) {
			t.Errorf("direction %d: finite difference %.6f, VJP %.6f", trial, got, want)
		}
	}
	if _, err := m.VJP(ctx, x, tensor.New(1, 3, 6, 5)); err == nil {
		t.Error("VJP accepted a gradient of the wrong shape")
	}
	other, _ := NewMagNet(stubReformer{})
	if _, err := other.VJP(ctx, x, gy); !errors.Is(err, ErrNoGradient) {
		t.Errorf("reformer without VJP: %v", err)
	}
}

type stubReformer struct{}

func (stubReformer) Reconstruct(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	return x.Clone(), nil
}

func TestMagNetFixture(t *testing.T) {
	d, err := LoadMagNetDAE(filepath.Join("testdata", "tiny.dae"))
	if err != nil {
		t.Fatal(err)
	}
	if o := d.Options(); o.Channels != 3 || o.Filters != 2 || o.Layers != 2 {
		t.Errorf("fixture architecture %+v, want 3 channels, 2 filters, 2 layers", o)
	}
}

func FuzzDecodeMagNetDAE(f *testing.F) {
	fuzzRoundTrip(f, "tiny.dae", 25, magnetMagic, DecodeMagNetDAE)
}
