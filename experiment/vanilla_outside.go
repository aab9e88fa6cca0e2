package experiment

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/nn/torchvision"
)

// outsideVanilla reports whether the vanilla classifier is loaded from
// outside stl's own model directories: VanillaModel names a file (an ONNX
// file, PyTorch weights as ARCH:FILE.safetensors or with a sidecar) or
// nothing that exists, which LoadModel then reports.
func (c Config) outsideVanilla() bool {
	if c.VanillaModel == "" {
		return false
	}
	st, err := os.Stat(c.VanillaModel)
	return err != nil || !st.IsDir()
}

// notRetrainable says why the run retrains no classifier in front of an
// outside vanilla classifier ("" when it is not one).
func (c Config) notRetrainable() string {
	if !c.outsideVanilla() {
		return ""
	}
	return fmt.Sprintf("not retrained: the vanilla classifier is not a model directory of stl train classifier, and the run trains only its own architectures (%s); the Table 5 form puts every defense in front of the vanilla classifier",
		strings.Join(Archs, ", "))
}

// checkOutsideVanilla refuses the settings that retrain the vanilla
// classifier's architecture when the run cannot: retrained baselines and
// adversarial training in front of an outside vanilla classifier.
func (c Config) checkOutsideVanilla() error {
	why := c.notRetrainable()
	if why == "" {
		return nil
	}
	var asked []string
	if c.RetrainBaselines {
		asked = append(asked, "retrain_baselines (--retrain-baselines)")
	}
	if c.AdvTrain.Method != "" {
		asked = append(asked, "adv_train (--adv-train)")
	}
	if len(asked) == 0 {
		return nil
	}
	return &VanillaModelError{Dir: c.VanillaModel, Err: fmt.Errorf("%s needs a classifier of the vanilla one's architecture trained by the run, and the run trains only its own architectures (%s): drop it, or give a model directory of stl train classifier",
		strings.Join(asked, " and "), strings.Join(Archs, ", "))}
}

// loadOutsideVanilla serves the vanilla stage from an outside classifier
// (an ONNX file, PyTorch weights; LoadModel): it loads and checks it,
// hashes the content of its files (SHA-256) into the stage's key with its
// format and the architecture a PyTorch spec names, copies the files into
// the stage and loads the copy, as loadVanilla does for a model directory.
func (r *runner) loadOutsideVanilla(ctx context.Context) error {
	spec := r.cfg.VanillaModel
	fail := func(err error) error { return &VanillaModelError{Dir: spec, Err: err} }
	threads := runtime.NumCPU()
	m, err := LoadModel(spec, threads)
	if err != nil {
		return fail(err)
	}
	// The part of a PyTorch spec before its file names the architecture
	// and input size the weights are read with.
	file, _, isTV, _ := torchvision.ParseSpec(spec)
	prefix := ""
	if isTV {
		prefix = strings.TrimSuffix(spec, file)
	}
	arch := m.Format + " " + strings.TrimSuffix(prefix, ":")
	if err := r.checkVanilla(m.Model, strings.TrimSpace(arch), len(m.Files)); err != nil {
		return fail(err)
	}
	files, err := readModelFiles(m.Files)
	if err != nil {
		return fail(err)
	}
	sums := files.sums
	weights := filepath.Base(m.Files[0])
	cfg := map[string]any{
		"pretrained":     true,
		"format":         m.Format,
		"spec":           prefix,
		"weights_sha256": sums[weights],
		"files_sha256":   sums,
		"threads":        threads,
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = file
	}
	src := report.VanillaModel{Dir: abs, Arch: strings.TrimSpace(arch), WeightsFile: weights, WeightsSHA256: sums[weights],
		Notes: "loaded from outside stl (" + m.Format + "): the run does not retrain its architecture"}
	out, key, err := r.publishVanilla(ctx, cfg, files, src)
	if err != nil {
		return err
	}
	from := &VanillaSource{Kind: vanillaOutside, Path: prefix + filepath.Join(out, "model", weights), Threads: threads}
	if m, err = LoadModel(from.Path, threads); err != nil {
		return fmt.Errorf("stage %s: %w", stageVanilla, err)
	}
	if err := r.checkVanilla(m.Model, src.Arch, len(m.Files)); err != nil {
		return fmt.Errorf("stage %s: %w", stageVanilla, err)
	}
	r.setVanilla(m.Model, key, src)
	r.vanillaFrom = from
	return nil
}
