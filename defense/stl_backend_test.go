package defense

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
)

func TestNNDAEBackend(t *testing.T) {
	x, _ := colourImages(16, 32, testColours, 1)
	opt := DefaultTrainOptions()
	opt.DAEEpochs = 1
	opt.CheckpointDir = t.TempDir()
	enc, err := trainNNDAE(context.Background(), x, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	z, err := enc.Encode(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if z.Shape[0] != 16 || z.Shape[1] != 512 {
		t.Fatalf("codes shape %v, want [16 512]", z.Shape)
	}
	dir := filepath.Join(t.TempDir(), "dae")
	if err := enc.SaveDir(dir); err != nil {
		t.Fatal(err)
	}
	formatsMu.RLock()
	dec := formats[enc.EncoderFormat()]
	formatsMu.RUnlock()
	back, err := dec(dir)
	if err != nil {
		t.Fatal(err)
	}
	z2, err := back.Encode(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(z.Data, z2.Data) {
		t.Error("codes differ after saving and loading the DAE")
	}
}
