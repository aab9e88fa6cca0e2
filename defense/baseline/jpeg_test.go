package baseline

import (
	"context"
	"errors"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

func TestJPEGRoundTrip(t *testing.T) {
	ctx := context.Background()
	x := loadBaselineStrip(t, "cifar4.png")
	cases := []struct {
		quality int
		minPSNR float64 // round trip error bound on natural images
		maxPSNR float64 // and it must change them
	}{
		{quality: 100, minPSNR: 35, maxPSNR: 60},
		{quality: 75, minPSNR: 24, maxPSNR: 45}, // the fixtures are themselves JPEG q75 copies
		{quality: 10, minPSNR: 18, maxPSNR: 30},
	}
	prev := 1e9
	for _, c := range cases {
		j, err := NewJPEG(JPEGOptions{Quality: c.quality})
		if err != nil {
			t.Fatal(err)
		}
		y, err := j.Apply(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		p := baselinePSNR(x.Data, y.Data)
		t.Logf("quality %d: PSNR %.2f dB", c.quality, p)
		if p < c.minPSNR || p > c.maxPSNR {
			t.Errorf("quality %d: PSNR %.2f dB outside [%v, %v]", c.quality, p, c.minPSNR, c.maxPSNR)
		}
		if p > prev {
			t.Errorf("quality %d: PSNR %.2f above that of a higher quality (%.2f)", c.quality, p, prev)
		}
		prev = p
		// A second round trip at the same quality changes little: JPEG is
		// nearly idempotent.
		y2, _ := j.Apply(ctx, y)
		if p2 := baselinePSNR(y.Data, y2.Data); p2 < p {
			t.Errorf("quality %d: second round trip PSNR %.2f below the first %.2f", c.quality, p2, p)
		}
	}
}

func TestJPEGGreyAndFlat(t *testing.T) {
	// A flat grey image survives any quality exactly (up to 8-bit rounding).
	x := tensor.New(2, 1, 16, 16)
	for i := range x.Data {
		x.Data[i] = 100.0 / 255
	}
	j, _ := NewJPEG(DefaultJPEGOptions())
	y, err := j.Apply(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range y.Data {
		if d := v - x.Data[i]; d > 1.0/255 || d < -1.0/255 {
			t.Fatalf("flat grey pixel %d became %v", i, v)
		}
	}
}

func TestJPEGErrors(t *testing.T) {
	for _, q := range []int{0, -3, 101} {
		var pe *ParamError
		if _, err := NewJPEG(JPEGOptions{Quality: q}); !errors.As(err, &pe) || pe.Field != "Quality" {
			t.Errorf("quality %d: error %v, want *ParamError on Quality", q, err)
		}
	}
	j, _ := NewJPEG(DefaultJPEGOptions())
	var ce *ChannelsError
	if _, err := j.Apply(context.Background(), tensor.New(1, 2, 8, 8)); !errors.As(err, &ce) || ce.Got != 2 {
		t.Errorf("2 channels: error %v, want *ChannelsError", err)
	}
}
