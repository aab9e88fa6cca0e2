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
//
// A Config.VanillaModel that is not a directory (an ONNX file, PyTorch
// weights) is loaded by loadOutsideVanilla instead.
func (r *runner) loadVanilla(ctx context.Context) error {
	dir := r.cfg.VanillaModel
	fail := func(err error) error { return &VanillaModelError{Dir: dir, Err: err} }
	if r.cfg.outsideVanilla() {
		return r.loadOutsideVanilla(ctx)
	}
	pl, ok := r.b.Classifier.(PretrainedLoader)
	if !ok {
		return fail(fmt.Errorf("the backend's classifier trainer (%T) cannot load a pretrained classifier", r.b.Classifier))
	}
	m, info, err := pl.LoadPretrained(dir)
	if err != nil {
		return fail(err)
	}
	if err := r.checkVanilla(m, info.Arch, len(info.Files)); err != nil {
		return fail(err)
	}
	paths := make([]string, len(info.Files))
	for i, f := range info.Files {
		if f == "" || f != filepath.Base(f) || f == "." || f == ".." {
			return fail(fmt.Errorf("the loader names the file %q, want a name inside the directory", f))
		}
		paths[i] = filepath.Join(dir, f)
	}
	files, err := readModelFiles(paths)
	if err != nil {
		return fail(err)
	}
	sums := files.sums
	threads := runtime.NumCPU()
	// The model does not depend on the run's data: no dependencies. The
	// threads are part of the key as in ClassifierSpec (summation order).
	cfg := map[string]any{
		"pretrained":     true,
		"weights_sha256": sums[info.Files[0]],
		"files_sha256":   sums,
		"threads":        threads,
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	src := report.VanillaModel{Dir: abs, Arch: info.Arch, Dataset: info.Dataset, TrainImages: info.TrainImages,
		Epochs: info.Epochs, TestAccuracy: info.TestAccuracy, Dropout: info.Dropout, Notes: info.Notes,
		WeightsFile: info.Files[0], WeightsSHA256: sums[info.Files[0]]}
	out, key, err := r.publishVanilla(ctx, cfg, files, src)
	if err != nil {
		return err
	}
	if m, _, err = pl.LoadPretrained(filepath.Join(out, "model")); err != nil {
		return fmt.Errorf("stage %s: %w", stageVanilla, err)
	}
	if err := r.checkVanilla(m, info.Arch, len(info.Files)); err != nil {
		return fmt.Errorf("stage %s: %w", stageVanilla, err)
	}
	if t, ok := m.(interface{ SetThreads(int) }); ok {
		t.SetThreads(threads)
	}
	r.setVanilla(m, key, src)
	r.vanillaFrom = &VanillaSource{Kind: vanillaPretrained, Path: filepath.Join(out, "model"), Threads: threads}
	return nil
}

// modelFiles are the files of a loaded vanilla classifier, read: their
// bytes and the hex SHA-256 of each, by file name.
type modelFiles struct {
	data map[string][]byte
	sums map[string]string
}

// readModelFiles reads and hashes the files at paths, named by their base
// names, which must differ.
func readModelFiles(paths []string) (modelFiles, error) {
	f := modelFiles{data: make(map[string][]byte, len(paths)), sums: make(map[string]string, len(paths))}
	for _, p := range paths {
		name := filepath.Base(p)
		if _, dup := f.data[name]; dup {
			return f, fmt.Errorf("two of its files are named %s", name)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return f, err
		}
		sum := sha256.Sum256(b)
		f.data[name], f.sums[name] = b, hex.EncodeToString(sum[:])
	}
	return f, nil
}

// publishVanilla serves the vanilla stage keyed on cfg: the model's files
// copied into its model/ subdirectory, src into source.json. It returns
// the stage's directory and key.
func (r *runner) publishVanilla(ctx context.Context, cfg map[string]any, files modelFiles, src report.VanillaModel) (string, cache.Key, error) {
	key, err := cache.NewKey(stageVanilla, cfg)
	if err != nil {
		return "", "", err
	}
	out, _, err := r.store.Do(ctx, stageVanilla, key, cfg, nil, func(ctx context.Context, out string) error {
		md := filepath.Join(out, "model")
		if err := os.MkdirAll(md, 0o755); err != nil {
			return err
		}
		for f, b := range files.data {
			if err := safefile.WriteBytes(filepath.Join(md, f), b); err != nil {
				return err
			}
		}
		return writeJSON(filepath.Join(out, "source.json"), src)
	})
	return out, key, err
}

// setVanilla makes m, loaded from the vanilla stage of that key, the
// run's vanilla classifier.
func (r *runner) setVanilla(m attack.Model, key cache.Key, src report.VanillaModel) {
	r.vanilla, r.vanillaKey, r.vanillaSrc = m, key, &src
	r.describe("classifier (vanilla, loaded)", src)
}

// checkVanilla checks that a loaded classifier fits the run's data, has
// an architecture (arch) and names its files (files of them).
func (r *runner) checkVanilla(m attack.Model, arch string, files int) error {
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
	if arch == "" {
		return fmt.Errorf("the model records no architecture")
	}
	if files == 0 {
		return fmt.Errorf("the loader names no model files to fingerprint")
	}
	return nil
}
