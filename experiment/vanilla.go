package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/internal/safefile"
)

// VanillaModelError reports a pretrained vanilla classifier
// (Config.VanillaModel) that cannot serve the run: a missing directory or
// file, a model that does not load, or one whose input size or classes do
// not match the run's data.
type VanillaModelError struct {
	Dir string
	Err error
}

func (e *VanillaModelError) Error() string {
	return fmt.Sprintf("vanilla model %s: %v", e.Dir, e.Err)
}

func (e *VanillaModelError) Unwrap() error { return e.Err }

// loadVanilla serves the vanilla stage from Config.VanillaModel instead of
// training: it loads and checks the model, hashes its files into the
// stage's key (so that a replaced model recomputes the attacks and every
// stage after them), copies them into the stage and loads the copy. The
// run directory so keeps the exact model its numbers were measured on.
func (r *runner) loadVanilla(ctx context.Context) error {
	dir := r.cfg.VanillaModel
	fail := func(err error) error { return &VanillaModelError{Dir: dir, Err: err} }
	pl, ok := r.b.Classifier.(PretrainedLoader)
	if !ok {
		return fail(fmt.Errorf("the backend's classifier trainer (%T) cannot load a pretrained classifier", r.b.Classifier))
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fail(err)
	}
	if !st.IsDir() {
		return fail(fmt.Errorf("not a directory (want a model directory written by stl train classifier)"))
	}
	m, info, err := pl.LoadPretrained(dir)
	if err != nil {
		return fail(err)
	}
	if err := r.checkVanilla(m, info); err != nil {
		return fail(err)
	}
	data := make(map[string][]byte, len(info.Files))
	sums := make(map[string]string, len(info.Files))
	for _, f := range info.Files {
		if f == "" || f != filepath.Base(f) || f == "." || f == ".." {
			return fail(fmt.Errorf("the loader names the file %q, want a name inside the directory", f))
		}
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return fail(err)
		}
		sum := sha256.Sum256(b)
		data[f], sums[f] = b, hex.EncodeToString(sum[:])
	}
	threads := runtime.NumCPU()
	// The model does not depend on the run's data: no dependencies. The
	// threads are part of the key as in ClassifierSpec (summation order).
	cfg := map[string]any{
		"pretrained":     true,
		"weights_sha256": sums[info.Files[0]],
		"files_sha256":   sums,
		"threads":        threads,
	}
	key, err := cache.NewKey(stageVanilla, cfg)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	src := report.VanillaModel{Dir: abs, Arch: info.Arch, Dataset: info.Dataset, TrainImages: info.TrainImages,
		Epochs: info.Epochs, TestAccuracy: info.TestAccuracy, Dropout: info.Dropout, Notes: info.Notes,
		WeightsFile: info.Files[0], WeightsSHA256: sums[info.Files[0]]}
	out, _, err := r.store.Do(ctx, stageVanilla, key, cfg, nil, func(ctx context.Context, out string) error {
		md := filepath.Join(out, "model")
		if err := os.MkdirAll(md, 0o755); err != nil {
			return err
		}
		for f, b := range data {
			if err := safefile.WriteBytes(filepath.Join(md, f), b); err != nil {
				return err
			}
		}
		return writeJSON(filepath.Join(out, "source.json"), src)
	})
	if err != nil {
		return err
	}
	if m, _, err = pl.LoadPretrained(filepath.Join(out, "model")); err != nil {
		return fmt.Errorf("stage %s: %w", stageVanilla, err)
	}
	if err := r.checkVanilla(m, info); err != nil {
		return fmt.Errorf("stage %s: %w", stageVanilla, err)
	}
	if t, ok := m.(interface{ SetThreads(int) }); ok {
		t.SetThreads(threads)
	}
	r.vanilla, r.vanillaKey, r.vanillaSrc = m, key, &src
	r.describe("classifier (vanilla, loaded)", src)
	return nil
}

// checkVanilla checks that a loaded classifier fits the run's data and
// records its architecture.
func (r *runner) checkVanilla(m attack.Model, info PretrainedInfo) error {
	s := r.train.Shape()
	c, h, w := m.InputShape()
	if c != s.C || h != s.H || w != s.W {
		hint := ""
		if c == s.C && h == w {
			hint = fmt.Sprintf("; set the run's resolution (--resolution) to %d", h)
		}
		return fmt.Errorf("the model takes %dx%dx%d images (channels x height x width), the run's data are %dx%dx%d%s",
			c, h, w, s.C, s.H, s.W, hint)
	}
	if k := m.NumClasses(); k != len(r.train.Classes) {
		return fmt.Errorf("the model has %d classes, the run's data %d", k, len(r.train.Classes))
	}
	if info.Arch == "" {
		return fmt.Errorf("the model records no architecture")
	}
	if len(info.Files) == 0 {
		return fmt.Errorf("the loader names no model files to fingerprint")
	}
	return nil
}
