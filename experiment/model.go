package experiment

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/nn/onnx"
	"github.com/stl-defense/stl/nn/torchvision"
)

// LoadedModel is a classifier loaded from outside a run: its network as an
// attack.Model, and where it came from.
type LoadedModel struct {
	attack.Model
	// Path is the file or directory it was read from.
	Path string
	// Files are the files it was read from, for the keys that must change
	// when they do.
	Files []string
	// Format names the format it was read in ("stl" for a model directory
	// of `stl train classifier`).
	Format string
	// Norm is the per-channel input normalization the classifier applies
	// before its first layer, nil when the format does not state it
	// (ONNX).
	Norm *attack.Normalization
}

// LoadModel reads the classifier at path for the commands that take a
// model (stl attack, predict, serve, evaluate):
//
//   - a model directory written by `stl train classifier` (model.safetensors
//     and model.json), format "stl";
//   - an ONNX file (name ending in .onnx), format "onnx" (package nn/onnx;
//     the operators covered are listed in docs/models.md);
//   - a PyTorch state_dict of a torchvision architecture saved as
//     safetensors, named ARCH[@SIZE]:FILE (for example
//     "resnet50:weights.safetensors", "resnet18@32:w.safetensors") or by a
//     sidecar FILE.json, format "torchvision" (package nn/torchvision;
//     ImageNet normalization and 224 px unless the sidecar says otherwise).
//
// threads > 0 sets the classifier's thread count (0: one per CPU for the
// formats that carry none). Every format a command accepts goes through
// this one function.
func LoadModel(path string, threads int) (*LoadedModel, error) {
	if path == "" {
		return nil, fmt.Errorf("experiment: no model given")
	}
	file, tv, isTV, err := torchvision.ParseSpec(path)
	if err != nil {
		return nil, err
	}
	if isTV {
		return loadTorchvision(path, file, tv, threads)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("experiment: model: %w", err)
	}
	if !fi.IsDir() {
		return loadModelFile(path, threads)
	}
	clf, err := nn.Load(path)
	if err != nil {
		return nil, err
	}
	if threads > 0 {
		clf.SetThreads(threads)
	}
	norm, _ := inputNormalization(clf) // nil when it states none
	return &LoadedModel{Model: clf, Path: path, Format: "stl", Norm: norm,
		Files: []string{filepath.Join(path, nn.MetadataFile), filepath.Join(path, nn.WeightsFile)}}, nil
}

// loadModelFile reads a classifier stored in one file.
func loadModelFile(path string, threads int) (*LoadedModel, error) {
	if threads < 1 {
		threads = runtime.NumCPU()
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".onnx":
		m, err := onnx.Load(path, threads)
		if err != nil {
			return nil, err
		}
		return &LoadedModel{Model: m, Path: path, Format: "onnx", Files: []string{path}}, nil
	case ".safetensors":
		return loadTorchvision(path, path, torchvision.Options{}, threads)
	}
	return nil, fmt.Errorf("experiment: model %s: not a model directory of stl train classifier, an ONNX file (.onnx) nor PyTorch weights (ARCH:FILE.safetensors)", path)
}

// loadTorchvision reads a torchvision state_dict: spec as given, file the
// weights, o the options the spec names.
func loadTorchvision(spec, file string, o torchvision.Options, threads int) (*LoadedModel, error) {
	o, err := torchvision.Sidecar(file, o)
	if err != nil {
		return nil, err
	}
	if o.Arch == "" {
		return nil, fmt.Errorf("experiment: model %s: name the architecture of these PyTorch weights, as ARCH:%s (ARCH one of %s), or in %s.json",
			file, file, strings.Join(torchvision.Archs, ", "), file)
	}
	if threads < 1 {
		threads = runtime.NumCPU()
	}
	o.Threads = threads
	m, err := torchvision.Load(file, o)
	if err != nil {
		return nil, err
	}
	files := []string{file}
	if _, err := os.Stat(file + ".json"); err == nil {
		files = append(files, file+".json")
	}
	norm := &attack.Normalization{}
	mean, std := o.Mean, o.Std
	if mean == nil {
		mean = torchvision.ImageNetMean
	}
	if std == nil {
		std = torchvision.ImageNetStd
	}
	for c := range mean {
		norm.Mean = append(norm.Mean, float64(mean[c]))
	}
	for c := range std {
		norm.Std = append(norm.Std, float64(std[c]))
	}
	return &LoadedModel{Model: m, Path: spec, Format: "torchvision", Files: files, Norm: norm}, nil
}
